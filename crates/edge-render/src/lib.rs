//! Template renderer for edge stacks: tera with legacy mustache blocks and per-format escaping.
