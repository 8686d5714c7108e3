//! `--to`: a local directory or an object store URL, and the store it names, through the
//! `object_store` crate. Everything here runs before a record is read, so a bad URL, a
//! missing bucket or missing credentials end the run at once with their exit code.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::{
    BackoffConfig, ObjectStore, RetryConfig,
    aws::{AmazonS3Builder, AwsCredential},
    azure::MicrosoftAzureBuilder,
    gcp::GoogleCloudStorageBuilder,
    path::Path,
};

use crate::error::Failure;

/// Where `--to` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A local directory (a path, or a `file://` URL).
    Local(PathBuf),
    /// An object store.
    Store(StoreUrl),
}

/// An object store URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// The URL as given, for messages.
    pub text: String,
    /// Which store.
    pub scheme: Scheme,
    /// The bucket (or Azure container).
    pub bucket: String,
    /// The key prefix under which everything of the archive goes.
    pub prefix: Path,
}

/// The stores `--to` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `s3://`: Amazon S3 or an S3-compatible endpoint.
    S3,
    /// `gs://`: Google Cloud Storage.
    Gcs,
    /// `az://`: Azure Blob Storage.
    Azure,
}

/// How long object store requests are retried before the archive gives up.
const RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// Credentials are fetched again this long before they expire.
const CREDENTIAL_MARGIN: Duration = Duration::from_secs(300);

impl Destination {
    /// Parses `--to`.
    pub fn parse(text: &str) -> Result<Self, Failure> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Self::Local(PathBuf::from(text)));
        };
        let scheme = match scheme {
            "file" => return Ok(Self::Local(PathBuf::from(rest))),
            "s3" => Scheme::S3,
            "gs" => Scheme::Gcs,
            "az" => Scheme::Azure,
            other => {
                return Err(Failure::Usage(format!(
                    "--to {text}: unknown scheme {other}://; use a directory, s3://BUCKET/PREFIX, \
                     gs://BUCKET/PREFIX or az://CONTAINER/PREFIX"
                )));
            }
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Failure::Usage(format!(
                "--to {text}: the URL names no bucket"
            )));
        }
        let prefix = Path::parse(prefix.trim_end_matches('/')).map_err(|err| {
            Failure::Usage(format!("--to {text}: the prefix is not a valid key: {err}"))
        })?;
        Ok(Self::Store(StoreUrl {
            text: text.to_owned(),
            scheme,
            bucket: bucket.to_owned(),
            prefix,
        }))
    }
}

impl StoreUrl {
    /// Builds the client of the store, credentials checked; `timeout` bounds the search for
    /// credentials.
    pub async fn open(&self, timeout: Duration) -> Result<Arc<dyn ObjectStore>, Failure> {
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 8,
            retry_timeout: RETRY_TIMEOUT,
        };
        let built = match self.scheme {
            Scheme::S3 => {
                let (credentials, region) = self.aws_credentials(timeout).await?;
                let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
                    .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                    .ok();
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&self.bucket)
                    .with_region(region)
                    .with_credentials(Arc::new(credentials))
                    .with_retry(retry);
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_endpoint(endpoint);
                }
                builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            Scheme::Gcs => GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&self.bucket)
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            Scheme::Azure => MicrosoftAzureBuilder::from_env()
                .with_container_name(&self.bucket)
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        };
        built.map_err(|err| self.failure(err))
    }

    /// The AWS credentials of the standard chain (environment, profile files, SSO, web
    /// identity, container and instance roles) and the region, checked to exist.
    async fn aws_credentials(&self, timeout: Duration) -> Result<(AwsChain, String), Failure> {
        let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
        let region = config
            .region()
            .map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
        let denied = |cause: String| Failure::DestinationDenied {
            destination: self.text.clone(),
            cause,
        };
        let provider = config
            .credentials_provider()
            .ok_or_else(|| denied("no AWS credentials provider is configured".into()))?;
        let chain = AwsChain {
            provider,
            cached: tokio::sync::Mutex::new(None),
        };
        match tokio::time::timeout(timeout.max(Duration::from_secs(5)), chain.fetch()).await {
            Ok(Ok(_)) => Ok((chain, region)),
            Ok(Err(err)) => Err(denied(format!(
                "no AWS credentials found ({err}); set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with a role"
            ))),
            Err(_) => Err(denied(format!(
                "no AWS credentials found within {timeout:?}; set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with a role"
            ))),
        }
    }

    /// Lists the archive's prefix once, so a missing bucket or refused credentials show
    /// before any record is read.
    pub async fn probe(&self, store: &dyn ObjectStore, timeout: Duration) -> Result<(), Failure> {
        match tokio::time::timeout(
            timeout.max(Duration::from_secs(10)),
            store.list_with_delimiter(Some(&self.prefix)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(self.failure(err)),
            Err(_) => Err(Failure::Destination {
                destination: self.text.clone(),
                cause: "the store did not answer a listing in time; check the endpoint".into(),
            }),
        }
    }

    /// The failure class of a store error.
    pub fn failure(&self, err: object_store::Error) -> Failure {
        let text = format!("{err}");
        let destination = self.text.clone();
        match err {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Failure::DestinationDenied {
                destination,
                cause: format!("{text}; check the store's credentials and their permissions"),
            },
            _ if text.contains("NoSuchBucket") || text.contains("ContainerNotFound") => {
                Failure::Destination {
                    destination,
                    cause: format!("bucket {} does not exist", self.bucket),
                }
            }
            object_store::Error::NotFound { .. } => Failure::Destination {
                destination,
                cause: format!("bucket {} does not exist ({text})", self.bucket),
            },
            _ if text.contains("InvalidAccessKeyId")
                || text.contains("SignatureDoesNotMatch")
                || text.contains("AccessDenied") =>
            {
                Failure::DestinationDenied {
                    destination,
                    cause: format!("{text}; check the store's credentials"),
                }
            }
            _ => Failure::Destination {
                destination,
                cause: text,
            },
        }
    }
}

