#![no_main]
//! See `switchboard_protocol::fuzzing::hub_json`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_protocol::fuzzing::hub_json(data));
