//! Docker engine driver, reconciling deployer and health prober for edge channels.

pub mod image;
