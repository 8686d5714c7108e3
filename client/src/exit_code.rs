//! Exit codes: one per class of failure, so scripts can tell them apart.

use crate::error::Failure;

/// How the program ended. The numbers are part of the CLI's interface (documented in
/// `--help` and the README): never renumber them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Finished as asked (`--count`, `--duration`, a closed output pipe, a listing).
    Success,
    /// Any failure not in a class below.
    Failure,
    /// Bad command-line usage (clap uses 2 for its own errors too).
    Usage,
    /// The relay could not be reached, or was unavailable for longer than `--retry-timeout`.
    Unreachable,
    /// The relay does not serve the stream or shard named.
    NotFound,
    /// The relay refused the request or the cursor as malformed.
    InvalidArgument,
    /// The relay refused the credentials (token or client certificate), or the archive's
    /// object store refused its credentials or found none.
    PermissionDenied,
    /// The requested position is older than what the relay still holds.
    OutOfRange,
    /// A local file (checkpoint, archive directory, certificate) or the archive's object
    /// store (no such bucket, locked by another archiver) could not be used.
    LocalFile,
    /// Stopped by Ctrl-C or SIGTERM (after writing the checkpoint).
    Interrupted,
}

impl ExitCode {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::Unreachable => 3,
            Self::NotFound => 4,
            Self::InvalidArgument => 5,
            Self::PermissionDenied => 6,
            Self::OutOfRange => 7,
            Self::LocalFile => 8,
            Self::Interrupted => 130,
        }
    }

    /// The exit code for an error returned by [`crate::run`]: the class of the first
    /// [`Failure`] in its chain, else [`ExitCode::Failure`].
    pub fn of_error(err: &anyhow::Error) -> Self {
        err.chain()
            .find_map(|cause| cause.downcast_ref::<Failure>())
            .map_or(Self::Failure, Failure::exit_code)
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

/// The exit-code table shown at the end of `--help`.
pub const HELP: &str = "\
Exit codes:
  0    finished as asked (--count, --duration, output pipe closed)
  1    any other failure
  2    bad command-line usage
  3    relay unreachable or unavailable for longer than --retry-timeout
  4    stream or shard not served by the relay
  5    request or cursor refused as invalid
  6    permission denied (token or client certificate refused; archive store credentials)
  7    position older than what the relay still holds
  8    local file or archive destination unusable (checkpoint, archive directory or
       bucket, certificates, archive locked by another archiver)
  130  stopped by Ctrl-C or SIGTERM (checkpoint written)";

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ExitCode; 10] = [
        ExitCode::Success,
        ExitCode::Failure,
        ExitCode::Usage,
        ExitCode::Unreachable,
        ExitCode::NotFound,
        ExitCode::InvalidArgument,
        ExitCode::PermissionDenied,
        ExitCode::OutOfRange,
        ExitCode::LocalFile,
        ExitCode::Interrupted,
    ];

    #[test]
    fn codes_are_distinct_and_stable() {
        let codes: Vec<u8> = ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 130]);
    }

    #[test]
    fn every_code_is_documented_in_help() {
        for code in ALL {
            let line = format!("\n  {:<4} ", code.code());
            assert!(
                HELP.contains(&line),
                "code {} missing from help",
                code.code()
            );
        }
    }

    #[test]
    fn errors_map_through_their_context() {
        let err = anyhow::Error::new(Failure::NotFound {
            message: "no such stream".into(),
        })
        .context("subscribing");
        assert_eq!(ExitCode::of_error(&err), ExitCode::NotFound);
        assert_eq!(
            ExitCode::of_error(&anyhow::anyhow!("boom")),
            ExitCode::Failure
        );
    }
}
