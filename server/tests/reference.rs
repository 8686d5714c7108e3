//! The committed flag reference matches the clap definitions.

use std::path::PathBuf;

#[test]
fn the_flag_reference_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/reference/kinesis-relay.md");
    let generated = kinesis_relay::reference::flags_markdown();
    if std::env::var_os("KINESIS_RELAY_UPDATE_REFERENCE").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/reference/kinesis-relay.md is stale: run KINESIS_RELAY_UPDATE_REFERENCE=1 cargo test -p kinesis-relay --test reference, and commit it"
    );
}
