//! Bearer-token authentication as asynchronous middleware on both sides.
//!
//! An interceptor cannot await, so it cannot fetch a token. A [`Middleware`] can: the
//! client's [`BearerAuth`] asks a token issuer for a token before the first call, reuses it
//! while it is fresh, fetches a new one (one fetch at a time, the other calls waiting for
//! it) when it is about to expire, and forgets it when the server answers UNAUTHENTICATED
//! (the issuer revoked it). The server's [`RequireToken`] awaits the issuer's verdict on each
//! call's token and rejects the call before the handler runs when the token is missing,
//! expired or revoked.
//!
//! The issuer here lives in the process (its `issue` and `check` wait a few milliseconds, as
//! a call to an auth service would); a real one is an OAuth server or an identity service.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use volley::middleware::{CallObserver, CallOutcome, CallStart, Middleware, StartFuture};
use volley::{Channel, Code, Server, Status};

use crate::greeter::MyGreeter;
use crate::helloworld::{GreeterClient, GreeterServer, HelloRequest};

/// Hands out tokens valid for `ttl`, checks them, and can revoke them all.
#[derive(Debug)]
pub struct TokenIssuer {
    ttl: Duration,
    next: AtomicU64,
    valid: Mutex<HashMap<String, Instant>>,
}

impl TokenIssuer {
    /// An issuer of tokens that live `ttl`.
    pub fn new(ttl: Duration) -> TokenIssuer {
        TokenIssuer {
            ttl,
            next: AtomicU64::new(1),
            valid: Mutex::new(HashMap::new()),
        }
    }

    /// A new token and when it expires (after a round trip's wait).
    pub async fn issue(&self) -> (String, Instant) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let token = format!("token-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let expires = Instant::now() + self.ttl;
        self.valid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), expires);
        (token, expires)
    }

    /// Whether `token` was issued, is not revoked, and has not expired.
    pub async fn check(&self, token: &str) -> bool {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let valid = self.valid.lock().unwrap_or_else(PoisonError::into_inner);
        valid
            .get(token)
            .is_some_and(|&expires| expires > Instant::now())
    }

    /// Revokes every token issued so far.
    pub fn revoke_all(&self) {
        self.valid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Server middleware: every call needs `authorization: Bearer <token>` with a token the
/// issuer accepts.
pub struct RequireToken {
    pub issuer: Arc<TokenIssuer>,
}

impl Middleware for RequireToken {
    fn start<'a>(&'a self, call: &'a mut CallStart<'_>) -> StartFuture<'a> {
        Box::pin(async move {
            let token = call
                .metadata()
                .get("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| Status::unauthenticated("no bearer token"))?;
            if !self.issuer.check(token).await {
                return Err(Status::unauthenticated("the token is expired or revoked"));
            }
            Ok(None)
        })
    }
}

/// Client middleware: sends a fresh token with every call.
pub struct BearerAuth {
    issuer: Arc<TokenIssuer>,
    /// The current token and its expiry; the lock is held while fetching a new one.
    token: Arc<tokio::sync::Mutex<Option<(String, Instant)>>>,
    /// A token this close to its expiry is replaced before use.
    margin: Duration,
    fetched: Arc<AtomicU64>,
}

impl BearerAuth {
    /// Tokens from `issuer`, replaced `margin` before they expire.
    pub fn new(issuer: Arc<TokenIssuer>, margin: Duration) -> BearerAuth {
        BearerAuth {
            issuer,
            token: Arc::default(),
            margin,
            fetched: Arc::default(),
        }
    }

    /// A counter of the tokens fetched so far.
    pub fn fetched(&self) -> Arc<AtomicU64> {
        self.fetched.clone()
    }
}

