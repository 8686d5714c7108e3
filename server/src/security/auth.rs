//! Subscriber authentication and stream permissions.
//!
//! The tokens file (TOML or YAML) names principals: each has a bearer token (or only its
//! SHA-256, so the file need not hold the secret) or a client-certificate subject, and the
//! streams it may read (exact names or globs with `*` and `?`). Tokens are compared by
//! digest in constant time and never logged; logs name the principal.
//!
//! ```toml
//! [[tokens]]
//! name = "analytics"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! streams = ["clicks-*", "orders"]
//!
//! [[subjects]]
//! name = "billing"
//! subject = "CN=billing"
//! streams = ["payments"]
//! ```

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use anyhow::{Context, bail};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::{Status, metadata::MetadataMap};

/// Someone allowed to read some streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Name used in logs and limits (never the token).
    pub name: String,
    /// Stream patterns it may read.
    streams: Vec<String>,
}

impl Principal {
    /// The principal of a relay without a tokens file: may read everything.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".to_owned(),
            streams: vec!["*".to_owned()],
        }
    }

    /// Whether it may read `stream`.
    pub fn may_read(&self, stream: &str) -> bool {
        self.streams
            .iter()
            .any(|pattern| glob(pattern.as_bytes(), stream.as_bytes()))
    }
}

/// `*` matches any run of characters, `?` one character.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matching with one backtrack point: linear in practice, no recursion.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    #[serde(default)]
    subjects: Vec<SubjectEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    token: Option<String>,
    sha256: Option<String>,
    streams: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectEntry {
    name: String,
    subject: String,
    streams: Vec<String>,
}

/// The loaded file.
#[derive(Debug, Default)]
struct Table {
    /// SHA-256 of each token with its principal.
    tokens: Vec<([u8; 32], Arc<Principal>)>,
    /// Normalized certificate subject (or `CN=...`) with its principal.
    subjects: Vec<(String, Arc<Principal>)>,
}

/// Authenticates requests against the tokens file, reloaded when it changes.
#[derive(Debug)]
pub struct Authorizer {
    /// The tokens file.
    path: PathBuf,
    /// Its current content.
    table: RwLock<Arc<Table>>,
}

impl Authorizer {
    /// Loads the file; errors name the entry and field that is wrong.
    pub fn load(path: &Path) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            path: path.to_owned(),
            table: RwLock::new(Arc::new(parse_file(path)?)),
        }))
    }

    /// Loads the file again; on error the old content stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let table = parse_file(&self.path)?;
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who sent the request: the bearer token's principal, else the client certificate's.
    pub fn authenticate(
        &self,
        metadata: &MetadataMap,
        peer_certs: Option<&[CertificateDer<'static>]>,
    ) -> Result<Arc<Principal>, Status> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(value) = metadata.get("authorization") {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .ok_or_else(|| {
                    Status::unauthenticated("the authorization metadata must be `Bearer <token>`")
                })?;
            let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
            // Compare with every entry, without stopping early, so timing says nothing.
            let mut found = None;
            for (known, principal) in &table.tokens {
                if constant_time_eq(known, &digest) {
                    found = Some(principal.clone());
                }
            }
            return found.ok_or_else(|| {
                Status::unauthenticated(
                    "the bearer token is not valid; ask the relay's operator for one",
                )
            });
        }
        if let Some(leaf) = peer_certs.and_then(|certs| certs.first())
            && let Some(subject) = certificate_subject(leaf)
        {
            let cn = subject
                .split(',')
                .map(str::trim)
                .find(|part| part.starts_with("CN="))
                .map(str::to_owned);
            let normalized = normalize_subject(&subject);
            if let Some((_, principal)) = table
                .subjects
                .iter()
                .find(|(known, _)| *known == normalized || Some(known) == cn.as_ref())
            {
                return Ok(principal.clone());
            }
        }
        Err(Status::unauthenticated(
            "no credentials: send `authorization: Bearer <token>` metadata (kinesis-relay-client --token)",
        ))
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn certificate_subject(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.subject().to_string())
}

fn normalize_subject(subject: &str) -> String {
    subject
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_file(path: &Path) -> anyhow::Result<Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the tokens file {}", path.display()))?;
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let file: AuthFile = if yaml {
        serde_yaml_ng::from_str(&text).with_context(|| {
            format!(
                "tokens file {} is not valid YAML of the expected shape",
                path.display()
            )
        })?
    } else {
        toml::from_str(&text).with_context(|| {
            format!(
                "tokens file {} is not valid TOML of the expected shape",
                path.display()
            )
        })?
    };
    parse(file).with_context(|| format!("tokens file {}", path.display()))
}

