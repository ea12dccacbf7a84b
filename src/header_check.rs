//! Keeps the committed `include/blkio.h` equal to what cbindgen generates from
//! the current sources (build.rs writes it to `OUT_DIR`), so the installed
//! header never drifts from the exported functions and structs.

use std::fs;
use std::path::Path;

const REGENERATE: &str = "regenerate it with `BLKIO_UPDATE_HEADER=1 cargo build` and commit it";

#[test]
fn committed_header_matches_cbindgen_output() {
    let generated = Path::new(env!("OUT_DIR")).join("blkio.h");
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/blkio.h");
    let generated = fs::read_to_string(&generated)
        .unwrap_or_else(|e| panic!("reading {}: {e}", generated.display()));
    let committed = fs::read_to_string(&committed)
        .unwrap_or_else(|e| panic!("reading {}: {e} ({REGENERATE})", committed.display()));
    if generated == committed {
        return;
    }
    let mut lines = generated.lines().zip(committed.lines()).enumerate();
    let detail = match lines.find(|(_, (g, c))| g != c) {
        Some((n, (g, c))) => format!(
            "first difference at line {}:\n  generated: {g}\n  committed: {c}",
            n + 1
        ),
        None => format!(
            "one is a prefix of the other ({} vs {} lines)",
            generated.lines().count(),
            committed.lines().count()
        ),
    };
    panic!("include/blkio.h differs from the cbindgen output; {REGENERATE}.\n{detail}");
}
