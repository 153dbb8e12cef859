//! AFL++ harness of the `metrics` fuzz target.

fn main() {
    afl::fuzz!(|data: &[u8]| edge_fuzz::targets::metrics::check(data));
}
