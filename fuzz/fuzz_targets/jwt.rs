#![no_main]
//! See `switchboard_protocol::fuzzing::jwt`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_protocol::fuzzing::jwt(data));
