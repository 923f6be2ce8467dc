//! What a connection's bytes say about it, seen without help from the HTTP/2 engine: an I/O
//! wrapper ([`Watched`]) between the socket and `h2` that follows the frame headers going by.
//!
//! `h2` answers PINGs on its own and reports no frame it handles, but connection management
//! needs three things from the frames (gRFCs A8 and A9, grpc-go's `http2_server.go`):
//! - when the peer last sent anything, for keepalive (on both sides);
//! - the PINGs a client sends, for the server's ping enforcement, and whether the server sent
//!   HEADERS or DATA since (which forgives earlier strikes);
//! - the debug data of a GOAWAY the client receives (`too_many_pings` asks it to slow down),
//!   and, on the server, a way to put that debug data into its own GOAWAY, which `h2` sends
//!   without debug data.
//!
//! Only the 9-byte frame headers are parsed (and the first bytes of a GOAWAY's payload), so
//! the cost per read or write is a few comparisons per frame.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

const FRAME_HEADER_LEN: usize = 9;
const TYPE_DATA: u8 = 0x0;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_PING: u8 = 0x6;
const TYPE_GOAWAY: u8 = 0x7;
const FLAG_ACK: u8 = 0x1;
/// HTTP/2's ENHANCE_YOUR_CALM error code.
const ENHANCE_YOUR_CALM: u32 = 0xb;
/// The GOAWAY debug data with which a server asks a client to ping less often (grpc-go's).
pub(crate) const TOO_MANY_PINGS: &str = "too_many_pings";
/// The client connection preface, which precedes the first frame a client sends.
const CLIENT_PREFACE_LEN: usize = 24;
/// How many bytes of a received GOAWAY's payload are kept: last stream id, error code and
/// enough debug data to recognise `too_many_pings`.
const GOAWAY_KEPT: usize = 8 + 64;
/// Without calls, and unless the server permits keepalive without calls, any two pings closer
/// than this are a strike (grpc-go's `defaultPingTimeout`).
const PING_INTERVAL_WITHOUT_CALLS: Duration = Duration::from_secs(2 * 60 * 60);
/// Strikes allowed before the server closes the connection (grpc-go's `maxPingStrikes`).
const MAX_PING_STRIKES: u32 = 2;

/// What the owner of a connection shares with its [`Watched`] I/O.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    /// Microseconds after `base` of the last read that returned data.
    last_read: AtomicU64,
    /// Server: the client broke the ping policy. Client: the server sent GOAWAY
    /// ENHANCE_YOUR_CALM `too_many_pings`. Set while h2 reads the socket, so on the task that
    /// drives the connection; that task checks it after each turn (no waker needed).
    too_many_pings: AtomicBool,
    /// Server: how many calls are open (each holds an [`OpenCall`]).
    active_calls: AtomicUsize,
    /// Server: notified when `active_calls` drops to zero.
    no_calls: Notify,
    /// Server: how many PING ACKs the client has sent.
    ping_acks: AtomicU64,
    /// Server: the client's first SETTINGS frame has arrived, which ends its handshake.
    settings_seen: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        let base = Instant::now();
        Arc::new(Activity {
            base,
            last_read: AtomicU64::new(0),
            too_many_pings: AtomicBool::new(false),
            active_calls: AtomicUsize::new(0),
            no_calls: Notify::new(),
            ping_acks: AtomicU64::new(0),
            settings_seen: AtomicBool::new(false),
        })
    }

    pub(crate) fn touch(&self) {
        let micros = self.base.elapsed().as_micros() as u64;
        self.last_read.store(micros, Ordering::Relaxed);
    }

    /// When data last arrived from the peer (the connection's start if never).
    pub(crate) fn last_read(&self) -> Instant {
        self.base + Duration::from_micros(self.last_read.load(Ordering::Relaxed))
    }

    /// See the field's documentation.
    pub(crate) fn too_many_pings(&self) -> bool {
        self.too_many_pings.load(Ordering::Relaxed)
    }

    pub(crate) fn set_too_many_pings(&self) {
        self.too_many_pings.store(true, Ordering::Relaxed);
    }

    /// Server: the client's first SETTINGS frame arrived.
    #[cfg(feature = "engine")]
    pub(crate) fn saw_settings(&self) {
        self.settings_seen.store(true, Ordering::Relaxed);
    }

    /// Server: the client acknowledged a PING.
    #[cfg(feature = "engine")]
    pub(crate) fn saw_ping_ack(&self) {
        self.ping_acks.fetch_add(1, Ordering::Relaxed);
    }

    /// Server: whether the client's first SETTINGS frame has arrived (RFC 9113 makes it the
    /// first frame after the preface).
    pub(crate) fn settings_seen(&self) -> bool {
        self.settings_seen.load(Ordering::Relaxed)
    }

    /// Server: how many PING ACKs the client has sent so far.
    pub(crate) fn ping_acks(&self) -> u64 {
        self.ping_acks.load(Ordering::Relaxed)
    }

    /// Server: a call opened; it counts as open until the returned guard is dropped (ping
    /// enforcement is stricter without calls, and the idle limit counts from the last call).
    pub(crate) fn call_opened(self: &Arc<Self>) -> OpenCall {
        self.active_calls.fetch_add(1, Ordering::Relaxed);
        OpenCall(self.clone())
    }

    /// Server: how many calls are open.
    pub(crate) fn active_calls(&self) -> usize {
        self.active_calls.load(Ordering::Relaxed)
    }

    /// Server: completes after the last open call ended (possibly before this was called:
    /// the wake-up is kept; check [`Activity::active_calls`] after it).
    pub(crate) async fn calls_ended(&self) {
        self.no_calls.notified().await;
    }
}

