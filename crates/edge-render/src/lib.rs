//! Template renderer for edge stacks: tera with legacy mustache blocks and per-format escaping.
//!
//! A [`Renderer`] renders the templates of a [`edge_core::StackBundle`] from
//! layered [`Variables`]. Every `{{ value }}` is escaped for the lexical
//! context it lands in (a JSON string, a YAML scalar, a Caddyfile token, a
//! systemd word, a shell word), so no value can break a file or add
//! structure, and a value Caddy or systemd would read as syntax where it
//! stands (a site address that is not `[scheme://]host[:port]`, `import`, a
//! `+` before a command) is refused. A value keeps the type its position
//! has: in JSON and YAML it is a string, whatever it looks like, unless the
//! template asks for a number or a boolean (`{{ PORT | int }}`, `| float`,
//! `| bool`). Operators' legacy templates (`{{VAR}}`, `{{#if VAR}} … {{/if}}`)
//! render too. Undefined variables and refused values are errors naming the
//! variable and the template line, and nothing is written until the whole
//! set has rendered.
//!
//! edge-render knows nothing of Docker or the network; tera stays inside it
//! (no tera type in its API).
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use edge_core::{ChannelState, StackBundle};
//! use edge_render::{Renderer, Source, Variables};
//!
//! let bundle = StackBundle::partner_edge();
//! let vars = Variables::new(&bundle.stack.variables).with_layer(
//!     Source::Fixture,
//!     [("PARTNER_ID".to_owned(), "acme".to_owned()), ("PARTNER_DOMAIN".to_owned(), "edge.example.com".to_owned())],
//! );
//! let renderer = Renderer::new(&bundle);
//! let caddyfile = renderer.render_template("caddy", None, &vars).unwrap();
//! assert!(caddyfile.contains("edge.example.com"));
//!
//! // The whole stack needs the required channel's credentials.
//! let err = renderer.render_stack(&vars, &BTreeMap::new()).unwrap_err();
//! assert!(err.to_string().starts_with("channel xray is not configured: missing REALITY_SERVER"));
//! ```
#![deny(missing_docs)]

mod error;
pub mod escape;
mod renderer;
mod sources;
mod translate;
mod variables;

pub use error::RenderError;
pub use renderer::{ChannelOutcome, RenderedFile, RenderedStack, Renderer};
pub use sources::{NodeConfigSource, VariableSources, parse_assignment};
pub use variables::{Source, Variables, parse_fixture, read_secrets};
