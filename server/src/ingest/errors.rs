//! Which AWS errors mean what to a shard reader.

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use kinesis_relay_api::backoff::Backoff;
use tokio::{sync::watch, time::sleep};
use tracing::warn;

use super::IngestSettings;

/// How a reader reacts to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Another subscription for this consumer and shard is live (within 5 s of ours, or
    /// another process with the same consumer name).
    InUse,
    /// The consumer (or stream) is gone.
    NotFound,
    /// Throttled or over a limit: back off.
    Throttled,
    /// A GetRecords shard iterator older than 5 minutes: get a new one.
    ExpiredIterator,
    /// The request was refused as invalid (e.g. a sequence number Kinesis no longer has).
    InvalidArgument,
    /// Anything else (network, 5xx, dropped stream): back off and retry.
    Transient,
}

impl ErrorKind {
    /// A stable label for logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::InUse => "resource_in_use",
            Self::NotFound => "not_found",
            Self::Throttled => "throttled",
            Self::ExpiredIterator => "expired_iterator",
            Self::InvalidArgument => "invalid_argument",
            Self::Transient => "transient",
        }
    }
}

/// Classifies by the AWS error code.
pub fn classify(error: &impl ProvideErrorMetadata) -> ErrorKind {
    classify_code(error.code())
}

/// Classifies an AWS error code.
pub fn classify_code(code: Option<&str>) -> ErrorKind {
    match code {
        Some("ResourceInUseException") => ErrorKind::InUse,
        Some("ResourceNotFoundException") => ErrorKind::NotFound,
        Some(
            "LimitExceededException"
            | "ThrottlingException"
            | "ProvisionedThroughputExceededException"
            | "KMSThrottlingException",
        ) => ErrorKind::Throttled,
        Some("ExpiredIteratorException") => ErrorKind::ExpiredIterator,
        Some("InvalidArgumentException") => ErrorKind::InvalidArgument,
        _ => ErrorKind::Transient,
    }
}

/// Retries an AWS call with backoff until it succeeds, fails for good (not found), the
/// consumer deadline passes, or shutdown.
pub(super) async fn retry<T, F, Fut>(
    settings: &IngestSettings,
    shutdown: &mut watch::Receiver<bool>,
    what: &str,
    mut call: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, (ErrorKind, String)>>,
{
    let deadline = tokio::time::Instant::now() + settings.consumer_deadline;
    let mut backoff = Backoff::new(settings.backoff_base, settings.backoff_cap);
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err((ErrorKind::NotFound, cause)) => {
                anyhow::bail!("{what}: {cause}; check the stream name and the region")
            }
            Err((kind, cause)) => {
                if tokio::time::Instant::now() >= deadline {
                    anyhow::bail!(
                        "{what}: still failing after {:?}: {cause}",
                        settings.consumer_deadline
                    );
                }
                let delay = backoff.next_delay();
                warn!(what, kind = kind.label(), cause, ?delay, "retrying");
                tokio::select! {
                    _ = sleep(delay) => {}
                    _ = crate::stopped(shutdown) => anyhow::bail!("{what}: interrupted by shutdown"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_codes_readers_meet() {
        assert_eq!(
            classify_code(Some("ResourceInUseException")),
            ErrorKind::InUse
        );
        assert_eq!(
            classify_code(Some("ResourceNotFoundException")),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify_code(Some("LimitExceededException")),
            ErrorKind::Throttled
        );
        assert_eq!(classify_code(Some("InternalFailure")), ErrorKind::Transient);
        assert_eq!(classify_code(None), ErrorKind::Transient);
    }
}
