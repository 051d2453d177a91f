//! Replays the committed fuzz corpus (fuzz/corpus/api) through the fuzz harness, so every input
//! the fuzzer ever kept is checked by `cargo test` too.

#[path = "support/fuzz_harness.rs"]
mod harness;

#[test]
fn the_fuzz_corpus_passes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/api");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/api is committed") {
        let path = entry.expect("a readable corpus entry").path();
        let data = std::fs::read(&path).expect("a readable corpus file");
        harness::fuzz_one(&data);
        count += 1;
    }
    assert!(
        count >= 50,
        "only {count} corpus inputs in {}",
        dir.display()
    );
}
