//! The kinesis-producer command: all logic is in the library.

fn main() -> std::process::ExitCode {
    match kinesis_producer::run() {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("kinesis-producer: error: {err:#}");
            kinesis_producer::exit_code::ExitCode::Failure.into()
        }
    }
}
