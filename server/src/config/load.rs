//! Parsing the command line and the `--config` file, the checks clap cannot make, and the
//! configuration as logged at start.

use std::{ffi::OsString, path::Path};

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, parser::ValueSource};

use super::Cli;

/// `--key=value` arguments for the config file's keys that the command line and the
/// environment left at their defaults.
fn config_file_args(path: &Path, matches: &ArgMatches) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
    let command = Cli::command();
    let mut args = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long.as_str()) && long != "config")
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "config file {}: unknown key {key:?}; keys are the flag names of kinesis-relay --help (e.g. stream, listen, consumer-name)",
                    path.display()
                )
            })?;
        if matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let values = match value {
            toml::Value::Array(items) => items,
            other => vec![other],
        };
        for value in values {
            match value {
                toml::Value::Boolean(true) => args.push(format!("--{long}")),
                toml::Value::Boolean(false) => {}
                toml::Value::String(text) => args.push(format!("--{long}={text}")),
                toml::Value::Integer(n) => args.push(format!("--{long}={n}")),
                toml::Value::Float(n) => args.push(format!("--{long}={n}")),
                other => anyhow::bail!(
                    "config file {}: {key} = {other} is not a string, number, boolean or array of them",
                    path.display()
                ),
            }
        }
    }
    Ok(args)
}

impl Cli {
    /// Parses the command line, then fills what neither flags nor environment variables set
    /// from the `--config` file. Exits with clap's message on bad flags.
    pub fn load() -> anyhow::Result<Self> {
        Self::load_from(std::env::args_os().collect())
    }

    /// [`Cli::load`] from given arguments.
    pub fn load_from(args: Vec<OsString>) -> anyhow::Result<Self> {
        let matches = Self::command().get_matches_from(args.clone());
        let cli = Self::from_arg_matches(&matches)?;
        let Some(path) = cli.config.clone() else {
            return Ok(cli);
        };
        let mut all = args;
        all.extend(
            config_file_args(&path, &matches)?
                .into_iter()
                .map(OsString::from),
        );
        let matches = Self::command().try_get_matches_from(all).map_err(|err| {
            anyhow::anyhow!("{}: {}", path.display(), err.render().to_string().trim())
        })?;
        Ok(Self::from_arg_matches(&matches)?)
    }

    /// The resolved configuration, for the log at start, with secrets redacted (the
    /// upstream token; subscriber tokens live in the --auth-tokens file, never logged).
    pub fn describe(&self) -> String {
        let mut shown = self.clone();
        if shown.upstream_token.is_some() {
            shown.upstream_token = Some("<redacted>".to_owned());
        }
        format!("{shown:?}")
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.upstream_relay.is_some() && self.embedded {
            anyhow::bail!(
                "--upstream-relay and --embedded exclude each other: read from a relay or from the embedded emulator"
            );
        }
        if self.streams.is_empty() && !self.embedded && self.upstream_relay.is_none() {
            anyhow::bail!(
                "no stream to relay: pass --stream NAME (or --embedded to try it on the built-in emulator)"
            );
        }
        for stream in &self.streams {
            if stream.is_empty()
                || stream.len() > 128
                || !stream
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            {
                anyhow::bail!(
                    "--stream {stream:?} is not a Kinesis stream name (1-128 characters of a-z, A-Z, 0-9, '_', '.', '-')"
                );
            }
        }
        if self.embedded_retention.is_some() && !self.embedded {
            anyhow::bail!("--embedded-retention applies to the embedded emulator; add --embedded");
        }
        if self.max_connections == 0 || self.max_connections_per_address == 0 {
            anyhow::bail!("--max-connections and --max-connections-per-address must be at least 1");
        }
        if self.connection_setup_timeout.is_zero() {
            anyhow::bail!(
                "--connection-setup-timeout must be longer than 0 (e.g. 10s): a connection needs time to start its first call"
            );
        }
        if !(1024..=64 << 20).contains(&self.max_header_list_bytes) {
            anyhow::bail!("--max-header-list-bytes must be between 1KiB and 64MiB");
        }
        if self.demo_producer.is_some() && !self.embedded {
            anyhow::bail!(
                "--demo-producer writes to the embedded emulator; add --embedded (use kinesis-producer for a real stream)"
            );
        }
        if !(self.subscribe_rate > 0.0 && self.subscribe_rate.is_finite()) {
            anyhow::bail!("--subscribe-rate must be a positive number of calls per second");
        }
        if self.max_subscribers == 0
            || self.max_subscribers_per_token == 0
            || self.max_streams_per_connection == 0
        {
            anyhow::bail!(
                "--max-subscribers, --max-subscribers-per-token and --max-streams-per-connection must be at least 1"
            );
        }
        if self.consumer_name.is_empty() || self.consumer_name.len() > 128 {
            anyhow::bail!("--consumer-name must be 1-128 characters");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::OnLag;

    #[test]
    fn the_config_file_fills_what_flags_and_environment_leave() {
        let dir = std::env::temp_dir().join(format!("relay-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("relay.toml");
        std::fs::write(
            &path,
            "stream = [\"a\", \"b\"]\nlisten = \"127.0.0.1:6000\"\non_lag = \"skip\"\nderegister-on-exit = true\nring-max-bytes = \"1MiB\"\n",
        )
        .unwrap();
        let args = |extra: &[&str]| {
            let mut args: Vec<OsString> = vec![
                "kinesis-relay".into(),
                "--config".into(),
                path.clone().into(),
            ];
            args.extend(extra.iter().map(OsString::from));
            args
        };
        let cli = Cli::load_from(args(&[])).unwrap();
        assert_eq!(cli.streams, ["a", "b"]);
        assert_eq!(cli.listen.port(), 6000);
        assert!(cli.deregister_on_exit);
        assert_eq!(cli.ring_max_bytes, 1 << 20);
        assert!(matches!(cli.on_lag, OnLag::Skip));
        let cli = Cli::load_from(args(&["--listen", "127.0.0.1:7000", "--stream", "c"])).unwrap();
        assert_eq!(cli.listen.port(), 7000, "flags override the file");
        assert_eq!(cli.streams, ["c"]);

        std::fs::write(&path, "strem = [\"a\"]\n").unwrap();
        let err = Cli::load_from(args(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown key \"strem\""), "{err}");
        std::fs::write(&path, "listen = \"nowhere\"\n").unwrap();
        assert!(Cli::load_from(args(&[])).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn validates_what_clap_cannot() {
        let cli = Cli::parse_from(["kinesis-relay"]);
        assert!(cli.validate().unwrap_err().to_string().contains("--stream"));
        let cli = Cli::parse_from(["kinesis-relay", "--stream", "bad name"]);
        assert!(cli.validate().is_err());
        let cli = Cli::parse_from(["kinesis-relay", "--stream", "a,b", "--demo-producer", "5"]);
        assert_eq!(cli.streams, ["a", "b"]);
        assert!(
            cli.validate()
                .unwrap_err()
                .to_string()
                .contains("--embedded")
        );
        let cli = Cli::parse_from(["kinesis-relay", "--embedded"]);
        assert!(cli.validate().is_ok());
    }
}
