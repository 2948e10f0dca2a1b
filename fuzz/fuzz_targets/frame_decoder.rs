#![no_main]
//! Fuzz target `frame_decoder`: see `tests/fuzz_harness/mod.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| titan_fuzz::harness::frame_decoder(data));
