//! The flag reference (`docs/reference/kinesis-relay.md`), generated from the clap
//! definitions in [`crate::config`] so that it never drifts from them.
//! `server/tests/reference.rs` fails when the committed file is stale; run it with
//! `KINESIS_RELAY_UPDATE_REFERENCE=1` to write it again.

use clap::CommandFactory;

use crate::config::Cli;

/// The reference page: one row per flag, with its environment variable, default and help.
pub fn flags_markdown() -> String {
    let command = Cli::command();
    let host_default = crate::ingest::default_consumer_name();
    let mut out = String::from(
        "# kinesis-relay flags\n\n\
         Generated from the clap definitions in `server/src/config/` by \
         `server/tests/reference.rs` (`KINESIS_RELAY_UPDATE_REFERENCE=1 cargo test -p \
         kinesis-relay --test reference` writes it again); do not edit by hand. Every flag \
         can also be set by its environment variable or, by its long name, in the \
         `--config` TOML file.\n\n\
         | flag | environment variable | default | meaning |\n\
         | --- | --- | --- | --- |\n",
    );
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if arg.is_hide_set() {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        let flag = match (takes_value, arg.get_value_names()) {
            (true, Some(names)) if !names.is_empty() => format!("--{long} <{}>", names[0]),
            (true, _) => format!("--{long} <{}>", long.to_uppercase().replace('-', "_")),
            (false, _) => format!("--{long}"),
        };
        let env = arg
            .get_env()
            .map(|env| format!("`{}`", env.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() || !takes_value {
            String::new()
        } else {
            // The consumer name's default is this host's: the page says what it is made of.
            format!("`{}`", defaults.join(",")).replace(&host_default, "kinesis-relay-<host>")
        };
        let mut help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|help| help.to_string())
            .unwrap_or_default()
            .replace("\n\n", " ")
            .replace('\n', " ")
            .replace('|', "\\|");
        let choices: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|value| !value.is_hide_set())
            .map(|value| format!("`{}`", value.get_name()))
            .collect();
        if takes_value && !choices.is_empty() {
            help.push_str(&format!(" One of {}.", choices.join(", ")));
        }
        out.push_str(&format!("| `{flag}` | {env} | {default} | {help} |\n"));
    }
    out
}
