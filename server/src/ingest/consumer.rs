//! The enhanced fan-out consumer: describe, register when missing, wait for ACTIVE.

use std::time::Duration;

use aws_sdk_kinesis::{Client, types::ConsumerStatus};
use tokio::time::{Instant, sleep};
use tracing::{info, warn};

use kinesis_relay_api::backoff::Backoff;

use super::errors::{CallError, ErrorKind, IngestError, classify};
use crate::hub::ConsumerInfo;

/// How often a CREATING consumer is described again.
const ACTIVE_POLL: Duration = Duration::from_millis(500);

/// Makes sure `name` is an ACTIVE consumer of `stream_arn` and returns it. Gives up after
/// `deadline` with an error that says what to check.
pub async fn ensure_consumer(
    client: &Client,
    stream_arn: &str,
    name: &str,
    deadline: Duration,
) -> Result<ConsumerInfo, IngestError> {
    let started = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut registered = false;
    loop {
        if started.elapsed() > deadline {
            return Err(IngestError::ConsumerNotActive {
                name: name.to_owned(),
                stream_arn: stream_arn.to_owned(),
                deadline,
            });
        }
        match client
            .describe_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(name)
            .send()
            .await
        {
            Ok(output) => {
                let description = output
                    .consumer_description()
                    .ok_or(IngestError::NoConsumerDescription)?;
                let info = ConsumerInfo {
                    name: description.consumer_name().to_owned(),
                    arn: description.consumer_arn().to_owned(),
                    status: description.consumer_status().as_str().to_owned(),
                };
                match description.consumer_status() {
                    ConsumerStatus::Active => {
                        info!(consumer = name, arn = %info.arn, reused = !registered, "consumer active");
                        return Ok(info);
                    }
                    ConsumerStatus::Deleting => {
                        // Registering again only works once the deletion completed.
                        sleep(ACTIVE_POLL).await;
                    }
                    _ => sleep(ACTIVE_POLL).await,
                }
            }
            Err(err) => match classify(&err) {
                ErrorKind::NotFound => {
                    match client
                        .register_stream_consumer()
                        .stream_arn(stream_arn)
                        .consumer_name(name)
                        .send()
                        .await
                    {
                        Ok(_) => {
                            registered = true;
                            info!(consumer = name, "consumer registered");
                        }
                        Err(err) => match classify(&err) {
                            // Registered meanwhile (by us or another replica): describe again.
                            ErrorKind::InUse => {}
                            ErrorKind::Throttled => {
                                let delay = backoff.next_delay();
                                warn!(consumer = name, cause = %err_text(&err), ?delay, "registration throttled or consumer limit reached, backing off");
                                sleep(delay).await;
                            }
                            ErrorKind::NotFound => {
                                return Err(IngestError::NoStream {
                                    stream_arn: stream_arn.to_owned(),
                                    cause: CallError::from_sdk(&err),
                                });
                            }
                            _ => {
                                let delay = backoff.next_delay();
                                warn!(consumer = name, cause = %err_text(&err), ?delay, "registration failed, backing off");
                                sleep(delay).await;
                            }
                        },
                    }
                }
                _ => {
                    let delay = backoff.next_delay();
                    warn!(consumer = name, cause = %err_text(&err), ?delay, "describing the consumer failed, backing off");
                    sleep(delay).await;
                }
            },
        }
    }
}

/// Deregisters the consumer (on exit, when asked).
pub async fn deregister(client: &Client, consumer_arn: &str) -> Result<(), IngestError> {
    client
        .deregister_stream_consumer()
        .consumer_arn(consumer_arn)
        .send()
        .await
        .map_err(|err| IngestError::Deregister {
            arn: consumer_arn.to_owned(),
            cause: CallError::from_sdk(&err),
        })?;
    info!(arn = consumer_arn, "consumer deregistered");
    Ok(())
}

/// An SDK error as one line: code and message when the service sent them.
pub fn err_text<E, R>(err: &aws_sdk_kinesis::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_kinesis::error::ProvideErrorMetadata;
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => aws_sdk_kinesis::error::DisplayErrorContext(err).to_string(),
    }
}
