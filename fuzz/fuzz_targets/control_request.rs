#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scalper::fuzzing::control_request(data));
