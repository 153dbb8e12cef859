//! AFL++ harness of the `stack` fuzz target.

fn main() {
    afl::fuzz!(|data: &[u8]| edge_fuzz::targets::stack::check(data));
}
