//! `edge schema`: the JSON Schema of the stack manifest format.

use crate::ExitStatus;

pub(crate) fn run() -> anyhow::Result<ExitStatus> {
    outln!("{}", serde_json::to_string_pretty(&edge_core::Stack::json_schema())?);
    Ok(ExitStatus::Success)
}
