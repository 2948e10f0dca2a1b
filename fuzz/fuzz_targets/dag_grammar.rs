#![no_main]
//! Fuzz target `dag_grammar`: see `tests/fuzz_harness/mod.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| titan_fuzz::harness::dag_grammar(data));
