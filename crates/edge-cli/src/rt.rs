//! The async runtime the commands that talk to the Docker engine or HTTP endpoints run on.

use std::future::Future;

use anyhow::Context;

/// Runs `future` to completion on a fresh multi-threaded runtime.
pub(crate) fn block_on<F: Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(future))
}
