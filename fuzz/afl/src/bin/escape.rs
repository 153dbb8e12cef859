//! AFL++ harness of the `escape` fuzz target.

fn main() {
    afl::fuzz!(|data: &[u8]| edge_fuzz::targets::escape::check(data));
}