/// One open call on a server connection, counted in [`Activity`] until dropped.
#[derive(Debug)]
pub(crate) struct OpenCall(Arc<Activity>);

impl Drop for OpenCall {
    fn drop(&mut self) {
        if self.0.active_calls.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.no_calls.notify_one();
        }
    }
}

/// The server's ping policy (grpc-go's `keepalive.EnforcementPolicy`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PingPolicy {
    /// Pings closer together than this are strikes.
    pub(crate) min_interval: Duration,
    /// Whether pings are allowed when no call is open.
    pub(crate) permit_without_calls: bool,
}

/// Enforcement state of one server connection.
#[derive(Debug)]
pub(crate) struct Enforcer {
    policy: PingPolicy,
    last_ping: Option<Instant>,
    strikes: u32,
    /// Set when the server sent HEADERS or DATA: the next ping is forgiven and the strikes
    /// reset.
    forgive: bool,
}

impl Enforcer {
    pub(crate) fn new(policy: PingPolicy) -> Enforcer {
        Enforcer {
            policy,
            last_ping: None,
            strikes: 0,
            forgive: false,
        }
    }

    /// The server sent HEADERS or DATA: the next ping is forgiven.
    #[cfg(feature = "engine")]
    pub(crate) fn forgive(&mut self) {
        self.forgive = true;
    }

    /// A PING (not an ACK) arrived; true when it is one strike too many.
    pub(crate) fn ping(&mut self, active_calls: usize) -> bool {
        let now = Instant::now();
        let last = self.last_ping.replace(now);
        if std::mem::take(&mut self.forgive) {
            self.strikes = 0;
            return false;
        }
        let min = if active_calls == 0 && !self.policy.permit_without_calls {
            PING_INTERVAL_WITHOUT_CALLS
        } else {
            self.policy.min_interval
        };
        if last.is_some_and(|last| now < last + min) {
            self.strikes += 1;
        }
        self.strikes > MAX_PING_STRIKES
    }
}

/// Follows the frame headers of one direction of a connection.
#[derive(Debug, Default)]
struct FrameCursor {
    /// Preface bytes still to pass before the first frame.
    skip: usize,
    header: [u8; FRAME_HEADER_LEN],
    /// How many bytes of `header` have been seen.
    have: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: usize,
}

/// A frame header, as the cursor reports it.
#[derive(Debug, Clone, Copy)]
struct Header {
    len: usize,
    kind: u8,
    flags: u8,
}

impl FrameCursor {
    fn header(&self) -> Header {
        let h = &self.header;
        Header {
            len: (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]),
            kind: h[3],
            flags: h[4],
        }
    }

    /// Moves over `data`, calling `on(header, None)` for each complete frame header and
    /// `on(header, Some(piece))` with each piece of its payload.
    fn advance(&mut self, mut data: &[u8], mut on: impl FnMut(Header, Option<&[u8]>)) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(data.len());
                on(self.header(), Some(&data[..n]));
                self.payload_left -= n;
                data = &data[n..];
            } else {
                let n = (FRAME_HEADER_LEN - self.have).min(data.len());
                self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
                self.have += n;
                data = &data[n..];
                if self.have == FRAME_HEADER_LEN {
                    self.have = 0;
                    let header = self.header();
                    self.payload_left = header.len;
                    on(header, None);
                }
            }
        }
    }
}

