//! `subscribe`: print records as they arrive until `--count`, `--duration`, a signal or a
//! closed output, keeping the checkpoint.

use std::{io, time::Duration};

use tokio::{
    io::AsyncWriteExt,
    time::{Instant, sleep_until},
};

use crate::{
    checkpoint::Checkpoint,
    cli::{StartFrom, SubscribeArgs},
    connect::Connector,
    error::Failure,
    exit_code::ExitCode,
    notice,
    output::write_record,
    resume::{Delivery, Resuming, cursor_after},
    shutdown::Signals,
};

/// How long a write to stdout may still take after Ctrl-C before it is abandoned.
const WRITE_GRACE: Duration = Duration::from_secs(1);

/// Runs `subscribe`.
pub async fn run(
    connector: Connector,
    args: SubscribeArgs,
    mut signals: Signals,
) -> anyhow::Result<ExitCode> {
    let mut checkpoint = args
        .checkpoint
        .clone()
        .map(|path| Checkpoint::new(path, args.checkpoint_interval));
    let (start, origin) = match checkpoint.as_mut().map(Checkpoint::load).transpose()? {
        Some(Some(cursor)) => {
            let path = args
                .checkpoint
                .as_deref()
                .unwrap_or(std::path::Path::new(""));
            tracing::info!(checkpoint = %path.display(), "resuming from the checkpoint");
            (
                StartFrom::Cursor(cursor),
                Some(format!("checkpoint {}", path.display())),
            )
        }
        _ => {
            let origin = matches!(args.from, StartFrom::Cursor(_)).then(|| "--from".to_owned());
            (args.from.clone(), origin)
        }
    };
    // The cursor that covers exactly what was written out: what the checkpoint stores.
    let mut written = match &start {
        StartFrom::Cursor(cursor) => Some(cursor.clone()),
        _ => None,
    };
    let mut subscription = Resuming::new(connector, &args.selection, start, origin);
    let mut stdout = tokio::io::stdout();
    let deadline = args.duration.map(|duration| Instant::now() + duration);
    let mut printed: u64 = 0;
    let mut buffer = Vec::new();
    let outcome: anyhow::Result<ExitCode> = loop {
        if args.count.is_some_and(|count| printed >= count) {
            break Ok(ExitCode::Success);
        }
        let delivery = tokio::select! {
            delivery = subscription.next() => delivery,
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                break Ok(ExitCode::Success);
            }
            _ = signals.recv() => break Ok(ExitCode::Interrupted),
        };
        let (shard_id, records, cursor) = match delivery {
            Err(err) => break Err(err),
            Ok(Delivery::Progress { cursor }) => {
                written = Some(cursor);
                if let Err(err) = save(&mut checkpoint, &written, false) {
                    break Err(err.into());
                }
                continue;
            }
            Ok(Delivery::Records {
                shard_id,
                records,
                cursor,
            }) => (shard_id, records, cursor),
        };
        let left = args
            .count
            .map_or(records.len(), |count| (count - printed) as usize);
        let used = &records[..records.len().min(left)];
        buffer.clear();
        for record in used {
            // Writing into a Vec cannot fail.
            let _ = write_record(
                &mut buffer,
                args.format,
                subscription.stream_name(),
                &shard_id,
                record,
            );
        }
        // Waiting on a stalled reader of stdout must not make the process deaf to Ctrl-C; a
        // signal during a write that completes within the grace period still counts the
        // write (its records are out, the checkpoint must cover them).
        let write = async {
            stdout.write_all(&buffer).await?;
            stdout.flush().await
        };
        tokio::pin!(write);
        let mut interrupted = false;
        let wrote = tokio::select! {
            biased;
            wrote = &mut write => wrote,
            _ = signals.recv() => match tokio::time::timeout(WRITE_GRACE, &mut write).await {
                Ok(wrote) => {
                    interrupted = true;
                    wrote
                }
                Err(_) => break Ok(ExitCode::Interrupted),
            },
        };
        match wrote {
            Ok(()) => {}
            // `| head` closed the pipe: the reader has what it wanted.
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => break Ok(ExitCode::Success),
            Err(err) => {
                break Err(Failure::LocalFile {
                    what: "standard output",
                    path: "-".into(),
                    cause: err.to_string(),
                }
                .into());
            }
        }
        printed += used.len() as u64;
        written = Some(match used.last() {
            Some(last) if used.len() < records.len() => cursor_after(&cursor, &shard_id, last)?,
            _ => cursor,
        });
        if interrupted {
            break Ok(ExitCode::Interrupted);
        }
        if let Err(err) = save(&mut checkpoint, &written, false) {
            break Err(err.into());
        }
    };
    // Whatever ended the run, what was written is covered by the checkpoint.
    if let Err(err) = save(&mut checkpoint, &written, true) {
        match &outcome {
            Ok(_) => return Err(err.into()),
            Err(_) => notice!("{err}"),
        }
    }
    outcome
}

/// Stores `cursor` in the checkpoint, if there is one: now when `force`, else when the
/// interval has passed.
fn save(
    checkpoint: &mut Option<Checkpoint>,
    cursor: &Option<String>,
    force: bool,
) -> Result<(), Failure> {
    match (checkpoint.as_mut(), cursor) {
        (Some(checkpoint), Some(cursor)) if force => checkpoint.store(cursor),
        (Some(checkpoint), Some(cursor)) => checkpoint.maybe_store(cursor),
        _ => Ok(()),
    }
}
