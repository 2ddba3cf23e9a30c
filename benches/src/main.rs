//! Benchmarks (placeholder until the side-by-side runner lands).
fn main() {}
