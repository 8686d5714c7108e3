//! Which AWS errors mean what to ingest, the retry rule of control-plane calls, and why
//! ingest of a stream stops ([`IngestError`]).

use std::{fmt::Debug, path::PathBuf, time::Duration};

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use kinesis_relay_api::backoff::Backoff;
use tokio::{sync::watch, time::sleep};
use tracing::warn;

use super::{IngestSettings, checkpoint::CheckpointError, consumer::err_text};

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

/// A failed Kinesis call: its class and the service's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// What the failure means to the caller.
    pub kind: ErrorKind,
    /// Code and message, as one line for logs.
    pub message: String,
}

impl CallError {
    /// Classifies an SDK error.
    pub fn from_sdk<E, R>(err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: Debug,
    {
        Self {
            kind: classify(err),
            message: err_text(err),
        }
    }

    /// A failure with no AWS error behind it (a call that did not answer in time).
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }
}

/// Why ingest of a stream stopped, or could not start. Each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A control-plane call named a stream that does not exist.
    #[error("{what}: {cause}; check the stream name and the region")]
    NotFound {
        /// The call.
        what: &'static str,
        /// What Kinesis said.
        cause: CallError,
    },
    /// A control-plane call kept failing past the consumer deadline.
    #[error("{what}: still failing after {after:?}: {cause}")]
    StillFailing {
        /// The call.
        what: &'static str,
        /// How long it was retried.
        after: Duration,
        /// The last failure.
        cause: CallError,
    },
    /// Shutdown came before a control-plane call succeeded.
    #[error("{what}: interrupted by shutdown")]
    Interrupted {
        /// The call.
        what: &'static str,
    },
    /// The enhanced fan-out consumer did not become ACTIVE in time.
    #[error(
        "consumer {name:?} of {stream_arn} did not become ACTIVE within {deadline:?}; check that the stream exists and has fewer than 20 consumers (aws kinesis list-stream-consumers)"
    )]
    ConsumerNotActive {
        /// The consumer name.
        name: String,
        /// The stream.
        stream_arn: String,
        /// `--consumer-deadline`.
        deadline: Duration,
    },
    /// Registering the consumer found no stream.
    #[error("stream {stream_arn} does not exist: {cause}")]
    NoStream {
        /// The stream.
        stream_arn: String,
        /// What Kinesis said.
        cause: CallError,
    },
    /// DescribeStreamConsumer answered without a description.
    #[error("DescribeStreamConsumer returned no description")]
    NoConsumerDescription,
    /// Deregistering the consumer at exit failed.
    #[error("deregistering {arn}: {cause}")]
    Deregister {
        /// The consumer ARN.
        arn: String,
        /// What Kinesis said.
        cause: CallError,
    },
    /// The positions could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// `--upstream-relay` cannot be used as given.
    #[error("--upstream-relay {url:?}: {cause}")]
    UpstreamConfig {
        /// The URL given.
        url: String,
        /// What is wrong with it or its TLS material.
        cause: String,
    },
    /// `--upstream-ca-cert` cannot be read.
    #[error("reading {}: {source}", path.display())]
    UpstreamCa {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The upstream relay refused to list its streams.
    #[error("listing the streams of {url}: {message}")]
    UpstreamListing {
        /// The upstream relay.
        url: String,
        /// Its status message.
        message: String,
    },
    /// Another error of a stream, named.
    #[error("stream {stream:?}: {source}")]
    Stream {
        /// The stream.
        stream: String,
        /// What failed.
        source: Box<IngestError>,
    },
}

impl IngestError {
    /// The same error, saying which stream it is about.
    pub fn of_stream(self, stream: &str) -> Self {
        Self::Stream {
            stream: stream.to_owned(),
            source: Box::new(self),
        }
    }
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

    /// The retry rule of control-plane calls: everything but a missing stream or consumer
    /// is worth another attempt (with backoff, within the consumer deadline).
    pub fn is_retriable(self) -> bool {
        self != Self::NotFound
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

/// Retries an AWS call with backoff until it succeeds, fails for good
/// ([`ErrorKind::is_retriable`]), the consumer deadline passes, or shutdown.
pub(super) async fn retry<T, F, Fut>(
    settings: &IngestSettings,
    shutdown: &mut watch::Receiver<bool>,
    what: &'static str,
    mut call: F,
) -> Result<T, IngestError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let deadline = tokio::time::Instant::now() + settings.consumer_deadline;
    let mut backoff = Backoff::new(settings.backoff_base, settings.backoff_cap);
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(cause) if !cause.kind.is_retriable() => {
                return Err(IngestError::NotFound { what, cause });
            }
            Err(cause) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(IngestError::StillFailing {
                        what,
                        after: settings.consumer_deadline,
                        cause,
                    });
                }
                let delay = backoff.next_delay();
                warn!(what, kind = cause.kind.label(), cause = %cause, ?delay, "retrying");
                tokio::select! {
                    _ = sleep(delay) => {}
                    _ = crate::stopped(shutdown) => return Err(IngestError::Interrupted { what }),
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

    #[tokio::test]
    async fn retries_until_the_deadline_but_never_a_missing_stream() {
        let settings = IngestSettings {
            consumer_deadline: Duration::from_millis(50),
            backoff_base: Duration::from_millis(1),
            backoff_cap: Duration::from_millis(5),
            ..IngestSettings::default()
        };
        let (_stop, mut shutdown) = watch::channel(false);
        let mut calls = 0;
        let gone = retry(&settings, &mut shutdown, "describing the stream", || {
            calls += 1;
            async {
                Err::<(), _>(CallError {
                    kind: ErrorKind::NotFound,
                    message: "ResourceNotFoundException: no such stream".into(),
                })
            }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(
            gone.to_string()
                .ends_with("check the stream name and the region"),
            "{gone}"
        );
        let mut calls = 0;
        let throttled = retry(&settings, &mut shutdown, "listing shards", || {
            calls += 1;
            async { Err::<(), _>(CallError::transient("slow down")) }
        })
        .await
        .unwrap_err();
        assert!(calls > 1, "{calls}");
        assert!(
            matches!(throttled, IngestError::StillFailing { .. }),
            "{throttled}"
        );
    }
}
