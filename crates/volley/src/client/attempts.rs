//! The retry and hedging state machine of one call (gRFC A6).
//!
//! A call whose method config has a `retryPolicy` or a `hedgingPolicy` runs here until it is
//! *committed*: until one attempt's response headers arrive (or a Trailers-Only success), or
//! its request messages outgrow the replay buffer. Until then every request message is sent
//! on each attempt in flight and kept, so that a new attempt can replay them; attempts that
//! fail with a retryable (non-fatal) status give way to new ones, after the policy's backoff
//! (retries) or at once (hedging, whose next attempts also start every `hedgingDelay`). Once
//! committed, the call goes on as a call without a policy: its other attempts are cancelled
//! (RST_STREAM CANCEL), the buffer is freed, and later failures are final.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Sleep;

use super::balancer::CallDone;
use super::channel::MAX_TRANSPARENT_RETRIES;
use super::method_config::{HedgingPolicy, MethodConfig, RetryPolicy};
use super::resolver::Address;
use super::retry::{Pushback, Reservation, RetryBackoff, Throttle};
use crate::transport::client::ResponseFuture;
use crate::transport::{RecvBody, SendBody};
use crate::{Code, Status};

/// An attempt's stream, open on a picked backend.
pub(super) struct OpenAttempt {
    pub(super) response: ResponseFuture,
    pub(super) send: SendBody,
    /// The balancer's callback for the attempt's end.
    pub(super) done: CallDone,
}

/// The backends a call's attempts went to, which the balancer avoids for its next attempts
/// if it can: filled as each attempt is picked, so that attempts started together (hedges
/// with no delay) spread too.
pub(super) type Attempted = Arc<Mutex<Vec<Address>>>;

/// What opening one attempt takes.
pub(super) struct AttemptParams {
    /// Attempts made before this one (sent as `grpc-previous-rpc-attempts`).
    pub(super) previous: u32,
    /// Transparent retries made so far (sent as `grpc-transparent-retry-attempts`).
    pub(super) transparent: u32,
    /// The backends earlier attempts went to (`None`: a call without a policy).
    pub(super) attempted: Option<Attempted>,
}

/// Opening one attempt: picking a backend and sending the request headers.
pub(super) type OpenFuture = Pin<Box<dyn Future<Output = Result<OpenAttempt, Status>> + Send>>;

