//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! fuzz targets' own bodies on stable Rust, so every input the fuzzer kept
//! is checked by `make test` without nightly or libFuzzer. Running the
//! fuzzer itself: `make fuzz` (RELIABILITY.md, "Fuzzing").

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Runs every corpus file of `target`; fails naming each input whose
/// property failed (its panic message is printed above by the panic hook).
fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let input = std::fs::read(path).expect("a corpus file");
            catch_unwind(AssertUnwindSafe(|| body(&input))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn batch_arena_corpus() {
    replay("batch_arena", harness::batch_arena);
}

#[test]
fn csv_cells_corpus() {
    replay("csv_cells", harness::csv_cells);
}

#[test]
fn xlsx_cells_corpus() {
    replay("xlsx_cells", harness::xlsx_cells);
}

#[cfg(feature = "server")]
#[test]
fn grpc_batch_corpus() {
    replay("grpc_batch", harness::grpc_batch);
}
