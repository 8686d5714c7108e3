//! External tools and servers a test talks to (grpcurl, kinesis-local, moto, ...).
//! `scripts/test` installs and starts them; a developer running one test binary may not
//! have. Locally such a test skips with a message; under CI it fails, so that a missing peer
//! can never turn a suite green by skipping.

/// Whether this run is under CI (`CI` set, as CI services and `.ci/run` do, and not
/// `false` or `0`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.as_str(), "" | "false" | "0"))
}

/// Whether a test that needs `name` may run: true when `available`; otherwise it panics
/// under CI and, locally, prints that the test skips and returns false.
pub fn require_tool(name: &str, available: bool) -> bool {
    if available {
        return true;
    }
    assert!(
        !in_ci(),
        "{name} is required in CI (scripts/test and .ci/run provide it)"
    );
    eprintln!("skipping: {name} is not available (scripts/test provides it)");
    false
}

/// The URL of a peer server from the environment variable `var` (for example
/// `KINESIS_LOCAL_URL`), or `None` when the test must skip (see [`require_tool`]).
pub fn peer_url(var: &str) -> Option<String> {
    let url = std::env::var(var).ok().filter(|url| !url.is_empty());
    require_tool(&format!("a server at ${var}"), url.is_some())
        .then_some(url)
        .flatten()
}