/// The AWS SDK's default credentials chain, for `object_store`, with the credentials kept
/// until shortly before they expire.
#[derive(Debug)]
struct AwsChain {
    /// The chain.
    provider: SharedCredentialsProvider,
    /// The last credentials and when they expire.
    cached: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl AwsChain {
    async fn fetch(
        &self,
    ) -> Result<Arc<AwsCredential>, aws_credential_types::provider::error::CredentialsError> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|at| {
                at.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > CREDENTIAL_MARGIN)
            });
            if fresh {
                return Ok(credential.clone());
            }
        }
        let credentials = self.provider.provide_credentials().await?;
        let credential = Arc::new(AwsCredential {
            key_id: credentials.access_key_id().to_owned(),
            secret_key: credentials.secret_access_key().to_owned(),
            token: credentials.session_token().map(str::to_owned),
        });
        *cached = Some((credential.clone(), credentials.expiry()));
        Ok(credential)
    }
}

#[async_trait::async_trait]
impl object_store::CredentialProvider for AwsChain {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        self.fetch()
            .await
            .map_err(|err| object_store::Error::Unauthenticated {
                path: String::new(),
                source: Box::new(err),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        assert_eq!(
            Destination::parse("/var/archive").unwrap(),
            Destination::Local("/var/archive".into())
        );
        assert_eq!(
            Destination::parse("file:///var/archive").unwrap(),
            Destination::Local("/var/archive".into())
        );
        let Destination::Store(url) = Destination::parse("s3://bucket/a/b/").unwrap() else {
            panic!("a store");
        };
        assert_eq!(url.scheme, Scheme::S3);
        assert_eq!(url.bucket, "bucket");
        assert_eq!(url.prefix.as_ref(), "a/b");
        let Destination::Store(url) = Destination::parse("gs://bucket").unwrap() else {
            panic!("a store");
        };
        assert_eq!((url.scheme, url.prefix.as_ref()), (Scheme::Gcs, ""));
        assert!(matches!(
            Destination::parse("az://container/x").unwrap(),
            Destination::Store(StoreUrl {
                scheme: Scheme::Azure,
                ..
            })
        ));
    }

    #[test]
    fn bad_destinations_are_usage_errors() {
        for (text, says) in [
            ("ftp://host/x", "unknown scheme ftp://"),
            ("s3:///prefix", "no bucket"),
            ("s3://bucket/a//b", "not a valid key"),
        ] {
            let err = Destination::parse(text).unwrap_err();
            assert!(matches!(err, Failure::Usage(_)), "{text}");
            assert!(err.to_string().contains(says), "{text}: {err}");
        }
    }
}
