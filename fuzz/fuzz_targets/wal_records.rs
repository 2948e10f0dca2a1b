#![no_main]
//! Fuzz target `wal_records`: see `tests/fuzz_harness/mod.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| titan_fuzz::harness::wal_records(data));
