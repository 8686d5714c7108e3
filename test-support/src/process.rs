//! The binaries under test as child processes, every wait on them bounded by [`DEADLINE`].

use std::{
    io::Write,
    process::{Output, Stdio},
    time::Instant,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

use crate::DEADLINE;

/// What a finished run produced.
#[derive(Debug)]
pub struct Run {
    /// The exit code, -1 when a signal ended it.
    pub code: i32,
    /// Standard output, as bytes: some commands write binary data.
    pub stdout: Vec<u8>,
    /// Standard error, as text for assertion messages.
    pub stderr: String,
}

impl Run {
    /// Standard output's lines.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `command` to completion within [`DEADLINE`], its output captured.
pub async fn run(mut command: Command) -> Run {
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("the command finishes in time")
        .expect("the command runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The lines of a running child's standard output (which must be piped).
pub fn lines(child: &mut Child) -> Lines<BufReader<ChildStdout>> {
    BufReader::new(child.stdout.take().expect("stdout piped")).lines()
}

/// Reads `n` lines within [`DEADLINE`], or panics saying how many came and what ended them.
pub async fn read_lines(lines: &mut Lines<BufReader<ChildStdout>>, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let start = Instant::now();
    while out.len() < n {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, lines.next_line()).await {
            Ok(Ok(Some(line))) => out.push(line),
            other => panic!("got {} of {n} lines, then {other:?}", out.len()),
        }
    }
    out
}

/// Waits within [`DEADLINE`] for a child to exit; its exit code (-1 for a signal) and its
/// standard error when piped.
pub async fn finish(mut child: Child) -> (i32, String) {
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the child exits in time")
        .expect("wait for the child");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        // A read error leaves what was read: the exit code is what the caller asserts on.
        let _ = pipe.read_to_string(&mut stderr).await;
    }
    (status.code().unwrap_or(-1), stderr)
}

/// Sends signal `name` (`TERM`, `INT`, `STOP`, ...) to a running child with the `kill`
/// command, which keeps tests free of unsafe code.
pub async fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("child running");
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .await
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Runs `command` to completion (blocking), feeding it `input` on standard input from a
/// thread so that a child filling its output pipe cannot deadlock against the writer.
pub fn run_with_input(mut command: std::process::Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let mut stdin = child.stdin.take().expect("stdin piped");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        // A child that exits before reading all of it closes the pipe: its exit status
        // says why, so the write error is not the test's concern.
        let _ = stdin.write_all(&data);
    });
    let output = child.wait_with_output().expect("wait for the command");
    writer.join().expect("stdin writer");
    output
}