fn parse(file: AuthFile) -> anyhow::Result<Table> {
    let mut table = Table::default();
    for (i, entry) in file.tokens.into_iter().enumerate() {
        let principal = principal(&entry.name, entry.streams, "tokens", i)?;
        let digest = match (entry.token, entry.sha256) {
            (Some(token), None) if !token.trim().is_empty() => {
                Sha256::digest(token.trim().as_bytes()).into()
            }
            (None, Some(hex)) => parse_hex_digest(&hex).with_context(|| {
                format!(
                    "tokens[{i}] ({}): sha256 must be 64 hex digits",
                    principal.name
                )
            })?,
            _ => bail!(
                "tokens[{i}] ({}): set exactly one of `token` or `sha256`",
                principal.name
            ),
        };
        table.tokens.push((digest, Arc::new(principal)));
    }
    for (i, entry) in file.subjects.into_iter().enumerate() {
        let principal = principal(&entry.name, entry.streams, "subjects", i)?;
        if !entry.subject.contains('=') {
            bail!(
                "subjects[{i}] ({}): subject must look like CN=name or a full DN",
                principal.name
            );
        }
        table
            .subjects
            .push((normalize_subject(&entry.subject), Arc::new(principal)));
    }
    Ok(table)
}

fn principal(
    name: &str,
    streams: Vec<String>,
    section: &str,
    i: usize,
) -> anyhow::Result<Principal> {
    if name.trim().is_empty() {
        bail!("{section}[{i}]: name must not be empty");
    }
    if streams.is_empty() {
        bail!("{section}[{i}] ({name}): streams must name at least one stream or pattern");
    }
    Ok(Principal {
        name: name.to_owned(),
        streams,
    })
}

fn parse_hex_digest(hex: &str) -> anyhow::Result<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        bail!("expected 64 characters, got {}", hex.len());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).context("not hexadecimal")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"clicks-*", b"clicks-eu"));
        assert!(!glob(b"clicks-*", b"orders"));
        assert!(glob(b"a?c", b"abc"));
        assert!(glob(b"*-prod-*", b"x-prod-y"));
        assert!(!glob(b"orders", b"orders2"));
    }

    fn table(text: &str) -> anyhow::Result<Table> {
        parse(toml::from_str(text)?)
    }

    #[test]
    fn tokens_by_value_and_digest() {
        let digest = format!("{:x}", Sha256::digest(b"second-secret"));
        let table = table(&format!(
            r#"
            [[tokens]]
            name = "one"
            token = "first-secret"
            streams = ["a"]
            [[tokens]]
            name = "two"
            sha256 = "{digest}"
            streams = ["b-*"]
            "#
        ))
        .unwrap();
        let authorizer = Authorizer {
            path: PathBuf::new(),
            table: RwLock::new(Arc::new(table)),
        };
        let with = |token: &str| {
            let mut metadata = MetadataMap::new();
            metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
            authorizer.authenticate(&metadata, None)
        };
        assert_eq!(with("first-secret").unwrap().name, "one");
        let two = with("second-secret").unwrap();
        assert!(two.may_read("b-1") && !two.may_read("a"));
        assert_eq!(
            with("wrong").unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let none = authorizer
            .authenticate(&MetadataMap::new(), None)
            .unwrap_err();
        assert!(none.message().contains("Bearer"));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let err = table("[[tokens]]\nname = \"x\"\nstreams = [\"a\"]\n").unwrap_err();
        assert!(format!("{err:#}").contains("exactly one of"));
        let err =
            table("[[tokens]]\nname = \"x\"\nsha256 = \"abc\"\nstreams = [\"a\"]\n").unwrap_err();
        assert!(format!("{err:#}").contains("64 hex"));
        let err = table("[[tokens]]\nname = \"x\"\ntoken = \"t\"\nstreams = []\n").unwrap_err();
        assert!(format!("{err:#}").contains("at least one"));
        assert!(
            toml::from_str::<AuthFile>("[[tokens]]\nname = \"x\"\ntokn = \"t\"\nstreams = [\"a\"]")
                .is_err()
        );
    }
}
