//! The AWS error types the emulator answers with, and the errors of starting it.

use http::StatusCode;

/// An error as Kinesis reports it: an AWS error type (the `__type` of the JSON body, the
/// `:exception-type` of an event-stream frame) and a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KinesisError {
    /// The stream, shard or consumer named in the request does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// The resource exists but is in a state that forbids the call (e.g. a second
    /// subscription within the takeover window, a consumer that is not ACTIVE yet).
    #[error("{0}")]
    ResourceInUse(String),
    /// A parameter has a value the operation cannot use.
    #[error("{0}")]
    InvalidArgument(String),
    /// An account or stream limit is reached (e.g. 20 consumers per stream).
    #[error("{0}")]
    LimitExceeded(String),
    /// A shard's write throughput limit is exceeded.
    #[error("{0}")]
    ProvisionedThroughputExceeded(String),
    /// A shard iterator is older than five minutes.
    #[error("{0}")]
    ExpiredIterator(String),
    /// A request field breaks a modelled constraint (length, count, size).
    #[error("{0}")]
    Validation(String),
    /// The request body is not valid JSON or not of the expected shape.
    #[error("{0}")]
    Serialization(String),
    /// The `X-Amz-Target` names no operation the emulator implements.
    #[error("{0}")]
    UnknownOperation(String),
    /// A server-side failure (HTTP 500); only produced by fault injection or bugs.
    #[error("{0}")]
    InternalFailure(String),
    /// An error type chosen by fault injection that has no variant of its own.
    #[error("{message}")]
    Injected {
        /// The AWS error type reported in `__type`.
        error_type: String,
        /// The human-readable message.
        message: String,
    },
}

impl KinesisError {
    /// Builds the error for an AWS error type name, as fault injection asks for it.
    pub fn from_type(error_type: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        match error_type {
            "ResourceNotFoundException" => Self::ResourceNotFound(message),
            "ResourceInUseException" => Self::ResourceInUse(message),
            "InvalidArgumentException" => Self::InvalidArgument(message),
            "LimitExceededException" => Self::LimitExceeded(message),
            "ProvisionedThroughputExceededException" => {
                Self::ProvisionedThroughputExceeded(message)
            }
            "ExpiredIteratorException" => Self::ExpiredIterator(message),
            "ValidationException" => Self::Validation(message),
            "SerializationException" => Self::Serialization(message),
            "InternalFailure" | "InternalFailureException" => Self::InternalFailure(message),
            other => Self::Injected {
                error_type: other.to_owned(),
                message,
            },
        }
    }

    /// The AWS error type, as written in `__type` and `:exception-type`.
    pub fn error_type(&self) -> &str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::ResourceInUse(_) => "ResourceInUseException",
            Self::InvalidArgument(_) => "InvalidArgumentException",
            Self::LimitExceeded(_) => "LimitExceededException",
            Self::ProvisionedThroughputExceeded(_) => "ProvisionedThroughputExceededException",
            Self::ExpiredIterator(_) => "ExpiredIteratorException",
            Self::Validation(_) => "ValidationException",
            Self::Serialization(_) => "SerializationException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::InternalFailure(_) => "InternalFailure",
            Self::Injected { error_type, .. } => error_type,
        }
    }

    /// The HTTP status AWS uses for this error type: 500 for server faults, 503 for
    /// unavailability, 400 for everything the client caused.
    pub fn status(&self) -> StatusCode {
        match self.error_type() {
            "InternalFailure" | "InternalFailureException" | "InternalServerError" => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            "ServiceUnavailable" | "ServiceUnavailableException" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON body of the error, `{"__type": ..., "message": ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "__type": self.error_type(), "message": self.to_string() })
    }
}

/// Why the emulator could not start, or why a handle call was refused.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// Generating the self-signed certificate or the TLS configuration failed.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// A stream given to the builder or the handle could not be created or changed.
    #[error(transparent)]
    Kinesis(#[from] KinesisError),
}
