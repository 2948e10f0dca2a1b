//! The fuzz targets' shared harness: `tests/fuzz_harness/mod.rs`, compiled here as well.

#[path = "../../tests/fuzz_harness/mod.rs"]
pub mod harness;
