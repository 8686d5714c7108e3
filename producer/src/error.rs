//! The errors that end a run, and how AWS SDK errors map onto them.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

use crate::exit_code::ExitCode;

/// An error that stops the producer as a whole (as opposed to one record failing).
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The stream does not exist where we looked.
    #[error("stream '{stream}' not found in region {region} (check --stream and --region)")]
    StreamNotFound {
        /// The stream name given.
        stream: String,
        /// The region the client used.
        region: String,
    },
    /// The credential chain found nothing, or Kinesis refused what it found.
    #[error("no usable AWS credentials: {0}")]
    NoCredentials(String),
    /// No region anywhere in flags, environment or profile.
    #[error("no AWS region configured: pass --region or set AWS_REGION")]
    NoRegion,
    /// The endpoint did not answer (DNS, connection refused, timeout).
    #[error("cannot reach the Kinesis endpoint (wrong --region or --endpoint-url?): {0}")]
    EndpointUnreachable(String),
    /// The identity lacks a permission.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// Any other AWS error that is not worth retrying.
    #[error("{operation} failed: {message}")]
    Aws {
        /// The Kinesis operation.
        operation: &'static str,
        /// The error code and message.
        message: String,
    },
}

impl ProducerError {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ProducerError::StreamNotFound { .. } => ExitCode::StreamNotFound,
            ProducerError::NoCredentials(_) => ExitCode::NoCredentials,
            ProducerError::NoRegion | ProducerError::EndpointUnreachable(_) => {
                ExitCode::EndpointUnreachable
            }
            ProducerError::AccessDenied(_) => ExitCode::AccessDenied,
            ProducerError::Aws { .. } => ExitCode::Failure,
        }
    }
}

/// What to do after a whole request failed.
#[derive(Debug)]
pub enum RequestFailure {
    /// Transient (throttling, 5xx, timeout): retry every entry later. The string is the
    /// error code recorded for the entries should they finally fail.
    Retry {
        /// The error code.
        code: String,
        /// Whether it was throttling (counted apart).
        throttled: bool,
    },
    /// The request itself is wrong for these entries: fail them, go on with the rest.
    FailEntries {
        /// The error code.
        code: String,
        /// The message.
        message: String,
    },
    /// Nothing else can succeed either: stop the run.
    Fatal(ProducerError),
}

/// Error codes worth retrying, request-level or per entry.
pub fn is_retriable_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "InternalFailure"
            | "InternalFailureException"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "KMSThrottlingException"
            | "ThrottlingException"
            | "RequestTimeout"
            | "RequestTimeoutException"
    )
}

/// Error codes that mean throttling.
pub fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "KMSThrottlingException"
            | "ThrottlingException"
    )
}

const CREDENTIAL_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidClientTokenId",
];

/// Classifies a failed SDK call of `operation` on `stream` in `region`.
pub fn classify<E>(
    err: &SdkError<E, HttpResponse>,
    operation: &'static str,
    stream: &str,
    region: &str,
) -> RequestFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if has_credentials_error(err) {
        return RequestFailure::Fatal(ProducerError::NoCredentials(chain(err)));
    }
    match err {
        SdkError::DispatchFailure(failure) => {
            if failure.is_io() || failure.is_timeout() {
                return RequestFailure::Retry {
                    code: "DispatchFailure".into(),
                    throttled: false,
                };
            }
            RequestFailure::Fatal(ProducerError::EndpointUnreachable(chain(err)))
        }
        SdkError::TimeoutError(_) => RequestFailure::Retry {
            code: "Timeout".into(),
            throttled: false,
        },
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown").to_owned();
            let message = service.err().message().unwrap_or("").to_owned();
            let status = Some(service.raw().status().as_u16());
            classify_code(&code, &message, status, operation, stream, region)
        }
        SdkError::ResponseError(_) => RequestFailure::Retry {
            code: "ResponseError".into(),
            throttled: false,
        },
        _ => RequestFailure::Fatal(ProducerError::Aws {
            operation,
            message: chain(err),
        }),
    }
}

/// Classifies a service error code (shared by request-level errors and tests).
pub fn classify_code(
    code: &str,
    message: &str,
    status: Option<u16>,
    operation: &'static str,
    stream: &str,
    region: &str,
) -> RequestFailure {
    if code == "ResourceNotFoundException" {
        return RequestFailure::Fatal(ProducerError::StreamNotFound {
            stream: stream.to_owned(),
            region: region.to_owned(),
        });
    }
    if CREDENTIAL_CODES.contains(&code) {
        return RequestFailure::Fatal(ProducerError::NoCredentials(format!("{code}: {message}")));
    }
    if code == "AccessDeniedException" {
        return RequestFailure::Fatal(ProducerError::AccessDenied(format!("{code}: {message}")));
    }
    if is_retriable_code(code) || status.is_some_and(|s| s >= 500) {
        return RequestFailure::Retry {
            code: code.to_owned(),
            throttled: is_throttling_code(code),
        };
    }
    if operation == "PutRecords" {
        return RequestFailure::FailEntries {
            code: code.to_owned(),
            message: message.to_owned(),
        };
    }
    RequestFailure::Fatal(ProducerError::Aws {
        operation,
        message: format!("{code}: {message}"),
    })
}

fn has_credentials_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        current = e.source();
    }
    false
}

/// The error and its causes on one line.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut current = err.source();
    while let Some(e) = current {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fatal_code(failure: RequestFailure) -> ExitCode {
        match failure {
            RequestFailure::Fatal(err) => err.exit_code(),
            other => panic!("expected fatal, got {other:?}"),
        }
    }

    #[test]
    fn stream_not_found_is_fatal_with_its_code() {
        let failure = classify_code(
            "ResourceNotFoundException",
            "",
            None,
            "ListShards",
            "s",
            "r",
        );
        assert_eq!(fatal_code(failure), ExitCode::StreamNotFound);
    }

    #[test]
    fn refused_credentials_are_fatal() {
        let failure = classify_code(
            "UnrecognizedClientException",
            "bad",
            Some(400),
            "PutRecords",
            "s",
            "r",
        );
        assert_eq!(fatal_code(failure), ExitCode::NoCredentials);
        let failure = classify_code(
            "AccessDeniedException",
            "no",
            Some(400),
            "PutRecords",
            "s",
            "r",
        );
        assert_eq!(fatal_code(failure), ExitCode::AccessDenied);
    }

    #[test]
    fn throttling_and_5xx_are_retried() {
        let failure = classify_code(
            "ProvisionedThroughputExceededException",
            "",
            Some(400),
            "PutRecords",
            "s",
            "r",
        );
        assert!(matches!(
            failure,
            RequestFailure::Retry {
                throttled: true,
                ..
            }
        ));
        let failure = classify_code("Weird", "", Some(503), "PutRecords", "s", "r");
        assert!(matches!(
            failure,
            RequestFailure::Retry {
                throttled: false,
                ..
            }
        ));
    }

    #[test]
    fn validation_errors_fail_the_entries_only() {
        let failure = classify_code(
            "ValidationException",
            "bad key",
            Some(400),
            "PutRecords",
            "s",
            "r",
        );
        assert!(matches!(failure, RequestFailure::FailEntries { .. }));
    }
}
