//! Reloading files without a restart: on SIGHUP, and when a file's modification time or
//! length changes (checked every two seconds).

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use tokio::sync::watch;
use tracing::{error, info};

/// What identifies a version of a file.
fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// Calls `reload` when any of `paths` changes or SIGHUP arrives, until shutdown.
pub async fn reload_on_change(
    what: &'static str,
    paths: Vec<PathBuf>,
    mut reload: impl FnMut() -> anyhow::Result<()> + Send + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    {
        let mut stamps: Vec<_> = paths.iter().map(stamp).collect();
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<()>();
            let forced = tokio::select! {
                _ = tick.tick() => false,
                _ = hup => true,
                _ = crate::stopped(&mut shutdown) => return,
            };
            let now: Vec<_> = paths.iter().map(stamp).collect();
            if forced || now != stamps {
                stamps = now;
                match reload() {
                    Ok(()) => info!(what, "reloaded"),
                    Err(err) => {
                        error!(what, cause = %format!("{err:#}"), "reload failed; keeping the previous version")
                    }
                }
            }
        }
    }
}
