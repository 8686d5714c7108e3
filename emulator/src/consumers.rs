//! Enhanced fan-out consumers: registration, activation and lookup.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::error::KinesisError;
use crate::limits::CONSUMERS_PER_STREAM;
use crate::protocol;
use crate::state::{Inner, Store};

/// A registered consumer.
#[derive(Debug, Clone)]
pub(crate) struct Consumer {
    /// Its name, unique within the stream.
    pub(crate) name: String,
    /// `<stream ARN>/consumer/<name>:<creation epoch seconds>`, as AWS shapes it.
    pub(crate) arn: String,
    /// The stream it reads.
    pub(crate) stream_arn: String,
    /// When it was registered.
    pub(crate) created: SystemTime,
    /// When it turns from CREATING to ACTIVE.
    pub(crate) active_at: Instant,
}

impl Consumer {
    /// CREATING until the activation delay has passed, then ACTIVE.
    pub(crate) fn status(&self) -> &'static str {
        if Instant::now() >= self.active_at {
            "ACTIVE"
        } else {
            "CREATING"
        }
    }

    /// The `Consumer` shape of RegisterStreamConsumer and ListStreamConsumers.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ConsumerName": self.name,
            "ConsumerARN": self.arn,
            "ConsumerStatus": self.status(),
            "ConsumerCreationTimestamp": protocol::epoch_seconds(self.created),
        })
    }

    /// The `ConsumerDescription` shape of DescribeStreamConsumer.
    pub(crate) fn to_description_json(&self) -> serde_json::Value {
        let mut json = self.to_json();
        json["StreamARN"] = self.stream_arn.clone().into();
        json
    }
}

/// The stream and consumer names inside a consumer ARN.
pub(crate) fn parse_consumer_arn(arn: &str) -> Option<(&str, &str)> {
    let stream = protocol::stream_name_from_arn(arn)?;
    let (_, rest) = arn.split_once("/consumer/")?;
    let (name, _created) = rest.rsplit_once(':')?;
    Some((stream, name))
}

impl Inner {
    /// The consumer with this ARN; the ARN must match exactly (a re-registered consumer
    /// of the same name has a new ARN).
    pub(crate) fn consumer_by_arn(&self, arn: &str) -> Result<&Consumer, KinesisError> {
        let missing = || KinesisError::ResourceNotFound(format!("Consumer {arn} not found."));
        let (stream, name) = parse_consumer_arn(arn).ok_or_else(missing)?;
        let consumer = self
            .streams
            .get(stream)
            .and_then(|s| s.consumers.get(name))
            .ok_or_else(missing)?;
        if consumer.arn == arn {
            Ok(consumer)
        } else {
            Err(missing())
        }
    }
}

impl Store {
    pub(crate) fn register_consumer(
        &self,
        stream: &str,
        name: &str,
    ) -> Result<Consumer, KinesisError> {
        if !protocol::valid_name(name) {
            return Err(KinesisError::Validation(format!(
                "consumer name {name:?} must be 1-128 characters of [a-zA-Z0-9_.-]"
            )));
        }
        let delay = self.settings().consumer_activation_delay;
        let mut inner = self.lock();
        let stream = inner.stream_mut(stream)?;
        if stream.consumers.contains_key(name) {
            return Err(KinesisError::ResourceInUse(format!(
                "Consumer {name} already exists on stream {}",
                stream.name
            )));
        }
        if stream.consumers.len() >= CONSUMERS_PER_STREAM {
            return Err(KinesisError::LimitExceeded(format!(
                "Stream {} already has {CONSUMERS_PER_STREAM} consumers",
                stream.name
            )));
        }
        let created = SystemTime::now();
        let secs = created
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let consumer = Consumer {
            name: name.to_owned(),
            arn: format!("{}/consumer/{name}:{secs}", stream.arn),
            stream_arn: stream.arn.clone(),
            created,
            active_at: Instant::now() + delay,
        };
        stream.consumers.insert(name.to_owned(), consumer.clone());
        Ok(consumer)
    }

    /// Removes a consumer named by ARN, or by stream and name; returns its ARN.
    pub(crate) fn deregister_consumer(
        &self,
        stream: Option<&str>,
        name: Option<&str>,
        arn: Option<&str>,
    ) -> Result<String, KinesisError> {
        let mut inner = self.lock();
        let (stream, name) = match (arn, stream, name) {
            (Some(arn), _, _) => {
                let consumer = inner.consumer_by_arn(arn)?;
                let stream = protocol::stream_name_from_arn(&consumer.stream_arn)
                    .unwrap_or_default()
                    .to_owned();
                (stream, consumer.name.clone())
            }
            (None, Some(stream), Some(name)) => (stream.to_owned(), name.to_owned()),
            _ => {
                return Err(KinesisError::InvalidArgument(
                    "ConsumerARN, or StreamARN and ConsumerName, are required".into(),
                ));
            }
        };
        let stream = inner.stream_mut(&stream)?;
        let consumer = stream
            .consumers
            .remove(&name)
            .ok_or_else(|| KinesisError::ResourceNotFound(format!("Consumer {name} not found.")))?;
        Ok(consumer.arn)
    }

    pub(crate) fn describe_consumer(
        &self,
        stream: Option<&str>,
        name: Option<&str>,
        arn: Option<&str>,
    ) -> Result<Consumer, KinesisError> {
        let inner = self.lock();
        match (arn, stream, name) {
            (Some(arn), _, _) => inner.consumer_by_arn(arn).cloned(),
            (None, Some(stream), Some(name)) => inner
                .stream(stream)?
                .consumers
                .get(name)
                .cloned()
                .ok_or_else(|| {
                    KinesisError::ResourceNotFound(format!("Consumer {name} not found."))
                }),
            _ => Err(KinesisError::InvalidArgument(
                "ConsumerARN, or StreamARN and ConsumerName, are required".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use std::sync::Arc;

    #[test]
    fn consumer_arns_name_their_stream_and_consumer() {
        assert_eq!(
            parse_consumer_arn("arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:17"),
            Some(("s", "c"))
        );
        assert_eq!(
            parse_consumer_arn("arn:aws:kinesis:us-east-1:0:stream/s"),
            None
        );
    }

    #[test]
    fn twenty_consumers_per_stream() {
        let store = Store::new(Arc::new(Settings::default()));
        store.create_stream("s", 1, false).unwrap();
        for i in 0..20 {
            store.register_consumer("s", &format!("c{i}")).unwrap();
        }
        assert!(matches!(
            store.register_consumer("s", "c20"),
            Err(KinesisError::LimitExceeded(_))
        ));
        assert!(matches!(
            store.register_consumer("s", "c0"),
            Err(KinesisError::ResourceInUse(_))
        ));
    }
}
