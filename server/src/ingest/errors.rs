//! Which AWS errors mean what to a shard reader.

use aws_sdk_kinesis::error::ProvideErrorMetadata;

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
