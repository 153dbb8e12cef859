//! One module per fuzz target, each with `check(data)` and `seeds(root)`.

pub mod envfile;
pub mod escape;
pub mod metrics;
pub mod record;
pub mod stack;
pub mod status;
pub mod translate;
