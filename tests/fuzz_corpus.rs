//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz targets'
//! invariants on the stable toolchain, so CI checks every input the fuzzers kept.

use std::path::Path;

use ringwsgi::http::fuzz_checks::{chunked_input, parse_head_input, proxy_header_input};

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} breaks an invariant",
            path.display()
        );
        count += 1;
    }
    assert!(count > 10, "{target}: only {count} corpus files");
}

#[test]
fn parse_head_corpus() {
    replay("parse_head", parse_head_input);
}

#[test]
fn chunked_corpus() {
    replay("chunked", chunked_input);
}

#[test]
fn proxy_header_corpus() {
    replay("proxy_header", proxy_header_input);
}
