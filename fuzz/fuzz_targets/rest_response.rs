#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scalper::fuzzing::rest_response(data));
