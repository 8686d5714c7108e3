//! The cursor decoder takes text from any client: it must never panic, and a cursor it
//! accepts must survive a round trip.
#![no_main]

use kinesis_relay_api::cursor::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(cursor) = Cursor::decode(&text) {
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }
});
