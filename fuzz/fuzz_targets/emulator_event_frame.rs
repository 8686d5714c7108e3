//! Event-stream frames the emulator writes decode, with the SDK's decoder, to the payload
//! that was written, whatever it holds.
#![no_main]

use kinesis_emulator::fuzzing::event_frame_round_trips;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(event_frame_round_trips(data));
});
