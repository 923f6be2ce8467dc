//! etcd authentication as a Volley client [`Middleware`]: [`TokenAuth`].
//!
//! etcd with auth enabled wants a `token` metadata entry on every call, got from
//! `Auth/Authenticate` with a user name and password. Tokens expire (etcd's
//! `--auth-token-ttl`) and a restarted etcd forgets its simple tokens, so a client must be
//! ready to authenticate again. The middleware does it all around each call:
//!
//! - **start**: without a token, authenticate first (one `Authenticate` call at a time; calls
//!   that start meanwhile wait for its token); then add `token` to the call's metadata.
//! - **end**: when etcd answers that the token is invalid, forget it (if it is still the
//!   current one), so the next call authenticates again. The failed call is not repeated:
//!   the request may have been a stream, and the caller knows best whether to try again.
//!
//! [`crate::EtcdClient`] sets it up when given credentials; a channel of one's own to etcd can
//! use it too:
//!
//! ```no_run
//! # fn demo() -> Result<(), volley::Error> {
//! use std::time::Duration;
//! use volley_etcd::auth::TokenAuth;
//!
//! let auth = TokenAuth::new("root".into(), "secret".into(), Duration::from_secs(5));
//! let channel = volley::Channel::builder("127.0.0.1:2379")
//!     .middleware(auth.clone())
//!     .build()?;
//! auth.use_channel(&channel);
//! # Ok(()) }
//! ```

use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use volley::middleware::{CallObserver, CallOutcome, CallStart, Middleware, StartFuture};
use volley::{Code, Request, Status, WeakChannel};

use crate::proto::etcdserverpb::{AuthClient, AuthenticateRequest};

/// The method that hands out tokens: it runs without one.
const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";

/// A client middleware that authenticates to etcd and sends the token with every call; see
/// the [module documentation](self). Cheap to clone; clones share the token.
#[derive(Clone)]
pub struct TokenAuth {
    state: Arc<State>,
}

struct State {
    user: String,
    password: String,
    timeout: Duration,
    /// The channel to authenticate on: the one the middleware is installed on. Weak, since
    /// that channel holds the middleware.
    channel: OnceLock<WeakChannel>,
    token: RwLock<Option<Arc<str>>>,
    /// Held while authenticating, so that concurrent calls share one `Authenticate`.
    authenticating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth")
            .field("user", &self.state.user)
            .field("has_token", &self.state.current().is_some())
            .finish_non_exhaustive()
    }
}

impl TokenAuth {
    /// Authenticates as `user` with `password`; each `Authenticate` call has `timeout` as its
    /// deadline. Calls fail with UNAVAILABLE until [`use_channel`](Self::use_channel) names
    /// the channel to authenticate on.
    pub fn new(user: String, password: String, timeout: Duration) -> TokenAuth {
        TokenAuth {
            state: Arc::new(State {
                user,
                password,
                timeout,
                channel: OnceLock::new(),
                token: RwLock::new(None),
                authenticating: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Authenticates on `channel` (normally the channel this middleware is installed on; it is
    /// held weakly, so it still shuts down when its last handle goes). Only the first call
    /// counts.
    pub fn use_channel(&self, channel: &volley::Channel) {
        let _ = self.state.channel.set(channel.downgrade());
    }
}

impl State {
    fn current(&self) -> Option<Arc<str>> {
        self.token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current token, authenticating first when there is none.
    async fn token(&self) -> Result<Arc<str>, Status> {
        if let Some(token) = self.current() {
            return Ok(token);
        }
        let _one_at_a_time = self.authenticating.lock().await;
        // Another call may have authenticated while this one waited.
        if let Some(token) = self.current() {
            return Ok(token);
        }
        let channel = self
            .channel
            .get()
            .and_then(WeakChannel::upgrade)
            .ok_or_else(|| Status::unavailable("etcd authentication has no channel"))?;
        let response = AuthClient::new(channel)
            .authenticate(
                Request::new(AuthenticateRequest {
                    name: self.user.clone(),
                    password: self.password.clone(),
                })
                .with_timeout(self.timeout),
            )
            .await?
            .into_inner();
        let token: Arc<str> = response.token.into();
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        Ok(token)
    }

    /// Forgets `token` if it is still the current one (a newer one stays).
    fn forget(&self, token: &Arc<str>) {
        let mut current = self.token.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|t| Arc::ptr_eq(t, token)) {
            tracing::debug!(user = %self.user, "etcd rejected the token; authenticating again on the next call");
            *current = None;
        }
    }
}

impl Middleware for TokenAuth {
    fn start<'a>(&'a self, call: &'a mut CallStart<'_>) -> StartFuture<'a> {
        Box::pin(async move {
            if call.path() == AUTHENTICATE {
                return Ok(None);
            }
            let token = self.state.token().await?;
            call.metadata_mut().insert("token", &token).map_err(|e| {
                Status::internal(format!("etcd sent a token that is not metadata: {e}"))
            })?;
            Ok(Some(Box::new(ForgetRejected {
                state: self.state.clone(),
                token,
            }) as Box<dyn CallObserver>))
        })
    }
}

/// Watches one call for etcd's "bad token" answer.
struct ForgetRejected {
    state: Arc<State>,
    token: Arc<str>,
}

impl CallObserver for ForgetRejected {
    fn end(self: Box<Self>, outcome: &CallOutcome<'_>) {
        if is_bad_token(outcome.status()) {
            self.state.forget(&self.token);
        }
    }
}

/// etcd's answers to a missing, expired or unknown token.
pub(crate) fn is_bad_token(status: &Status) -> bool {
    matches!(status.code(), Code::Unauthenticated | Code::InvalidArgument)
        && (status.message().contains("token") || status.message().contains("user name is empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_token_answers_are_recognised() {
        assert!(is_bad_token(&Status::unauthenticated(
            "etcdserver: invalid auth token"
        )));
        assert!(is_bad_token(&Status::invalid_argument(
            "etcdserver: user name is empty"
        )));
        assert!(!is_bad_token(&Status::unauthenticated(
            "etcdserver: authentication failed, invalid user ID or password"
        )));
        assert!(!is_bad_token(&Status::unavailable("token")));
    }

    #[test]
    fn only_the_current_token_is_forgotten() {
        let auth = TokenAuth::new("u".into(), "p".into(), Duration::from_secs(1));
        let old: Arc<str> = "old".into();
        let new: Arc<str> = "new".into();
        *auth
            .state
            .token
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(new.clone());
        auth.state.forget(&old);
        assert_eq!(auth.state.current().as_deref(), Some("new"));
        auth.state.forget(&new);
        assert_eq!(auth.state.current(), None);
    }

    #[tokio::test]
    async fn without_a_channel_calls_fail_unavailable() {
        let auth = TokenAuth::new("u".into(), "p".into(), Duration::from_secs(1));
        let status = auth.state.token().await.expect_err("no channel");
        assert_eq!(status.code(), Code::Unavailable);
    }
}
