#![no_main]
//! See `switchboard::fuzzing::rest_body`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::rest_body(data));
