#![no_main]
//! Fuzz target `log_datagram`: see `tests/fuzz_harness/mod.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| titan_fuzz::harness::log_datagram(data));
