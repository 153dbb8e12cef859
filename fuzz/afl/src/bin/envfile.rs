//! AFL++ harness of the `envfile` fuzz target.

fn main() {
    afl::fuzz!(|data: &[u8]| edge_fuzz::targets::envfile::check(data));
}