/// Which end of the connection the wrapper is on.
#[derive(Debug)]
enum Role {
    Client {
        /// The payload of the GOAWAY being received.
        goaway: Vec<u8>,
    },
    Server {
        enforcer: Option<Enforcer>,
        /// Frames written (handed to `rewrite` when that starts).
        written: FrameCursor,
        /// After the connection broke the ping policy: GOAWAY ENHANCE_YOUR_CALM frames get
        /// `too_many_pings` as debug data.
        rewrite: Option<Box<Rewriter>>,
    },
}

/// An I/O object that watches the HTTP/2 frames passing through it.
#[derive(Debug)]
pub(crate) struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
    read: FrameCursor,
    role: Role,
}

impl<T> Watched<T> {
    /// The client end of a connection.
    pub(crate) fn client(io: T) -> (Watched<T>, Arc<Activity>) {
        let activity = Activity::new();
        let watched = Watched {
            io,
            activity: activity.clone(),
            read: FrameCursor::default(),
            role: Role::Client { goaway: Vec::new() },
        };
        (watched, activity)
    }

    /// The server end of a connection; `policy` enforces how often the client may ping.
    pub(crate) fn server(io: T, policy: Option<PingPolicy>) -> (Watched<T>, Arc<Activity>) {
        let activity = Activity::new();
        let watched = Watched {
            io,
            activity: activity.clone(),
            read: FrameCursor {
                skip: CLIENT_PREFACE_LEN,
                ..FrameCursor::default()
            },
            role: Role::Server {
                enforcer: policy.map(Enforcer::new),
                written: FrameCursor::default(),
                rewrite: None,
            },
        };
        (watched, activity)
    }

    /// Looks at bytes just read.
    fn saw_read(&mut self, data: &[u8]) {
        self.activity.touch();
        let activity = &self.activity;
        match &mut self.role {
            Role::Client { goaway } => self.read.advance(data, |h, piece| {
                if h.kind != TYPE_GOAWAY {
                    return;
                }
                let Some(piece) = piece else {
                    goaway.clear();
                    return;
                };
                let keep = (GOAWAY_KEPT.saturating_sub(goaway.len())).min(piece.len());
                goaway.extend_from_slice(&piece[..keep]);
                if goaway.len() >= 8 && goaway_says_too_many_pings(goaway) {
                    activity.set_too_many_pings();
                }
            }),
            Role::Server { enforcer, .. } => self.read.advance(data, |h, piece| {
                if piece.is_none() && h.kind == TYPE_SETTINGS {
                    activity.settings_seen.store(true, Ordering::Relaxed);
                }
                if piece.is_some() || h.kind != TYPE_PING {
                    return;
                }
                if h.flags & FLAG_ACK != 0 {
                    activity.ping_acks.fetch_add(1, Ordering::Relaxed);
                } else if let Some(enforcer) = enforcer.as_mut()
                    && enforcer.ping(activity.active_calls.load(Ordering::Relaxed))
                    && !activity.too_many_pings()
                {
                    tracing::debug!("client pinged too often: GOAWAY too_many_pings");
                    activity.set_too_many_pings();
                }
            }),
        }
    }
}

