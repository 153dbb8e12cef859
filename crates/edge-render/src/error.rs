//! Errors of rendering: each names the template, the line or the channel the operator must look at.

use std::path::PathBuf;

/// Everything rendering can fail at.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template uses a variable that has no value.
    #[error("{template}:{line}: undefined variable {name}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    UndefinedVariable {
        /// The template (its name, or the path of an operator's template).
        template: String,
        /// 1-based line of the template that uses the variable.
        line: usize,
        /// The variable.
        name: String,
        /// Why it has no value, when known (e.g. its stack default needs another variable).
        hint: Option<String>,
    },
    /// A template does not parse.
    #[error("{template}:{line}: template syntax error: {message}")]
    Syntax {
        /// The template.
        template: String,
        /// 1-based line of the error.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value cannot be put into the template's format without changing the
    /// file's structure, or is not the number or boolean the template asks for.
    #[error(
        "{template}:{line}: {}{} {message}",
        variable.as_deref().unwrap_or("the value"),
        hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default()
    )]
    Value {
        /// The template.
        template: String,
        /// 1-based line of the placeholder.
        line: usize,
        /// The variable (or variables) in the value, when the placeholder names one.
        variable: Option<String>,
        /// Where the value came from, when that is not plain (a stack default built from another variable).
        hint: Option<String>,
        /// What is wrong with the value, a predicate after its name (`starts with '+', ...`).
        message: String,
    },
    /// Rendering failed for another reason (a filter, a loop over a non-list...).
    #[error("{template}: {message}")]
    Render {
        /// The template.
        template: String,
        /// What failed.
        message: String,
    },
    /// No template of that name in the stack.
    #[error("unknown template {name:?}; the stack has: {}", known.join(", "))]
    UnknownTemplate {
        /// The name asked for.
        name: String,
        /// The stack's template names.
        known: Vec<String>,
    },
    /// Variables every render needs are not set.
    #[error("missing required variable{} {}: set {} in the fixture, the environment or with --set", if names.len() == 1 { "" } else { "s" }, names.join(", "), if names.len() == 1 { "it" } else { "them" })]
    MissingVariables {
        /// The unset variables.
        names: Vec<String>,
    },
    /// A channel's credentials are absent.
    #[error(
        "channel {channel} is not configured: missing {}; give them in node-config.json (edge install --manual-config), the environment or with --set",
        missing.join(", ")
    )]
    MissingCredentials {
        /// The channel.
        channel: String,
        /// The unset variables.
        missing: Vec<String>,
    },
    /// A required channel failed to render: the whole render fails.
    #[error("required channel {channel} failed to render: {reason}")]
    RequiredChannel {
        /// The channel.
        channel: String,
        /// Why.
        reason: String,
    },
    /// A string of the stack manifest (a service field, a stack default) does not resolve.
    #[error("stack manifest, {location}: {message}")]
    Manifest {
        /// Which field, e.g. `service naive, image`.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A variable source (a fixture, a node config) cannot be read or parsed.
    #[error("{message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the file.
        message: String,
    },
    /// A variable's value is not allowed where the stack uses it (an admin address off loopback).
    #[error("{0}")]
    Unsafe(String),
    /// Writing a rendered file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: edge_core::CoreError,
    },
}
