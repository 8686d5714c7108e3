//! The connection side of a [`Subscriber`](super::Subscriber): how a subscription is opened,
//! and which failures are worth another attempt.

use std::future::Future;

use tonic::{Code, Status, Streaming, transport::Channel};

use crate::v1::{SubscribeRequest, SubscribeResponse, relay_client::RelayClient};

/// What a subscriber does after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Subscribe again after a backoff, after the last cursor received.
    Resume,
    /// Subscribe again after a backoff from the starting position, forgetting the cursor
    /// (the records in between are lost): for a position older than the relay holds, when
    /// going on matters more than completeness.
    Restart,
    /// Stop: [`Subscriber::next`](super::Subscriber::next) returns the failure.
    Fail,
}

/// Opens subscriptions for a [`Subscriber`](super::Subscriber): connecting, authenticating,
/// and whatever a caller needs before each Subscribe call (another relay learns the
/// upstream's shards there).
pub trait Open {
    /// Why opening failed. Cloned into the failure a subscriber gives up with.
    type Error: Clone + Send;

    /// Sends `request` (its starting position already set) and returns the response stream.
    fn open(
        &mut self,
        request: SubscribeRequest,
    ) -> impl Future<Output = Result<Streaming<SubscribeResponse>, Self::Error>> + Send;

    /// What to do after `open` failed with `error`.
    fn after_open_error(&self, error: &Self::Error) -> Action;

    /// What to do after an open subscription ended with `status`. By default
    /// [`is_transient`] statuses are resumed and the others returned.
    fn after_status(&self, status: &Status) -> Action {
        if is_transient(status) {
            Action::Resume
        } else {
            Action::Fail
        }
    }
}

/// Whether a subscription that ended with `status` should be resumed (after a backoff)
/// rather than reported: the relay shutting down or restarting, a lost connection, or a
/// subscriber disconnected for reading too slowly (whose status carries the cursor).
pub fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        // Shutdown, restart, connection loss.
        Code::Unavailable
            // Fell behind under the DISCONNECT policy (the status carries the cursor), or a
            // transient limit.
            | Code::ResourceExhausted
            // What a reset HTTP/2 stream or a dropped connection surfaces as mid-stream.
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
            | Code::DeadlineExceeded
    )
}

/// The plain generated client: statuses classified by [`is_transient`]. Wrap it in an
/// interceptor, or implement [`Open`] yourself, to send a token or bound the call.
impl Open for RelayClient<Channel> {
    type Error = Status;

    async fn open(
        &mut self,
        request: SubscribeRequest,
    ) -> Result<Streaming<SubscribeResponse>, Status> {
        Ok(self.subscribe(request).await?.into_inner())
    }

    fn after_open_error(&self, status: &Status) -> Action {
        self.after_status(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_statuses_are_resumed() {
        assert!(is_transient(&Status::unavailable("shutting down")));
        assert!(is_transient(&Status::resource_exhausted("too slow")));
        assert!(!is_transient(&Status::not_found("x")));
        assert!(!is_transient(&Status::invalid_argument("x")));
        assert!(!is_transient(&Status::out_of_range("x")));
        assert!(!is_transient(&Status::permission_denied("x")));
    }
}