/// A method's policy.
#[derive(Clone, Copy)]
pub(super) enum Policy<'a> {
    Retry(&'a RetryPolicy),
    Hedge(&'a HedgingPolicy),
}

impl<'a> Policy<'a> {
    /// The method's policy, if it has one (a valid config has at most one).
    pub(super) fn of(method: &'a MethodConfig) -> Option<Policy<'a>> {
        match (&method.retry_policy, &method.hedging_policy) {
            (Some(retry), _) => Some(Policy::Retry(retry)),
            (None, Some(hedge)) => Some(Policy::Hedge(hedge)),
            (None, None) => None,
        }
    }
}

/// The committed attempt's response.
pub(super) enum Answer {
    /// Its response headers (or a Trailers-Only success).
    Headers(http::Response<RecvBody>),
    /// Still to come: the call committed because its messages outgrew the buffer.
    Pending(ResponseFuture),
}

/// The attempt a call committed to.
pub(super) struct Committed {
    pub(super) answer: Answer,
    pub(super) send: SendBody,
    pub(super) done: CallDone,
    /// Whether every request message was sent (with END_STREAM); if not, the caller sends the
    /// rest on `send`.
    pub(super) input_ended: bool,
}

/// Where the request messages come from, encoded as length-prefixed frames.
pub(super) type NextMessage<'m> =
    dyn FnMut(&mut Context<'_>) -> Poll<Option<Result<Bytes, Status>>> + Send + 'm;

enum Slot {
    Opening { previous: u32, future: OpenFuture },
    Open { previous: u32, attempt: OpenAttempt },
}

/// One call's attempts, until it commits.
pub(super) struct Attempts<'a, O> {
    policy: Policy<'a>,
    backoff: Option<RetryBackoff>,
    max_attempts: u32,
    throttle: Option<&'a Throttle>,
    open: O,
    /// Attempts in flight, oldest first.
    slots: Vec<Slot>,
    /// Attempts started (transparent retries not counted).
    started: u32,
    transparent: u32,
    /// When the next attempt starts (a retry's backoff, or the next hedge).
    timer: Option<Pin<Box<Sleep>>>,
    /// The next attempt starts at once.
    due_now: bool,
    /// No further attempt starts (a pushback said so, or the throttle).
    no_more: bool,
    /// Every request message sent so far, for replay, and its share of the channel's pool.
    buffer: Vec<Bytes>,
    reservation: Reservation,
    input_ended: bool,
    last_failure: Option<Status>,
    attempted: Attempted,
}

impl<'a, O> Attempts<'a, O>
where
    O: Fn(AttemptParams) -> OpenFuture,
{
    /// A call under `policy`, at most `max_attempts` attempts, opened by `open`.
    pub(super) fn new(
        policy: Policy<'a>,
        max_attempts: u32,
        throttle: Option<&'a Throttle>,
        reservation: Reservation,
        open: O,
    ) -> Attempts<'a, O> {
        let (backoff, policy_attempts) = match policy {
            Policy::Retry(p) => (Some(RetryBackoff::new(p)), p.max_attempts),
            Policy::Hedge(p) => (None, p.max_attempts),
        };
        Attempts {
            policy,
            backoff,
            max_attempts: policy_attempts.min(max_attempts).max(1),
            throttle,
            open,
            slots: Vec::new(),
            started: 0,
            transparent: 0,
            timer: None,
            due_now: false,
            no_more: false,
            buffer: Vec::new(),
            reservation,
            input_ended: false,
            last_failure: None,
            attempted: Attempted::default(),
        }
    }

    /// A call whose one request message is `message` (unary and server-streaming); gives the
    /// message back if it does not fit in the buffer (the call then has nothing to replay).
    pub(super) fn with_message(mut self, message: Bytes) -> Result<Self, Bytes> {
        if !self.reservation.grow(message.len()) {
            return Err(message);
        }
        self.buffer.push(message);
        self.input_ended = true;
        Ok(self)
    }

    /// Runs the call until it commits, or fails before committing (with the status it ends
    /// with), or `stop` completes (the caller went away).
    pub(super) async fn run(
        mut self,
        next: &mut NextMessage<'_>,
        mut stop: Pin<&mut impl Future>,
    ) -> Result<Committed, Status> {
        self.start_attempt();
        if let Policy::Hedge(p) = self.policy {
            self.schedule(p.hedging_delay);
        }
        poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                self.cancel_all();
                return Poll::Ready(Err(Status::cancelled("the call was cancelled")));
            }
            self.poll_step(cx, next)
        })
        .await
    }

    fn poll_step(
        &mut self,
        cx: &mut Context<'_>,
        next: &mut NextMessage<'_>,
    ) -> Poll<Result<Committed, Status>> {
        loop {
            let mut progressed = false;
            let fired = self.due_now
                || self
                    .timer
                    .as_mut()
                    .is_some_and(|t| t.as_mut().poll(cx).is_ready());
            if fired {
                self.due_now = false;
                self.timer = None;
                self.next_attempt();
                progressed = true;
            }
            let mut i = 0;
            while i < self.slots.len() {
                match self.poll_slot(i, cx) {
                    SlotPoll::Pending => i += 1,
                    SlotPoll::Changed => progressed = true,
                    SlotPoll::Ended(end) => return Poll::Ready(end),
                }
            }
            if !self.input_ended
                && self.slots.iter().any(|s| matches!(s, Slot::Open { .. }))
                && let Some(end) = self.poll_input(cx, next)
            {
                return Poll::Ready(end);
            }
            if self.slots.is_empty() && self.timer.is_none() && !self.due_now {
                return Poll::Ready(Err(self.last_failure.take().unwrap_or_else(|| {
                    Status::unavailable("no attempt of the call could be made")
                })));
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    }

    /// Polls the attempt in slot `i`: opened, answered, or failed.
    fn poll_slot(&mut self, i: usize, cx: &mut Context<'_>) -> SlotPoll {
        match &mut self.slots[i] {
            Slot::Opening { previous, future } => {
                let previous = *previous;
                match future.as_mut().poll(cx) {
                    Poll::Pending => SlotPoll::Pending,
                    Poll::Ready(Ok(mut attempt)) => {
                        self.replay(&mut attempt.send);
                        self.slots[i] = Slot::Open { previous, attempt };
                        SlotPoll::Changed
                    }
                    Poll::Ready(Err(status)) => {
                        self.slots.remove(i);
                        self.failed(status)
                    }
                }
            }
            Slot::Open { previous, attempt } => {
                let previous = *previous;
                let response = match Pin::new(&mut attempt.response).poll(cx) {
                    Poll::Pending => return SlotPoll::Pending,
                    Poll::Ready(response) => response,
                };
                let Slot::Open { mut attempt, .. } = self.slots.remove(i) else {
                    return SlotPoll::Changed;
                };
                match response {
                    Ok(response) => match unanswered(&response) {
                        None => {
                            SlotPoll::Ended(Ok(self.commit(attempt, Answer::Headers(response))))
                        }
                        Some(status) => {
                            attempt.done.finish_with(&status);
                            self.failed(status)
                        }
                    },
                    Err(e)
                        if e.is_unprocessed()
                            && (self.transparent as usize) < MAX_TRANSPARENT_RETRIES =>
                    {
                        // The server never saw this attempt: send it again at once, without
                        // counting it as an attempt (A6's transparent retry).
                        tracing::debug!(error = %e, "stream not processed by the server; retrying");
                        attempt.done.finish_with(&e.to_status());
                        self.transparent += 1;
                        let future = (self.open)(self.params(previous));
                        self.slots.insert(i, Slot::Opening { previous, future });
                        SlotPoll::Changed
                    }
                    Err(e) => {
                        let status = e.to_status();
                        attempt.done.finish_with(&status);
                        self.failed(status)
                    }
                }
            }
        }
    }

    /// Sends the request messages that are ready on every open attempt, and keeps them.
    fn poll_input(
        &mut self,
        cx: &mut Context<'_>,
        next: &mut NextMessage<'_>,
    ) -> Option<Result<Committed, Status>> {
        loop {
            match next(cx) {
                Poll::Pending => return None,
                Poll::Ready(Some(Ok(message))) => {
                    for slot in &mut self.slots {
                        if let Slot::Open { attempt, .. } = slot {
                            // A failed send shows in the attempt's response.
                            let _ = attempt.send.send_data(message.clone(), false);
                        }
                    }
                    if !self.reservation.grow(message.len()) {
                        return Some(self.commit_overflow());
                    }
                    self.buffer.push(message);
                }
                Poll::Ready(Some(Err(status))) => {
                    self.cancel_all();
                    return Some(Err(status));
                }
                Poll::Ready(None) => {
                    self.input_ended = true;
                    for slot in &mut self.slots {
                        if let Slot::Open { attempt, .. } = slot {
                            let _ = attempt.send.send_data(Bytes::new(), true);
                        }
                    }
                    return None;
                }
            }
        }
    }

    /// An attempt failed with `status` before the call committed: another attempt is
    /// scheduled, or the call ends.
    fn failed(&mut self, status: Status) -> SlotPoll {
        let pushback = Pushback::read(status.metadata());
        let allows = |t: Option<&Throttle>| t.is_none_or(Throttle::allows);
        match self.policy {
            Policy::Retry(policy) => {
                let retryable = policy.retryable_status_codes.contains(&status.code());
                if (retryable || pushback == Pushback::Stop)
                    && let Some(t) = self.throttle
                {
                    t.failure();
                }
                let out_of_attempts = self.started >= self.max_attempts;
                if !retryable || pushback == Pushback::Stop || out_of_attempts {
                    self.cancel_all();
                    return SlotPoll::Ended(Err(status));
                }
                if !allows(self.throttle) {
                    tracing::debug!("retry throttled");
                    return SlotPoll::Ended(Err(status));
                }
                let delay = match self.backoff.as_mut() {
                    Some(backoff) => backoff.next(policy, pushback),
                    None => Duration::ZERO,
                };
                tracing::debug!(%status, ?delay, attempt = self.started, "retrying");
                self.schedule(delay);
                SlotPoll::Changed
            }
            Policy::Hedge(policy) => {
                if !policy.non_fatal_status_codes.contains(&status.code()) {
                    self.cancel_all();
                    return SlotPoll::Ended(Err(status));
                }
                if let Some(t) = self.throttle {
                    t.failure();
                }
                match pushback {
                    Pushback::Stop => {
                        self.no_more = true;
                        self.timer = None;
                        self.due_now = false;
                    }
                    // The next hedge after the pushback's delay, or at once.
                    Pushback::After(delay) => self.schedule(delay),
                    Pushback::None => self.schedule(Duration::ZERO),
                }
                tracing::debug!(%status, "hedged attempt failed");
                self.last_failure = Some(status);
                SlotPoll::Changed
            }
        }
    }

    /// Starts the next attempt when its time comes, if the policy and throttle allow one.
    fn next_attempt(&mut self) {
        if self.no_more || self.started >= self.max_attempts {
            return;
        }
        match self.policy {
            Policy::Retry(_) => self.start_attempt(),
            Policy::Hedge(p) => {
                if !self.throttle.is_none_or(Throttle::allows) {
                    tracing::debug!("hedging throttled");
                    self.no_more = true;
                    return;
                }
                self.start_attempt();
                self.schedule(p.hedging_delay);
            }
        }
    }

    /// The next attempt starts after `delay` (if another may start).
    fn schedule(&mut self, delay: Duration) {
        self.timer = None;
        self.due_now = false;
        if self.no_more || self.started >= self.max_attempts {
            return;
        }
        if delay.is_zero() {
            self.due_now = true;
        } else {
            self.timer = Some(Box::pin(tokio::time::sleep(delay)));
        }
    }

    fn start_attempt(&mut self) {
        let previous = self.started;
        self.started += 1;
        let future = (self.open)(self.params(previous));
        self.slots.push(Slot::Opening { previous, future });
    }

    fn params(&self, previous: u32) -> AttemptParams {
        AttemptParams {
            previous,
            transparent: self.transparent,
            attempted: Some(self.attempted.clone()),
        }
    }

    /// Sends the messages so far on a new attempt's stream (and END_STREAM if they ended).
    fn replay(&self, send: &mut SendBody) {
        let last = self.buffer.len();
        for (i, message) in self.buffer.iter().enumerate() {
            let end = self.input_ended && i + 1 == last;
            let _ = send.send_data(message.clone(), end);
        }
        if self.input_ended && self.buffer.is_empty() {
            let _ = send.send_data(Bytes::new(), true);
        }
    }

    /// The call commits to `attempt`: the others are cancelled.
    fn commit(&mut self, attempt: OpenAttempt, answer: Answer) -> Committed {
        self.cancel_all();
        Committed {
            answer,
            send: attempt.send,
            done: attempt.done,
            input_ended: self.input_ended,
        }
    }

    /// The request messages outgrew the buffer: the call commits to its oldest open attempt
    /// (every open attempt was sent every message).
    fn commit_overflow(&mut self) -> Result<Committed, Status> {
        tracing::debug!("request messages outgrew the retry buffer; the call commits");
        let oldest = self
            .slots
            .iter()
            .position(|s| matches!(s, Slot::Open { .. }));
        let Some(Slot::Open { attempt, .. }) = oldest.map(|i| self.slots.remove(i)) else {
            // Input is only read while an attempt is open.
            self.cancel_all();
            return Err(Status::internal(
                "request message read with no attempt open",
            ));
        };
        let OpenAttempt {
            response,
            send,
            done,
            ..
        } = attempt;
        self.cancel_all();
        Ok(Committed {
            answer: Answer::Pending(response),
            send,
            done,
            input_ended: self.input_ended,
        })
    }

    /// Cancels every attempt in flight and starts no more.
    fn cancel_all(&mut self) {
        self.timer = None;
        self.due_now = false;
        self.no_more = true;
        for slot in self.slots.drain(..) {
            if let Slot::Open { mut attempt, .. } = slot {
                attempt.send.cancel();
                attempt
                    .done
                    .finish_with(&Status::cancelled("another attempt of the call won"));
            }
        }
    }
}

enum SlotPoll {
    Pending,
    Changed,
    Ended(Result<Committed, Status>),
}

/// The non-OK status of a response that ends the call without a message (Trailers-Only, or
/// an HTTP error), which does not commit the call.
pub(super) fn unanswered(response: &http::Response<RecvBody>) -> Option<Status> {
    if response.status() != http::StatusCode::OK {
        return Some(
            Status::from_trailers(response.headers())
                .filter(|s| s.code() != Code::Ok)
                .unwrap_or_else(|| Status::from_http_status(response.status())),
        );
    }
    Status::from_trailers(response.headers()).filter(|s| s.code() != Code::Ok)
}
