//! Compiles `proto/` with protox (pure Rust, so no system `protoc` is needed), generates the
//! tonic/prost code from the descriptors, and writes the descriptor set that server reflection
//! serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // protox::compile includes imports (google/protobuf/timestamp.proto) and source info, so
    // reflection clients see the comments of every message and field.
    let fds = protox::compile(["kinesis_relay/v1/relay.proto"], ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("kinesis_relay_v1_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // `bytes` fields as `bytes::Bytes`: record data is shared, not copied.
        .bytes(".")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
