//! Ctrl-C and SIGTERM: both stop a command cleanly (checkpoint written, file completed).

/// Listens for the signals that ask the program to stop. Created once at start, so that a
/// signal arriving at any time afterwards is seen.
#[derive(Debug)]
pub struct Signals {
    /// SIGINT (Ctrl-C).
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    /// SIGTERM (kill, service managers).
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves when a stop signal arrives.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
