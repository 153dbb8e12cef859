//! AFL++ harness of the `translate` fuzz target.

fn main() {
    afl::fuzz!(|data: &[u8]| edge_fuzz::targets::translate::check(data));
}
