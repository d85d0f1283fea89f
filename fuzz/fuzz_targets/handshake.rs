#![no_main]
//! See `switchboard_protocol::fuzzing::handshake`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_protocol::fuzzing::handshake(data));
