//! KPL deaggregation reads whatever producers wrote to the stream: it must never panic, and
//! what it unpacks must pack and unpack to the same records.
#![no_main]

use kinesis_relay_api::kpl;
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let mut record = kpl::MAGIC.to_vec();
    record.extend_from_slice(body);
    if mode & 1 == 1 {
        // A correct digest, so the fuzzer explores the protobuf decoding behind it.
        record.extend_from_slice(&Md5::digest(body));
    }
    if let Ok(users) = kpl::deaggregate(&record) {
        if !users.is_empty() {
            assert_eq!(kpl::deaggregate(&kpl::aggregate(&users)), Ok(users));
        }
    }
});
