//! What can go wrong, by class. Each message says what happened and what to do; each class
//! has its own exit code.

use tonic::{Code, Status};

use crate::exit_code::ExitCode;

/// A failure the user can act on. Cloned into the failure a resuming subscription gives
/// up with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The relay did not answer (connection refused, DNS, TLS handshake, timeout) or said it
    /// was unavailable for too long.
    #[error(
        "cannot reach the relay at {relay}: {cause}; check that it is running and that --relay (KINESIS_RELAY_URL) is right"
    )]
    Unreachable {
        /// The relay URL tried.
        relay: String,
        /// What the transport said.
        cause: String,
    },
    /// Unknown stream or shard.
    #[error(
        "not found: {message}; `kinesis-relay-client streams` and `describe` list what the relay serves"
    )]
    NotFound {
        /// The relay's message.
        message: String,
    },
    /// Malformed request or cursor.
    #[error("the relay refused the request: {message}")]
    InvalidArgument {
        /// The relay's message (it names the field at fault).
        message: String,
    },
    /// Credentials refused.
    #[error(
        "permission denied: {message}; check --token (KINESIS_RELAY_TOKEN) and --client-cert/--client-key"
    )]
    PermissionDenied {
        /// The relay's message.
        message: String,
    },
    /// The position asked for is older than the relay's buffer.
    #[error("position out of range: {message}")]
    OutOfRange {
        /// The relay's message (it carries the oldest cursor available).
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{what} {path}: {cause}; check the path and its permissions")]
    LocalFile {
        /// What the file is for ("checkpoint", "archive directory", ...).
        what: &'static str,
        /// Its path.
        path: String,
        /// The I/O error, with what to do when known.
        cause: String,
    },
    /// The archive's object store cannot be used: no such bucket, unreachable, or the
    /// archive is locked by another archiver.
    #[error("archive destination {destination}: {cause}")]
    Destination {
        /// The URL given to `--to`.
        destination: String,
        /// What went wrong, with what to do when known.
        cause: String,
    },
    /// The archive's object store refused the credentials, or there are none.
    #[error("archive destination {destination}: {cause}")]
    DestinationDenied {
        /// The URL given to `--to`.
        destination: String,
        /// What went wrong, with what to do.
        cause: String,
    },
    /// The command line is inconsistent in a way clap cannot see.
    #[error("{0}")]
    Usage(String),
    /// Any other status from the relay.
    #[error("the relay answered {code:?}: {message}")]
    Other {
        /// The gRPC code.
        code: Code,
        /// The relay's message.
        message: String,
    },
}

impl Failure {
    /// The exit code of this class.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Unreachable { .. } => ExitCode::Unreachable,
            Self::NotFound { .. } => ExitCode::NotFound,
            Self::InvalidArgument { .. } => ExitCode::InvalidArgument,
            Self::PermissionDenied { .. } => ExitCode::PermissionDenied,
            Self::OutOfRange { .. } => ExitCode::OutOfRange,
            Self::LocalFile { .. } | Self::Destination { .. } => ExitCode::LocalFile,
            Self::DestinationDenied { .. } => ExitCode::PermissionDenied,
            Self::Usage(_) => ExitCode::Usage,
            Self::Other { .. } => ExitCode::Failure,
        }
    }

    /// Classifies a status returned by the relay at `relay`.
    pub fn from_status(status: &Status, relay: &str) -> Self {
        let message = one_line(status.message());
        match status.code() {
            Code::Unavailable => Self::Unreachable {
                relay: relay.to_owned(),
                cause: if message.is_empty() {
                    "unavailable".to_owned()
                } else {
                    message
                },
            },
            Code::NotFound => Self::NotFound { message },
            Code::InvalidArgument => Self::InvalidArgument { message },
            Code::PermissionDenied | Code::Unauthenticated => Self::PermissionDenied { message },
            Code::OutOfRange => Self::OutOfRange { message },
            code => Self::Other { code, message },
        }
    }

    /// A local file failure.
    pub fn local(what: &'static str, path: &std::path::Path, err: &std::io::Error) -> Self {
        Self::LocalFile {
            what,
            path: path.display().to_string(),
            cause: err.to_string(),
        }
    }
}

/// Whether a subscription that ended with `status` should be resumed (after a backoff)
/// rather than reported: the resuming subscriber's rule, so that every client of the
/// project resumes on the same statuses.
pub fn is_retryable(status: &Status) -> bool {
    kinesis_relay_api::subscriber::is_transient(status)
}

/// Messages are quoted into a single stderr line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        let cases = [
            (Code::Unavailable, ExitCode::Unreachable),
            (Code::NotFound, ExitCode::NotFound),
            (Code::InvalidArgument, ExitCode::InvalidArgument),
            (Code::PermissionDenied, ExitCode::PermissionDenied),
            (Code::Unauthenticated, ExitCode::PermissionDenied),
            (Code::OutOfRange, ExitCode::OutOfRange),
            (Code::Internal, ExitCode::Failure),
        ];
        for (code, exit) in cases {
            let failure = Failure::from_status(&Status::new(code, "why\nmore"), "http://x");
            assert_eq!(failure.exit_code(), exit, "{code:?}");
            assert!(!failure.to_string().contains('\n'));
        }
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        assert!(is_retryable(&Status::unavailable("shutting down")));
        assert!(is_retryable(&Status::resource_exhausted("too slow")));
        assert!(!is_retryable(&Status::not_found("x")));
        assert!(!is_retryable(&Status::invalid_argument("x")));
        assert!(!is_retryable(&Status::out_of_range("x")));
        assert!(!is_retryable(&Status::permission_denied("x")));
    }
}
