//! The process exit codes, one per outcome a script may want to tell apart.

/// How a run ended. The numeric values are part of the command-line interface (they are
/// listed in `--help`): never renumber a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// Every record read was acknowledged by Kinesis.
    Success,
    /// An unexpected error (I/O, a bug, an AWS error without its own code).
    Failure,
    /// The command line is invalid (clap's own code).
    Usage,
    /// Some records could not be written after all retries (see `--failed-output`).
    RecordsFailed,
    /// Some records were refused before sending (over 1 MiB, bad partition key, ...).
    RecordsRejected,
    /// The stream does not exist in this account and region.
    StreamNotFound,
    /// No AWS credentials were found, or Kinesis refused them.
    NoCredentials,
    /// No region configured, or the endpoint cannot be reached (wrong region or URL).
    EndpointUnreachable,
    /// The credentials are valid but lack a permission (kinesis:PutRecords, ListShards).
    AccessDenied,
    /// Interrupted by Ctrl-C: the input was not read to its end.
    Interrupted,
}

impl ExitCode {
    /// Every variant, for the help text and tests.
    pub const ALL: [ExitCode; 10] = [
        ExitCode::Success,
        ExitCode::Failure,
        ExitCode::Usage,
        ExitCode::RecordsFailed,
        ExitCode::RecordsRejected,
        ExitCode::StreamNotFound,
        ExitCode::NoCredentials,
        ExitCode::EndpointUnreachable,
        ExitCode::AccessDenied,
        ExitCode::Interrupted,
    ];

    /// The number the process exits with.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Failure => 1,
            ExitCode::Usage => 2,
            ExitCode::RecordsFailed => 3,
            ExitCode::RecordsRejected => 4,
            ExitCode::StreamNotFound => 10,
            ExitCode::NoCredentials => 11,
            ExitCode::EndpointUnreachable => 12,
            ExitCode::AccessDenied => 13,
            ExitCode::Interrupted => 130,
        }
    }

    /// Whether the run did what it was asked.
    pub fn is_success(self) -> bool {
        self == ExitCode::Success
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

/// The exit code table as printed at the end of `--help`.
pub const HELP: &str = "\
Exit codes:
  0    every record was acknowledged by Kinesis
  1    unexpected error
  2    invalid command line
  3    some records failed after all retries (see --failed-output)
  4    some records were rejected before sending (over 1 MiB, bad key)
  10   stream not found
  11   no AWS credentials, or credentials refused
  12   no region, or endpoint unreachable (wrong region or --endpoint-url)
  13   access denied (missing IAM permission)
  130  interrupted by Ctrl-C (buffered records were still flushed)";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_distinct_and_stable() {
        let codes: HashSet<u8> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), ExitCode::ALL.len());
        assert_eq!(ExitCode::Success.code(), 0);
        assert_eq!(ExitCode::StreamNotFound.code(), 10);
        assert_eq!(ExitCode::NoCredentials.code(), 11);
        assert_eq!(ExitCode::EndpointUnreachable.code(), 12);
    }

    #[test]
    fn help_lists_every_code() {
        for code in ExitCode::ALL {
            let line = format!("\n  {:<4} ", code.code());
            assert!(HELP.contains(&line), "{code:?} missing from help");
        }
    }

    #[test]
    fn only_success_is_success() {
        assert!(ExitCode::Success.is_success());
        assert!(!ExitCode::RecordsFailed.is_success());
    }
}