impl Middleware for BearerAuth {
    fn start<'a>(&'a self, call: &'a mut CallStart<'_>) -> StartFuture<'a> {
        Box::pin(async move {
            let token = {
                let mut current = self.token.lock().await;
                let fresh = current
                    .as_ref()
                    .filter(|(_, expires)| *expires > Instant::now() + self.margin);
                match fresh {
                    Some((token, _)) => token.clone(),
                    None => {
                        let (token, expires) = self.issuer.issue().await;
                        self.fetched.fetch_add(1, Ordering::Relaxed);
                        *current = Some((token.clone(), expires));
                        token
                    }
                }
            };
            call.metadata_mut()
                .insert("authorization", &format!("Bearer {token}"))
                .map_err(|e| Status::internal(format!("bad token: {e}")))?;
            Ok(Some(Box::new(ForgetRejected {
                token,
                current: self.token.clone(),
            }) as Box<dyn CallObserver>))
        })
    }
}

/// Forgets the call's token when the server rejected it.
struct ForgetRejected {
    token: String,
    current: Arc<tokio::sync::Mutex<Option<(String, Instant)>>>,
}

impl CallObserver for ForgetRejected {
    fn end(self: Box<Self>, outcome: &CallOutcome<'_>) {
        if outcome.status().code() != Code::Unauthenticated {
            return;
        }
        // `end` cannot await: if a call holds the lock (fetching), that fetch replaces the
        // token anyway.
        if let Ok(mut current) = self.current.try_lock()
            && current.as_ref().is_some_and(|(t, _)| *t == self.token)
        {
            *current = None;
        }
    }
}

/// What the scenario does.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// How long tokens live.
    pub ttl: Duration,
    /// How many calls the client makes, one every `interval`.
    pub calls: usize,
    pub interval: Duration,
    /// After this many calls, the issuer revokes every token.
    pub revoke_after: usize,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            ttl: Duration::from_millis(500),
            calls: 12,
            interval: Duration::from_millis(100),
            revoke_after: 6,
        }
    }
}

/// How the scenario went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub ok: usize,
    pub unauthenticated: usize,
    pub tokens_fetched: u64,
    /// What a client without the middleware got.
    pub anonymous: Code,
}

/// Runs a server that requires tokens and a client that fetches them, printing each call.
pub async fn run(out: &mut impl Write, plan: Plan) -> Result<Summary, Box<dyn std::error::Error>> {
    let issuer = Arc::new(TokenIssuer::new(plan.ttl));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder()
            .middleware(RequireToken {
                issuer: issuer.clone(),
            })
            .add_service(GreeterServer::new(MyGreeter {
                who: "server".into(),
            }))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );

    let anonymous = GreeterClient::new(Channel::new(&format!("http://{addr}"))?);
    let anonymous = match anonymous
        .say_hello(HelloRequest {
            name: "anon".into(),
        })
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => {
            writeln!(out, "without a token: {status}")?;
            status.code()
        }
    };

    let auth = BearerAuth::new(issuer.clone(), plan.ttl / 5);
    let fetched = auth.fetched();
    let channel = Channel::builder(&format!("http://{addr}"))
        .middleware(auth)
        .build()?;
    let client = GreeterClient::new(channel);
    let (mut ok, mut unauthenticated) = (0, 0);
    for i in 0..plan.calls {
        if i == plan.revoke_after {
            issuer.revoke_all();
            writeln!(out, "the issuer revoked every token")?;
        }
        let result = client
            .say_hello(HelloRequest {
                name: format!("call {i}"),
            })
            .await;
        let fetched = fetched.load(Ordering::Relaxed);
        match result {
            Ok(reply) => {
                ok += 1;
                writeln!(
                    out,
                    "call {i:2}: {} (tokens fetched: {fetched})",
                    reply.into_inner().message
                )?;
            }
            Err(status) => {
                unauthenticated += usize::from(status.code() == Code::Unauthenticated);
                writeln!(out, "call {i:2}: {status} (tokens fetched: {fetched})")?;
            }
        }
        tokio::time::sleep(plan.interval).await;
    }
    let _ = stop.send(());
    server.await??;
    Ok(Summary {
        ok,
        unauthenticated,
        tokens_fetched: fetched.load(Ordering::Relaxed),
        anonymous,
    })
}
