//! Fuzzes the whole crate API: `cargo fuzz run api --sanitizer none` (stable Rust), from the
//! repository root. The harness is shared with the corpus replay test, tests/fuzz_corpus.rs.
#![no_main]

#[path = "../../tests/support/fuzz_harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::fuzz_one(data));