/// True for a GOAWAY payload with ENHANCE_YOUR_CALM and debug data `too_many_pings`.
fn goaway_says_too_many_pings(payload: &[u8]) -> bool {
    payload.len() >= 8
        && u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]) == ENHANCE_YOUR_CALM
        && payload[8..].starts_with(TOO_MANY_PINGS.as_bytes())
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.saw_read(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Role::Server {
            enforcer,
            written,
            rewrite,
        } = &mut this.role
        else {
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        };
        if rewrite.is_none() && this.activity.too_many_pings() {
            *rewrite = Some(Box::new(Rewriter::new(std::mem::take(written))));
        }
        if let Some(rewrite) = rewrite {
            return rewrite.poll_write(&mut this.io, cx, bufs);
        }
        let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
        if let Some(enforcer) = enforcer {
            let mut left = n;
            for buf in bufs {
                if left == 0 {
                    break;
                }
                let piece = &buf[..left.min(buf.len())];
                left -= piece.len();
                written.advance(piece, |h, payload| {
                    if payload.is_none() && (h.kind == TYPE_HEADERS || h.kind == TYPE_DATA) {
                        enforcer.forgive = true;
                    }
                });
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Role::Server {
            rewrite: Some(rewrite),
            ..
        } = &mut this.role
        {
            ready!(rewrite.drain(&mut this.io, cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Role::Server {
            rewrite: Some(rewrite),
            ..
        } = &mut this.role
        {
            ready!(rewrite.drain(&mut this.io, cx))?;
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Copies what h2 writes through a buffer, adding `too_many_pings` to GOAWAY
/// ENHANCE_YOUR_CALM frames. Used only once a connection is being closed for too many pings.
#[derive(Debug)]
struct Rewriter {
    cursor: FrameCursor,
    /// Header bytes of the current frame already sent before the rewriting started.
    header_sent: usize,
    /// The current frame is a GOAWAY whose first 8 payload bytes are being held.
    held: Option<Vec<u8>>,
    out: Vec<u8>,
    out_pos: usize,
}

impl Rewriter {
    fn new(cursor: FrameCursor) -> Rewriter {
        Rewriter {
            header_sent: cursor.have,
            cursor,
            held: None,
            out: Vec::new(),
            out_pos: 0,
        }
    }

    /// Writes out what is buffered; ready once all of it is written.
    fn drain<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_write<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(io, cx))?;
        let mut n = 0;
        for buf in bufs {
            self.push(buf);
            n += buf.len();
        }
        // Written or not yet, the bytes are taken; a pending drain has registered the waker
        // and the next write or flush goes on with it.
        if let Poll::Ready(Err(e)) = self.drain(io, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn push(&mut self, data: &[u8]) {
        let Rewriter {
            cursor,
            header_sent,
            held,
            out,
            ..
        } = self;
        let mut data = data;
        while !data.is_empty() {
            if let Some(held_bytes) = held {
                // The first 8 payload bytes of a GOAWAY: last stream id and error code.
                let n = (8 - held_bytes.len()).min(data.len());
                held_bytes.extend_from_slice(&data[..n]);
                cursor.payload_left -= n;
                data = &data[n..];
                if held_bytes.len() == 8 {
                    let header = cursor.header();
                    let code = u32::from_be_bytes([
                        held_bytes[4],
                        held_bytes[5],
                        held_bytes[6],
                        held_bytes[7],
                    ]);
                    let mut frame_header = cursor.header;
                    if code == ENHANCE_YOUR_CALM && header.len == 8 {
                        let len = 8 + TOO_MANY_PINGS.len();
                        frame_header[0] = (len >> 16) as u8;
                        frame_header[1] = (len >> 8) as u8;
                        frame_header[2] = len as u8;
                        out.extend_from_slice(&frame_header);
                        out.extend_from_slice(held_bytes);
                        out.extend_from_slice(TOO_MANY_PINGS.as_bytes());
                    } else {
                        out.extend_from_slice(&frame_header);
                        out.extend_from_slice(held_bytes);
                    }
                    *held = None;
                }
                continue;
            }
            if cursor.payload_left > 0 {
                let n = cursor.payload_left.min(data.len());
                out.extend_from_slice(&data[..n]);
                cursor.payload_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (FRAME_HEADER_LEN - cursor.have).min(data.len());
            cursor.header[cursor.have..cursor.have + n].copy_from_slice(&data[..n]);
            cursor.have += n;
            data = &data[n..];
            if cursor.have == FRAME_HEADER_LEN {
                // A header is complete: a GOAWAY's start is held until its error code is
                // known; any other header goes out (less what went out before rewriting).
                cursor.have = 0;
                let header = cursor.header();
                cursor.payload_left = header.len;
                let sent = std::mem::take(header_sent);
                if sent == 0 && header.kind == TYPE_GOAWAY && header.len >= 8 {
                    *held = Some(Vec::with_capacity(8));
                } else {
                    out.extend_from_slice(&cursor.header[sent..]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn goaway(last: u32, code: u32, debug: &[u8]) -> Vec<u8> {
        let mut payload = last.to_be_bytes().to_vec();
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(debug);
        frame(TYPE_GOAWAY, 0, 0, &payload)
    }

    #[test]
    fn cursor_reports_headers_split_anywhere() {
        let mut bytes = frame(TYPE_DATA, 0, 1, b"hello");
        bytes.extend(frame(TYPE_PING, 0, 0, &[0; 8]));
        bytes.extend(frame(TYPE_PING, FLAG_ACK, 0, &[0; 8]));
        for split in 0..bytes.len() {
            let mut cursor = FrameCursor::default();
            let mut kinds = Vec::new();
            let mut payload = 0;
            for piece in [&bytes[..split], &bytes[split..]] {
                cursor.advance(piece, |h, p| match p {
                    None => kinds.push((h.kind, h.flags, h.len)),
                    Some(p) => payload += p.len(),
                });
            }
            assert_eq!(
                kinds,
                vec![
                    (TYPE_DATA, 0, 5),
                    (TYPE_PING, 0, 8),
                    (TYPE_PING, FLAG_ACK, 8)
                ]
            );
            assert_eq!(payload, 21);
        }
    }

    #[test]
    fn server_sees_the_first_settings_after_the_preface() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // A DATA frame whose payload holds a SETTINGS header's bytes must not count.
        let fake = frame(TYPE_SETTINGS, 0, 0, &[]);
        bytes.extend(frame(TYPE_DATA, 0, 1, &fake));
        let settings_at = bytes.len();
        bytes.extend(frame(TYPE_SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        for split in 0..bytes.len() {
            let (mut w, activity) = Watched::server((), None);
            w.saw_read(&bytes[..split]);
            assert_eq!(
                activity.settings_seen(),
                split >= settings_at + FRAME_HEADER_LEN
            );
            w.saw_read(&bytes[split..]);
            assert!(activity.settings_seen(), "split at {split}");
        }
    }

    #[test]
    fn client_recognises_too_many_pings_goaway() {
        for (debug, code, expected) in [
            (&b"too_many_pings"[..], ENHANCE_YOUR_CALM, true),
            (b"", ENHANCE_YOUR_CALM, false),
            (b"too_many_pings", 0, false),
            (b"something else", ENHANCE_YOUR_CALM, false),
        ] {
            let bytes = goaway(3, code, debug);
            for split in 0..bytes.len() {
                let (mut w, activity) = Watched::client(());
                w.saw_read(&bytes[..split]);
                w.saw_read(&bytes[split..]);
                assert_eq!(activity.too_many_pings(), expected, "{debug:?} {code}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn enforcer_counts_strikes_like_grpc_go() {
        let policy = PingPolicy {
            min_interval: Duration::from_secs(1),
            permit_without_calls: true,
        };
        let mut e = Enforcer {
            policy,
            last_ping: None,
            strikes: 0,
            forgive: false,
        };
        // The first ping is never a strike; three quick ones after it close the connection.
        assert!(!e.ping(0));
        assert!(!e.ping(0));
        assert!(!e.ping(0));
        assert!(e.ping(0));
        // Pings far enough apart are fine.
        let mut e = Enforcer {
            policy,
            last_ping: None,
            strikes: 0,
            forgive: false,
        };
        for _ in 0..10 {
            assert!(!e.ping(0));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Sending headers or data forgives.
        assert!(!e.ping(0));
        assert!(!e.ping(0));
        e.forgive = true;
        assert!(!e.ping(0));
        assert_eq!(e.strikes, 0);
        // Without calls, pings must be two hours apart unless permitted.
        let mut e = Enforcer {
            policy: PingPolicy {
                permit_without_calls: false,
                ..policy
            },
            last_ping: None,
            strikes: 0,
            forgive: false,
        };
        assert!(!e.ping(0));
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(!e.ping(0));
        assert_eq!(e.strikes, 1);
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(!e.ping(1));
        assert_eq!(e.strikes, 1);
    }

    #[test]
    fn rewriter_adds_debug_data_to_enhance_your_calm_goaway() {
        let mut stream = frame(TYPE_DATA, 0, 1, b"abc");
        stream.extend(goaway(7, ENHANCE_YOUR_CALM, b""));
        stream.extend(goaway(7, 0, b""));
        let mut expected = frame(TYPE_DATA, 0, 1, b"abc");
        expected.extend(goaway(7, ENHANCE_YOUR_CALM, TOO_MANY_PINGS.as_bytes()));
        expected.extend(goaway(7, 0, b""));
        for split in 0..stream.len() {
            let mut r = Rewriter::new(FrameCursor::default());
            r.push(&stream[..split]);
            r.push(&stream[split..]);
            assert_eq!(r.out, expected, "split at {split}");
        }
        // Rewriting that starts in the middle of a frame passes the rest of it through.
        let mut cursor = FrameCursor::default();
        cursor.advance(&stream[..4], |_, _| {});
        let mut r = Rewriter::new(cursor);
        r.push(&stream[4..]);
        assert_eq!(r.out, expected[4..]);
    }
}
