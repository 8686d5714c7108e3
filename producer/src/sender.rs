//! Sends one PutRecords request and sorts its entries into acknowledged, to retry, failed.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::operation::put_records::PutRecordsOutput;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::error::{
    ProducerError, RequestFailure, classify, is_retriable_code, is_throttling_code,
};
use crate::record::Entry;

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written; the shard Kinesis put it on.
    Written {
        /// The shard id from the response.
        shard_id: Option<String>,
    },
    /// Failed for now; try again after a backoff.
    Retry {
        /// Kinesis' error code.
        code: String,
        /// Kinesis' error message.
        message: String,
        /// Whether the shard throttled it.
        throttled: bool,
    },
    /// Failed for good.
    Failed {
        /// Kinesis' error code.
        code: String,
        /// Kinesis' error message.
        message: String,
    },
}

/// The result of one request: each entry with its outcome, or an error that ends the run.
#[derive(Debug)]
pub struct BatchResult {
    /// Entries in the order sent, with what happened to each.
    pub entries: Vec<(Entry, Outcome)>,
    /// Set when the run cannot go on (stream deleted, credentials revoked).
    pub fatal: Option<ProducerError>,
}

/// Sends `entries` in one PutRecords request.
pub async fn put_records(
    client: &Client,
    stream: &str,
    region: &str,
    entries: Vec<Entry>,
) -> BatchResult {
    let request_entries = entries
        .iter()
        .map(|entry| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(entry.data.to_vec()))
                .partition_key(&entry.partition_key)
                .set_explicit_hash_key(entry.explicit_hash_key.clone())
                .build()
                .expect("data and partition key are set")
        })
        .collect();
    let sent = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(request_entries))
        .send()
        .await;
    match sent {
        Ok(output) => BatchResult {
            entries: apply_response(entries, &output),
            fatal: None,
        },
        Err(err) => {
            let failure = classify(&err, "PutRecords", stream, region);
            request_failed(entries, failure)
        }
    }
}

/// Gives every entry the outcome of a request that failed as a whole.
pub fn request_failed(entries: Vec<Entry>, failure: RequestFailure) -> BatchResult {
    let (outcome, fatal) = match failure {
        RequestFailure::Retry { code, throttled } => (
            Outcome::Retry {
                message: format!("request failed: {code}"),
                code,
                throttled,
            },
            None,
        ),
        RequestFailure::FailEntries { code, message } => (Outcome::Failed { code, message }, None),
        RequestFailure::Fatal(err) => (
            Outcome::Failed {
                code: "Aborted".into(),
                message: err.to_string(),
            },
            Some(err),
        ),
    };
    BatchResult {
        entries: entries.into_iter().map(|e| (e, outcome.clone())).collect(),
        fatal,
    }
}

/// Pairs each entry with its result entry (same position, as the API guarantees).
pub fn apply_response(entries: Vec<Entry>, output: &PutRecordsOutput) -> Vec<(Entry, Outcome)> {
    let results = output.records();
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let outcome = match results.get(index) {
                // A response shorter than the request: we cannot know, so send again.
                None => Outcome::Retry {
                    code: "MissingResult".into(),
                    message: "PutRecords returned fewer results than records".into(),
                    throttled: false,
                },
                Some(result) => match result.error_code() {
                    None => Outcome::Written {
                        shard_id: result.shard_id().map(str::to_owned),
                    },
                    Some(code) => {
                        let message = result.error_message().unwrap_or("").to_owned();
                        if is_retriable_code(code) {
                            Outcome::Retry {
                                code: code.to_owned(),
                                message,
                                throttled: is_throttling_code(code),
                            }
                        } else {
                            Outcome::Failed {
                                code: code.to_owned(),
                                message,
                            }
                        }
                    }
                },
            };
            (entry, outcome)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use aws_sdk_kinesis::types::PutRecordsResultEntry;
    use bytes::Bytes;
    use std::sync::Arc;
    use std::time::Instant;

    fn entry(key: &str) -> Entry {
        Entry::plain(
            Record {
                seq: 0,
                partition_key: key.into(),
                explicit_hash_key: None,
                data: Bytes::from_static(b"x"),
                read_at: Instant::now(),
            },
            Arc::from("shardId-000000000000"),
        )
    }

    fn ok(shard: &str) -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder()
            .sequence_number("1")
            .shard_id(shard)
            .build()
    }

    fn err(code: &str) -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder()
            .error_code(code)
            .error_message("message")
            .build()
    }

    #[test]
    fn only_failed_entries_are_retried() {
        let output = PutRecordsOutput::builder()
            .failed_record_count(2)
            .records(ok("shardId-000000000000"))
            .records(err("ProvisionedThroughputExceededException"))
            .records(ok("shardId-000000000001"))
            .records(err("InternalFailure"))
            .build()
            .unwrap();
        let result = apply_response(
            vec![entry("a"), entry("b"), entry("c"), entry("d")],
            &output,
        );
        let keys_and_outcomes: Vec<_> = result
            .iter()
            .map(|(e, o)| (e.partition_key.as_str(), o.clone()))
            .collect();
        assert_eq!(
            keys_and_outcomes[0],
            (
                "a",
                Outcome::Written {
                    shard_id: Some("shardId-000000000000".into())
                }
            )
        );
        assert!(matches!(
            keys_and_outcomes[1],
            (
                "b",
                Outcome::Retry {
                    throttled: true,
                    ..
                }
            )
        ));
        assert!(matches!(
            keys_and_outcomes[2],
            ("c", Outcome::Written { .. })
        ));
        assert!(matches!(
            keys_and_outcomes[3],
            (
                "d",
                Outcome::Retry {
                    throttled: false,
                    ..
                }
            )
        ));
    }

    #[test]
    fn unknown_entry_errors_fail_for_good() {
        let output = PutRecordsOutput::builder()
            .failed_record_count(1)
            .records(err("KMSAccessDeniedException"))
            .build()
            .unwrap();
        let result = apply_response(vec![entry("a")], &output);
        assert!(
            matches!(result[0].1, Outcome::Failed { ref code, .. } if code == "KMSAccessDeniedException")
        );
    }

    #[test]
    fn short_responses_are_retried() {
        let output = PutRecordsOutput::builder()
            .records(ok("s"))
            .build()
            .unwrap();
        let result = apply_response(vec![entry("a"), entry("b")], &output);
        assert!(matches!(result[1].1, Outcome::Retry { ref code, .. } if code == "MissingResult"));
    }

    #[test]
    fn whole_request_failures() {
        let result = request_failed(
            vec![entry("a"), entry("b")],
            RequestFailure::Retry {
                code: "ServiceUnavailable".into(),
                throttled: false,
            },
        );
        assert!(result.fatal.is_none());
        assert!(
            result
                .entries
                .iter()
                .all(|(_, o)| matches!(o, Outcome::Retry { .. }))
        );
        let result = request_failed(
            vec![entry("a")],
            RequestFailure::Fatal(ProducerError::NoCredentials("gone".into())),
        );
        assert!(result.fatal.is_some());
        assert!(matches!(result.entries[0].1, Outcome::Failed { .. }));
    }
}
