//! Partition keys: the `--partition-key` template and the default random key.

use md5::{Digest, Md5};

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Uuid,
    Seq,
    SeqMod(u64),
    LineHash,
}

/// How each record's partition key is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    /// The pieces, concatenated; empty means a random key.
    parts: Vec<Part>,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`.
    #[error("unclosed '{{' in partition key template")]
    Unclosed,
    /// A placeholder we do not know.
    #[error("unknown placeholder {{{0}}} (known: {{uuid}}, {{seq}}, {{seq%N}}, {{line_hash}})")]
    Unknown(String),
    /// The template is empty.
    #[error("partition key template is empty")]
    Empty,
}

impl KeyTemplate {
    /// A random key per record: spreads records evenly over the shards.
    pub fn random() -> Self {
        KeyTemplate { parts: Vec::new() }
    }

    /// Parses a template such as `user-{seq%16}`.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        if template.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..].find('}').ok_or(TemplateError::Unclosed)? + open;
            let name = &rest[open + 1..close];
            parts.push(match name {
                "uuid" => Part::Uuid,
                "seq" => Part::Seq,
                "line_hash" => Part::LineHash,
                _ => match name
                    .strip_prefix("seq%")
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    Some(n) if n > 0 => Part::SeqMod(n),
                    _ => return Err(TemplateError::Unknown(name.to_owned())),
                },
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(KeyTemplate { parts })
    }

    /// The key of record number `seq` whose data is `data`.
    pub fn render(&self, seq: u64, data: &[u8]) -> String {
        if self.parts.is_empty() {
            return format!("{:016x}", rand::random::<u64>());
        }
        let mut key = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => key.push_str(text),
                Part::Uuid => key.push_str(&uuid::Uuid::new_v4().to_string()),
                Part::Seq => key.push_str(&seq.to_string()),
                Part::SeqMod(n) => key.push_str(&(seq % n).to_string()),
                Part::LineHash => {
                    for byte in Md5::digest(data) {
                        key.push_str(&format!("{byte:02x}"));
                    }
                }
            }
        }
        key
    }
}

/// Kinesis accepts partition keys of 1 to 256 Unicode characters.
pub fn check_key(key: &str) -> Result<(), String> {
    let chars = key.chars().count();
    if chars == 0 {
        return Err("partition key is empty".into());
    }
    if chars > 256 {
        return Err(format!(
            "partition key has {chars} characters, more than 256"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_placeholders() {
        let template = KeyTemplate::parse("user-{seq}-{seq%3}").unwrap();
        assert_eq!(template.render(7, b""), "user-7-1");
        assert_eq!(
            KeyTemplate::parse("fixed").unwrap().render(1, b"x"),
            "fixed"
        );
    }

    #[test]
    fn line_hash_is_md5_hex() {
        let template = KeyTemplate::parse("{line_hash}").unwrap();
        assert_eq!(template.render(0, b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn uuid_and_random_differ_per_record() {
        let template = KeyTemplate::parse("{uuid}").unwrap();
        assert_ne!(template.render(0, b""), template.render(0, b""));
        assert_eq!(template.render(0, b"").len(), 36);
        let random = KeyTemplate::random();
        assert_ne!(random.render(0, b""), random.render(0, b""));
    }

    #[test]
    fn bad_templates() {
        assert_eq!(KeyTemplate::parse("a{seq"), Err(TemplateError::Unclosed));
        assert!(matches!(
            KeyTemplate::parse("{nope}"),
            Err(TemplateError::Unknown(_))
        ));
        assert!(matches!(
            KeyTemplate::parse("{seq%0}"),
            Err(TemplateError::Unknown(_))
        ));
        assert_eq!(KeyTemplate::parse(""), Err(TemplateError::Empty));
    }

    #[test]
    fn key_limits() {
        assert!(check_key("a").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"é".repeat(256)).is_ok());
        assert!(check_key(&"a".repeat(257)).is_err());
    }
}
