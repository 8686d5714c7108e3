//! `streams` and `describe`: what the relay serves, as a table or as JSON lines.

use std::io::{self, Write};

use kinesis_relay_api::v1;
use serde_json::{Value, json};

use crate::{
    cli::{DescribeArgs, ListArgs},
    connect::{Client, Connector},
    error::Failure,
    exit_code::ExitCode,
    output::rfc3339,
};

/// Runs `streams`.
pub async fn streams(connector: Connector, args: ListArgs) -> anyhow::Result<ExitCode> {
    let mut client = connector.connect().await?;
    let streams = list(&connector, &mut client).await?;
    let mut out = Vec::new();
    if args.json {
        for stream in &streams {
            let line = json!({
                "name": stream.name,
                "shard_count": stream.shard_count,
                "status": stream_status(stream.status),
            });
            writeln!(out, "{line}")?;
        }
    } else {
        let rows: Vec<Vec<String>> = streams
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.shard_count.to_string(),
                    stream_status(s.status).to_owned(),
                ]
            })
            .collect();
        write_table(&mut out, &["STREAM", "SHARDS", "STATUS"], &rows)?;
    }
    emit(&out)
}

/// Runs `describe`.
pub async fn describe(connector: Connector, args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let mut client = connector.connect().await?;
    let names = match &args.stream {
        Some(name) => vec![name.clone()],
        None => list(&connector, &mut client)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect(),
    };
    let mut out = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let request = v1::DescribeStreamRequest {
            stream: name.clone(),
        };
        let stream = tokio::time::timeout(connector.timeout(), client.describe_stream(request))
            .await
            .map_err(|_| connector.unreachable("DescribeStream not answered in time".into()))?
            .map_err(|status| connector.failure(&status))?
            .into_inner();
        if args.json {
            writeln!(out, "{}", describe_json(&stream))?;
        } else {
            if index > 0 {
                writeln!(out)?;
            }
            describe_table(&mut out, &stream)?;
        }
    }
    emit(&out)
}

async fn list(
    connector: &Connector,
    client: &mut Client,
) -> anyhow::Result<Vec<v1::StreamSummary>> {
    let response = tokio::time::timeout(
        connector.timeout(),
        client.list_streams(v1::ListStreamsRequest {}),
    )
    .await
    .map_err(|_| connector.unreachable("ListStreams not answered in time".into()))?
    .map_err(|status| connector.failure(&status))?;
    Ok(response.into_inner().streams)
}

/// Writes the output; a closed pipe is not an error.
fn emit(out: &[u8]) -> anyhow::Result<ExitCode> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(out).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitCode::Success),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::Success),
        Err(err) => Err(Failure::LocalFile {
            what: "standard output",
            path: "-".into(),
            cause: err.to_string(),
        }
        .into()),
    }
}

fn describe_json(stream: &v1::DescribeStreamResponse) -> Value {
    let consumer = stream.consumer.clone().unwrap_or_default();
    json!({
        "stream": stream.stream,
        "status": stream_status(stream.status),
        "consumer": {"name": consumer.name, "arn": consumer.arn, "status": consumer.status},
        "subscriber_count": stream.subscriber_count,
        "oldest_cursor": stream.oldest_cursor,
        "oldest_time": stream.oldest_timestamp.as_ref().and_then(rfc3339),
        "shards": stream.shards.iter().map(|shard| {
            let range = shard.hash_key_range.clone().unwrap_or_default();
            json!({
                "shard_id": shard.shard_id,
                "parent_shard_id": non_empty(&shard.parent_shard_id),
                "adjacent_parent_shard_id": non_empty(&shard.adjacent_parent_shard_id),
                "starting_hash_key": range.starting_hash_key,
                "ending_hash_key": range.ending_hash_key,
                "state": shard_state(shard.state),
                "last_sequence_number": non_empty(&shard.last_sequence_number),
                "millis_behind_latest": shard.millis_behind_latest,
                "oldest_sequence_number": non_empty(&shard.oldest_sequence_number),
                "records_held": shard.records_held,
                "bytes_held": shard.bytes_held,
            })
        }).collect::<Vec<_>>(),
    })
}

fn describe_table(out: &mut impl Write, stream: &v1::DescribeStreamResponse) -> io::Result<()> {
    let consumer = stream.consumer.clone().unwrap_or_default();
    writeln!(
        out,
        "stream {}  status {}  subscribers {}",
        stream.stream,
        stream_status(stream.status),
        stream.subscriber_count
    )?;
    writeln!(out, "consumer {} ({})", consumer.name, consumer.status)?;
    if let Some(oldest) = stream.oldest_timestamp.as_ref().and_then(rfc3339) {
        writeln!(out, "oldest record held {oldest}")?;
    }
    let rows: Vec<Vec<String>> = stream
        .shards
        .iter()
        .map(|shard| {
            vec![
                shard.shard_id.clone(),
                shard_state(shard.state).to_owned(),
                format!("{:.1}s", shard.millis_behind_latest as f64 / 1000.0),
                shard.records_held.to_string(),
                shard.bytes_held.to_string(),
                [&shard.parent_shard_id, &shard.adjacent_parent_shard_id]
                    .into_iter()
                    .filter(|id| !id.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    write_table(
        out,
        &["SHARD", "STATE", "LAG", "RECORDS", "BYTES", "PARENTS"],
        &rows,
    )
}

/// Left-aligned columns separated by two spaces. Without a terminal the same table is
/// written: use --json for machine-readable output.
fn write_table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn non_empty(text: &str) -> Option<&str> {
    Some(text).filter(|t| !t.is_empty())
}

fn stream_status(value: i32) -> &'static str {
    match v1::StreamStatus::try_from(value) {
        Ok(v1::StreamStatus::Starting) => "STARTING",
        Ok(v1::StreamStatus::Active) => "ACTIVE",
        Ok(v1::StreamStatus::Degraded) => "DEGRADED",
        Ok(v1::StreamStatus::Stopped) => "STOPPED",
        _ => "UNKNOWN",
    }
}

fn shard_state(value: i32) -> &'static str {
    match v1::ShardState::try_from(value) {
        Ok(v1::ShardState::Waiting) => "WAITING",
        Ok(v1::ShardState::Reading) => "READING",
        Ok(v1::ShardState::Reconnecting) => "RECONNECTING",
        Ok(v1::ShardState::Finished) => "FINISHED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut out = Vec::new();
        write_table(
            &mut out,
            &["A", "BB"],
            &[
                vec!["long-name".into(), "1".into()],
                vec!["x".into(), "22".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A          BB\nlong-name  1\nx          22\n"
        );
    }
}
