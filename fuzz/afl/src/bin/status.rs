//! AFL++ harness of the `status` fuzz target.

fn main() {
    afl::fuzz!(|data: &[u8]| edge_fuzz::targets::status::check(data));
}
