//! Connecting to the relay: URL, TLS, bearer token, deadlines.

use std::{fs, path::Path, time::Duration};

use kinesis_relay_api::v1::relay_client::RelayClient;
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::{cli::ConnectionArgs, error::Failure};

/// Largest response accepted; the relay keeps batches under 4 MiB plus framing.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// A relay client whose requests carry the bearer token.
pub type Client = RelayClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every request when a token was given.
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Everything needed to (re)connect to the relay.
#[derive(Debug, Clone)]
pub struct Connector {
    /// The configured endpoint (TLS and keepalive included).
    endpoint: Endpoint,
    /// The token interceptor.
    bearer: Bearer,
    /// The URL, for messages.
    relay: String,
    /// Deadline of a connection attempt and of a unary call.
    timeout: Duration,
}

impl Connector {
    /// Checks the flags and reads the certificate files.
    pub fn new(args: &ConnectionArgs) -> Result<Self, Failure> {
        let relay = args.relay.trim().to_owned();
        let tls = relay.starts_with("https://");
        if !tls && !relay.starts_with("http://") {
            return Err(Failure::Usage(format!(
                "--relay {relay:?}: use an http:// or https:// URL, like http://127.0.0.1:50051"
            )));
        }
        if !tls && (args.ca_cert.is_some() || args.client_cert.is_some()) {
            return Err(Failure::Usage(
                "--ca-cert, --client-cert and --client-key need an https:// --relay URL".into(),
            ));
        }
        let mut endpoint = Endpoint::from_shared(relay.clone())
            .map_err(|err| Failure::Usage(format!("--relay {relay:?} is not a valid URL: {err}")))?
            .connect_timeout(args.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .max_frame_size(kinesis_relay_api::CLIENT_MAX_FRAME_SIZE)
            .tcp_nodelay(true);
        if tls {
            let mut config = ClientTlsConfig::new();
            config = match &args.ca_cert {
                Some(path) => config.ca_certificate(Certificate::from_pem(read_pem(
                    "CA certificate (--ca-cert)",
                    path,
                )?)),
                None => config.with_native_roots(),
            };
            if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
                config = config.identity(Identity::from_pem(
                    read_pem("client certificate (--client-cert)", cert)?,
                    read_pem("client key (--client-key)", key)?,
                ));
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|err| Failure::LocalFile {
                    what: "TLS configuration",
                    path: args
                        .ca_cert
                        .as_deref()
                        .unwrap_or(Path::new("(system roots)"))
                        .display()
                        .to_string(),
                    cause: format!("{err}"),
                })?;
        }
        let bearer = match &args.token {
            Some(token) if !token.is_empty() => {
                Bearer(Some(format!("Bearer {token}").parse().map_err(|_| {
                    Failure::Usage(
                        "--token must be printable ASCII (it is sent in a header)".into(),
                    )
                })?))
            }
            _ => Bearer(None),
        };
        Ok(Self {
            endpoint,
            bearer,
            relay,
            timeout: args.connect_timeout,
        })
    }

    /// The relay URL.
    pub fn relay(&self) -> &str {
        &self.relay
    }

    /// The deadline for unary calls.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Opens a connection (bounded by `--connect-timeout`).
    pub async fn connect(&self) -> Result<Client, Failure> {
        let channel = tokio::time::timeout(self.timeout, self.endpoint.connect())
            .await
            .map_err(|_| self.unreachable(format!("no connection within {:?}", self.timeout)))?
            .map_err(|err| self.unreachable(error_chain(&err)))?;
        Ok(RelayClient::with_interceptor(channel, self.bearer.clone())
            .max_decoding_message_size(MAX_RESPONSE_BYTES))
    }

    /// An [`Failure::Unreachable`] for this relay.
    pub fn unreachable(&self, cause: String) -> Failure {
        Failure::Unreachable {
            relay: self.relay.clone(),
            cause,
        }
    }

    /// Classifies a status from this relay.
    pub fn failure(&self, status: &Status) -> Failure {
        Failure::from_status(status, &self.relay)
    }
}

/// `a: b: c` from an error and its sources (the transport's top error alone says little).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, Failure> {
    fs::read(path).map_err(|err| Failure::local(what, path, &err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit_code::ExitCode;

    fn args(relay: &str) -> ConnectionArgs {
        ConnectionArgs {
            relay: relay.into(),
            ca_cert: None,
            client_cert: None,
            client_key: None,
            token: None,
            connect_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn flags_are_checked_before_connecting() {
        assert!(Connector::new(&args("http://127.0.0.1:1")).is_ok());
        let err = Connector::new(&args("ftp://x")).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Usage);
        let mut tls_on_plain = args("http://127.0.0.1:1");
        tls_on_plain.ca_cert = Some("ca.pem".into());
        assert_eq!(
            Connector::new(&tls_on_plain).unwrap_err().exit_code(),
            ExitCode::Usage
        );
        let mut missing_ca = args("https://relay.example:443");
        missing_ca.ca_cert = Some("/nonexistent/ca.pem".into());
        assert_eq!(
            Connector::new(&missing_ca).unwrap_err().exit_code(),
            ExitCode::LocalFile
        );
        let mut bad_token = args("http://127.0.0.1:1");
        bad_token.token = Some("new\nline".into());
        assert_eq!(
            Connector::new(&bad_token).unwrap_err().exit_code(),
            ExitCode::Usage
        );
    }

    #[test]
    fn the_token_is_sent_as_a_bearer_header() {
        let mut with_token = args("http://127.0.0.1:1");
        with_token.token = Some("s3cret".into());
        let mut bearer = Connector::new(&with_token).unwrap().bearer;
        let request = bearer.call(Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
        let mut none = Connector::new(&args("http://127.0.0.1:1")).unwrap().bearer;
        assert!(none.call(Request::new(())).unwrap().metadata().is_empty());
    }
}
