#![no_main]
//! Fuzz target `core_snapshot`: see `tests/fuzz_harness/mod.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| titan_fuzz::harness::core_snapshot(data));
