#![no_main]
//! See `switchboard::fuzzing::negotiate`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::negotiate(data));
