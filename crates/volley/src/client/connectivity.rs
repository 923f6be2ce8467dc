//! [`ConnectivityState`]: the states of subchannels and channels (`doc/connectivity-semantics-and-api.md`).

use std::fmt;

/// The connectivity state of a subchannel, or of a channel as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConnectivityState {
    /// No connection and no attempt under way; the next call (or `connect`) starts one. The
    /// state of a new channel or subchannel.
    #[default]
    Idle,
    /// Connecting.
    Connecting,
    /// Connected: calls can be sent.
    Ready,
    /// Connecting failed; another attempt comes after a backoff. Calls without wait-for-ready
    /// fail with UNAVAILABLE.
    TransientFailure,
    /// Shut down for good.
    Shutdown,
}

impl fmt::Display for ConnectivityState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectivityState::Idle => "IDLE",
            ConnectivityState::Connecting => "CONNECTING",
            ConnectivityState::Ready => "READY",
            ConnectivityState::TransientFailure => "TRANSIENT_FAILURE",
            ConnectivityState::Shutdown => "SHUTDOWN",
        })
    }
}
