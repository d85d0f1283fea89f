#![no_main]
//! See `switchboard_protocol::fuzzing::service_protocol`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_protocol::fuzzing::service_protocol(data));
