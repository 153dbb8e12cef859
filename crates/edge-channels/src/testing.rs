//! Test fixtures shared by the unit tests of the planner and the deployer.

use std::collections::BTreeMap;

use crate::engine::{ContainerSpec, LABEL_STACK, NetworkAttachment};

/// A minimal spec of stack `s` on network `net`.
pub(crate) fn spec(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: image.into(),
        command: vec![],
        env: BTreeMap::new(),
        ports: vec![],
        mounts: vec![],
        network: NetworkAttachment::Stack { name: "net".into(), aliases: vec![] },
        user: None,
        healthcheck: None,
        restart: "unless-stopped".into(),
        logging: Default::default(),
        labels: BTreeMap::from([(LABEL_STACK.into(), "s".into())]),
    }
}
