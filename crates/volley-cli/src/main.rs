//! `volley`: call, list and describe any gRPC server, and check its health.
//!
//! ```text
//! volley list localhost:50051 --plaintext
//! volley list --proto helloworld.proto
//! volley describe localhost:50051 helloworld.Greeter --plaintext
//! volley call localhost:50051 helloworld.Greeter/SayHello -d '{"name": "you"}' --plaintext
//! volley health localhost:50051 --plaintext
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use volley_cli::call::{CallOptions, format_status};
use volley_cli::schema::SchemaSource;
use volley_cli::{ConnectOptions, Error};

#[derive(Parser, Debug)]
#[command(
    name = "volley",
    version,
    about = "Call, list and describe any gRPC server, and check its health."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct Connection {
    /// No TLS (plaintext HTTP/2). Default: TLS, trusting the system's CA certificates.
    #[arg(long, global = true)]
    plaintext: bool,
    /// Trust this CA certificate (PEM) instead of the system's.
    #[arg(long, global = true, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --key.
    #[arg(long, global = true, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS; needs --cert.
    #[arg(long, global = true, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Verify the server's certificate against this name (and send it as SNI).
    #[arg(long, global = true, value_name = "NAME")]
    servername: Option<String>,
    /// INSECURE: accept any server certificate, trusted or not. The connection is encrypted
    /// but the server is not authenticated: anyone in the path can pose as it. For test
    /// servers with self-signed certificates only.
    #[arg(long, global = true)]
    insecure: bool,
    /// Seconds a connection attempt may take.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 10.0)]
    connect_timeout: f64,
    /// Read the schema from these .proto files instead of the server's reflection.
    #[arg(long = "proto", global = true, value_name = "FILE")]
    protos: Vec<PathBuf>,
    /// Where the .proto files' imports are looked up (default: the current folder).
    #[arg(long = "import-path", global = true, value_name = "DIR")]
    import_paths: Vec<PathBuf>,
    /// Read the schema from this protoset (an encoded FileDescriptorSet).
    #[arg(long, global = true, value_name = "FILE")]
    protoset: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the server's services, or a service's methods. With --proto or --protoset the
    /// address may be left out: the files' services are listed.
    List {
        /// The server (host:port, or any target: dns:///, unix:, ipv4:...), then a service
        /// (package.Service) whose methods to list; both optional with --proto.
        #[arg(value_name = "ARGS", num_args = 0..=2)]
        args: Vec<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Print a service, method, message or enum as .proto text. With --proto or --protoset
    /// the address may be left out.
    Describe {
        /// The server (host:port, or any target; optional with --proto), then a full name:
        /// package.Service, package.Service/Method, package.Message...
        #[arg(value_name = "ARGS", num_args = 1..=2, required = true)]
        args: Vec<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Call a method; requests and responses are JSON (one response per line). The exit code
    /// is the call's status code.
    Call {
        /// host:port, or any target.
        address: String,
        /// package.Service/Method
        method: String,
        /// The request(s) as JSON, @file, or @- for standard input (the default; one JSON
        /// value per line, sent as each line is read).
        #[arg(short = 'd', long)]
        data: Option<String>,
        /// Request metadata, 'key: value' (repeatable; a -bin key's value is base64).
        #[arg(short = 'H', long = "header", value_name = "KEY: VALUE")]
        headers: Vec<String>,
        /// The call's deadline, in seconds.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
        /// Also print the response headers and trailers.
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Load a method: closed loop (-c calls in flight) or open loop (--rps), then a summary
    /// of latencies, throughput and status codes.
    Bench {
        /// host:port, or any target.
        address: String,
        /// package.Service/Method
        method: String,
        /// The request(s) as JSON or @file (several values: a client stream's messages).
        #[arg(short = 'd', long, default_value = "{}")]
        data: String,
        /// Calls in flight at once.
        #[arg(short = 'c', long, default_value_t = 50)]
        concurrency: usize,
        /// Connections the calls share.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Calls to make (unless -z is given).
        #[arg(short = 'n', long, default_value_t = 200)]
        total: u64,
        /// Seconds to run (instead of -n).
        #[arg(short = 'z', long, value_name = "SECONDS")]
        duration: Option<f64>,
        /// Open loop: calls per second, each timed from when it was due.
        #[arg(long)]
        rps: Option<f64>,
        /// Calls made first and not counted.
        #[arg(long, default_value_t = 0)]
        warmup: u64,
        /// The summary's format: text, json or csv.
        #[arg(long, default_value = "text")]
        format: String,
        /// Load through Volley's own client instead of the lean HTTP/2 load engine. Default:
        /// the lean engine for plaintext host:port targets (cheaper per call than h2load), Volley's
        /// client for TLS and other targets.
        #[arg(long)]
        client: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Check the server's health (grpc.health.v1): exit 0 when SERVING, 4 when not, 2 when
    /// the server cannot be reached, 3 when the check fails otherwise.
    Health {
        /// host:port, or any target.
        address: String,
        /// The service to check (default: the whole server).
        #[arg(long, default_value = "")]
        service: String,
        /// Follow the status until the server ends the stream, printing each change.
        #[arg(long)]
        watch: bool,
        /// Seconds the check may take.
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
        timeout: f64,
        #[command(flatten)]
        connection: Connection,
    },
}

fn seconds(s: f64, what: &str) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(s).map_err(|_| Error::usage(format!("{what}: bad duration {s}")))
}

fn options(c: &Connection) -> Result<(ConnectOptions, SchemaSource), Error> {
    Ok((
        ConnectOptions {
            plaintext: c.plaintext,
            cacert: c.cacert.clone(),
            cert: c.cert.clone(),
            key: c.key.clone(),
            servername: c.servername.clone(),
            connect_timeout: Some(seconds(c.connect_timeout, "--connect-timeout")?),
            insecure: c.insecure,
        },
        SchemaSource {
            protos: c.protos.clone(),
            import_paths: c.import_paths.clone(),
            protoset: c.protoset.clone(),
        },
    ))
}

/// `list`'s arguments: an optional address, then an optional service. With the schema from files, a lone argument
/// is the service when the files define one of that name, else the (unneeded) address.
fn list_args<'a>(
    args: &'a [String],
    source: &SchemaSource,
) -> Result<(Option<&'a str>, Option<&'a str>), Error> {
    match args {
        [] if !source.is_reflection() => Ok((None, None)),
        [one] if !source.is_reflection() => {
            let services =
                volley_cli::schema::file_services(&volley_cli::schema::from_files(source)?);
            let name = volley_cli::describe::normalize(one);
            if services.contains(&name) {
                Ok((None, Some(one)))
            } else {
                Ok((Some(one), None))
            }
        }
        [address] => Ok((Some(address), None)),
        [address, service] => Ok((Some(address), Some(service))),
        _ => Err(Error::usage(
            "list takes ADDRESS [SERVICE] (or [SERVICE] alone with --proto or --protoset)",
        )),
    }
}

async fn run(command: Command) -> Result<i32, Error> {
    let mut out = std::io::stdout();
    let io = |e: std::io::Error| Error::usage(format!("cannot write the output: {e}"));
    match command {
        Command::List { args, connection } => {
            let (connect, source) = options(&connection)?;
            let (address, service) = list_args(&args, &source)?;
            let channel = address
                .map(|a| volley_cli::connect(a, &connect))
                .transpose()?;
            for line in volley_cli::list(channel.as_ref(), &source, service).await? {
                use std::io::Write;
                writeln!(out, "{line}").map_err(io)?;
            }
            Ok(0)
        }
        Command::Describe { args, connection } => {
            let (connect, source) = options(&connection)?;
            let (address, symbol) = match args.as_slice() {
                [symbol] => (None, symbol),
                [address, symbol, ..] => (Some(address), symbol),
                [] => return Err(Error::usage("describe takes [ADDRESS] SYMBOL")),
            };
            let channel = address
                .map(|a| volley_cli::connect(a, &connect))
                .transpose()?;
            let text = volley_cli::describe_symbol(channel.as_ref(), &source, symbol).await?;
            use std::io::Write;
            write!(out, "{text}").map_err(io)?;
            Ok(0)
        }
        Command::Call {
            address,
            method,
            data,
            headers,
            timeout,
            verbose,
            connection,
        } => {
            let (connect, source) = options(&connection)?;
            let channel = volley_cli::connect(&address, &connect)?;
            let timeout = timeout.map(|t| seconds(t, "--timeout")).transpose()?;
            let call = CallOptions {
                data,
                headers,
                timeout,
                verbose,
            };
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            volley_cli::call::call(&channel, &source, &method, call, stdin, &mut out).await?;
            Ok(0)
        }
        Command::Bench {
            address,
            method,
            data,
            concurrency,
            connections,
            total,
            duration,
            rps,
            warmup,
            format,
            client,
            connection,
        } => {
            use std::io::Write;
            if !matches!(format.as_str(), "text" | "json" | "csv") {
                return Err(Error::usage(format!(
                    "--format is text, json or csv, not {format}"
                )));
            }
            let (connect, source) = options(&connection)?;
            let channel = volley_cli::connect(&address, &connect)?;
            let (method, path) = volley_cli::call::resolve(&channel, &source, &method).await?;
            let messages = volley_cli::call::requests(&method.input(), &data)?;
            let duration = duration.map(|d| seconds(d, "-z")).transpose()?;
            let bench = volley_cli::bench::BenchOptions {
                concurrency,
                connections,
                total: Some(total),
                duration,
                rps,
                warmup,
                lean: (connect.plaintext && !client)
                    .then(|| volley_cli::lean::tcp_address(&address).map(str::to_owned))
                    .flatten(),
                connect_timeout: connect.connect_timeout.unwrap_or(Duration::from_secs(10)),
            };
            // A progress bar on a terminal only (indicatif hides it otherwise).
            let progress = match duration {
                Some(d) => indicatif::ProgressBar::new(0).with_message(format!("{d:?}")),
                None => indicatif::ProgressBar::new(total),
            };
            let report = volley_cli::bench::run(
                || volley_cli::connect(&address, &connect),
                &method,
                path,
                messages,
                &bench,
                &progress,
            )
            .await?;
            let text = match format.as_str() {
                "json" => format!("{}\n", report.json()),
                "csv" => report.csv(),
                _ => report.text(),
            };
            write!(out, "{text}").map_err(io)?;
            Ok(0)
        }
        Command::Health {
            address,
            service,
            watch,
            timeout,
            connection,
        } => {
            let (connect, _) = options(&connection)?;
            let channel = volley_cli::connect(&address, &connect)?;
            let timeout = seconds(timeout, "--timeout")?;
            Ok(volley_cli::health::health(&channel, &service, watch, timeout, &mut out).await)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("volley: cannot start a runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(Error::Status(status, what)) => {
            eprintln!("{what}");
            eprint!("{}", format_status(&status));
            status.code() as i32
        }
        Err(e) => {
            eprintln!("volley: {e}");
            e.exit_code()
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
