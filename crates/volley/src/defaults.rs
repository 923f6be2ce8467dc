//! The defaults of every layer, in one place: what a builder setter uses when it is not
//! called. Each setter's documentation names the same value.

use std::time::Duration;

// --- Messages (client and server) ---

/// The largest message a peer accepts, after decompression: 4 MiB, as in every gRPC
/// implementation.
pub const MAX_RECV_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// The largest message a peer sends: no limit beyond the wire format's 4 GiB.
pub const MAX_SEND_MESSAGE_SIZE: usize = u32::MAX as usize;

// --- HTTP/2 (client and server) ---

/// The HTTP/2 receive window of each stream: 1 MiB (h2's 64 KiB default throttles large
/// messages over any real round trip).
pub const STREAM_WINDOW: u32 = 1024 * 1024;

/// The HTTP/2 receive window of each connection: 2 MiB.
pub const CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;

/// The largest header list accepted from a peer: 16 KiB, gRPC C-core's hard limit (h2's
/// 16 MiB default lets a few streams of repeated one-byte headers grow a process by
/// gigabytes).
pub const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

// --- Channel ---

/// The minimum time one connection attempt may take (`doc/connection-backoff.md`'s
/// MIN_CONNECT_TIMEOUT).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a channel stays connected with no calls before it goes IDLE: 30 minutes, as
/// in grpc-go.
pub const CHANNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The balancer of a channel whose resolver chooses none.
pub const LOAD_BALANCING_POLICY: &str = "pick_first";

/// Reconnect backoff (`doc/connection-backoff.md`): the first delay...
pub const BACKOFF_BASE_DELAY: Duration = Duration::from_secs(1);
/// ...multiplied by this after each failed attempt...
pub const BACKOFF_MULTIPLIER: f64 = 1.6;
/// ...randomised by this fraction either way...
pub const BACKOFF_JITTER: f64 = 0.2;
/// ...and never longer than this.
pub const BACKOFF_MAX_DELAY: Duration = Duration::from_secs(120);

/// How long a client waits for the answer to a keepalive ping.
pub const CLIENT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The shortest client keepalive time (as grpc-go's): shorter ones are raised to it.
pub const MIN_CLIENT_KEEPALIVE_TIME: Duration = Duration::from_secs(10);

// --- Server ---

/// How many calls one connection may have open at once (HTTP/2 recommends at least 100;
/// Go's `net/http2` server uses 250).
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// How many bytes of partly received request messages one connection may hold.
pub const MAX_PENDING_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// How long a new connection may take to finish its TLS and HTTP/2 handshakes.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a server connection may be quiet before the server pings it: 2 hours, as in
/// gRPC.
pub const SERVER_KEEPALIVE_TIME: Duration = Duration::from_secs(2 * 60 * 60);

/// How long the server waits for the answer to its keepalive ping.
pub const SERVER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The shortest interval between client pings a server accepts (gRFC A8's
/// `permit_keepalive_time`): 5 minutes.
pub const MIN_CLIENT_PING_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The most attempts a call makes under a retry or hedging policy, whatever the policy says
/// (gRFC A6's client-side maximum, so that a service config from DNS cannot multiply load).
pub const MAX_CALL_ATTEMPTS: u32 = 5;

/// The request bytes one call buffers for replay by retries or hedges (gRFC A6's
/// `per_rpc_buffer_limit_in_bytes`; grpc-go's default): past it, the call commits to its
/// current attempt.
pub const PER_CALL_RETRY_BUFFER: usize = 256 * 1024;

/// The request bytes a channel's calls buffer for replay together (gRFC A6's
/// `retry_buffer_size_in_bytes`, gRPC C++'s default): past it, a call commits.
pub const CHANNEL_RETRY_BUFFER: usize = 16 * 1024 * 1024;
