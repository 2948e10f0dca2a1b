#![no_main]
//! Fuzz target `messages`: see `tests/fuzz_harness/mod.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| titan_fuzz::harness::messages(data));
