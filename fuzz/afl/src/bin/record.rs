//! AFL++ harness of the `record` fuzz target.

fn main() {
    afl::fuzz!(|data: &[u8]| edge_fuzz::targets::record::check(data));
}
