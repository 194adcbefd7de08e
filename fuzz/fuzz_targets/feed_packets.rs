#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scalper::fuzzing::feed_packets(data));
