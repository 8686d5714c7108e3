//! `archive`: killed mid-file and restarted, the files hold every record exactly once.

mod common;

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use common::{Setup, eventually, finish, numbered, signal};
use serde_json::Value;

/// (complete files, partial files) in `dir`.
fn listing(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut complete = Vec::new();
    let mut partial = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".partial") {
            partial.push(path);
        } else if name.ends_with(".ndjson") {
            complete.push(path);
        }
    }
    complete.sort();
    (complete, partial)
}

/// Record data in `files`, with how often each appears.
fn records_in(files: &[PathBuf]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for file in files {
        // A partial file may end inside a line while it is written; skip what does not parse.
        for line in fs::read_to_string(file).unwrap_or_default().lines() {
            if let Ok(value) = serde_json::from_str::<Value>(line) {
                let data = value["data"].as_str().unwrap().to_owned();
                *counts.entry(data).or_insert(0) += 1;
            }
        }
    }
    counts
}

#[tokio::test]
async fn killed_mid_file_and_restarted_the_archive_holds_every_record_once() {
    let setup = Setup::start(&[("client-archive", 2)]).await;
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap().to_owned();
    let args = [
        "archive",
        "--dir",
        &dir_arg,
        "--rotate-size",
        "2KiB",
        "--rotate-interval",
        "1h",
        "--from",
        "earliest",
    ];
    let first = setup.client(&args).spawn().unwrap();
    // Batches of a few hundred bytes each: several complete files.
    let mut expected = Vec::new();
    for wave in 0..6 {
        let records = numbered(&format!("w{wave}"), 12, 5);
        setup.put("client-archive", &records).await;
        expected.extend(records);
    }
    eventually("two complete files", || async {
        listing(dir.path()).0.len() >= 2
    })
    .await;
    // A small batch that stays in the unfinished file, then the crash.
    let small = numbered("small", 2, 1);
    setup.put("client-archive", &small).await;
    expected.extend(small);
    eventually("the small batch in a partial file", || async {
        let (_, partial) = listing(dir.path());
        records_in(&partial).contains_key("small-1")
    })
    .await;
    let mut first = first;
    first.kill().await.unwrap();
    let (complete_before, partial_before) = listing(dir.path());
    assert_eq!(partial_before.len(), 1, "killed mid-file");

    let second = setup.client(&args).spawn().unwrap();
    let records = numbered("after", 30, 5);
    setup.put("client-archive", &records).await;
    expected.extend(records);
    eventually("every record archived", || async {
        let (complete, partial) = listing(dir.path());
        let held = records_in(&[complete, partial].concat());
        expected
            .iter()
            .all(|(_, data)| held.contains_key(std::str::from_utf8(data).unwrap()))
    })
    .await;
    signal(&second, "TERM").await;
    let (code, stderr) = finish(second).await;
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("left unfinished"), "{stderr}");

    let (complete, partial) = listing(dir.path());
    assert!(partial.is_empty(), "no half-written file: {partial:?}");
    for file in &complete_before {
        assert!(complete.contains(file), "complete files are kept");
    }
    let held = records_in(&complete);
    let repeated: Vec<_> = held.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "repeated: {repeated:?}");
    assert_eq!(held.len(), expected.len(), "every record once");
    for file in &complete {
        let cursor = file.with_extension("cursor");
        assert!(cursor.exists(), "{} has its cursor", file.display());
    }
    setup.shutdown().await;
}
