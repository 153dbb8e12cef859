//! The deploy planner: desired containers (with spec hashes) against the containers the
//! engine has, to create / recreate / start / keep / remove actions.
//!
//! Reconcile, never recreate blindly: a container whose name, spec hash and image id all
//! match is kept as it is, whoever started it. A container edge did not create (no spec-hash
//! label) is never taken over: planning refuses it ([`DeployError::NotCreatedByEdge`]).
//!
//! Spec hashes are keyed with the host's [`SpecHashKey`], which the caller passes in: the
//! planner computes each desired spec's hash, compares it with the container's label and
//! puts it on the spec the plan will create, so the engine only copies labels.
//!
//! A recreation never loses data: the new container inherits the anonymous volumes of the old
//! one, as Docker Compose does on recreate, and no volume is removed with the old container.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use edge_core::SpecHashKey;

use crate::DeployError;
use crate::engine::{ContainerInfo, ContainerSpec, ContainerStatus, LABEL_CHANNEL, LABEL_SPEC_HASH, Mount};

/// A container the stack wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Service name (Compose's).
    pub service: String,
    /// The container spec.
    pub spec: ContainerSpec,
    /// Services that must be healthy before this one starts.
    pub depends_on: Vec<String>,
}

impl Desired {
    /// A desired container.
    pub fn new(service: impl Into<String>, spec: ContainerSpec, depends_on: Vec<String>) -> Self {
        Self { service: service.into(), spec, depends_on }
    }

    /// Its container name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Its spec hash under `key` ([`ContainerSpec::spec_hash`]).
    pub fn hash(&self, key: &SpecHashKey) -> String {
        self.spec.spec_hash(key)
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// No container has the name: create and start it.
    Create {
        /// What to create.
        desired: Desired,
    },
    /// The container differs from the spec: remove it (keeping its volumes) and create it anew.
    Recreate {
        /// What to create.
        desired: Desired,
        /// Id of the container replaced.
        id: String,
        /// What differs.
        reason: String,
        /// The old container's anonymous volumes at paths the spec does not mount: the new
        /// container mounts them at the same paths, so their data carries over.
        inherited: Vec<Mount>,
    },
    /// The container matches the spec but is not running: start it.
    Start {
        /// The spec it matches.
        desired: Desired,
        /// Its id.
        id: String,
    },
    /// The container matches the spec and runs: leave it alone.
    Keep {
        /// The spec it matches.
        desired: Desired,
        /// Its id.
        id: String,
    },
    /// The stack no longer wants the container: remove it.
    Remove {
        /// Container name.
        name: String,
        /// Its id.
        id: String,
        /// Why it goes.
        reason: String,
    },
}

/// The kind of an [`Action`], for summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// See [`Action::Create`].
    Create,
    /// See [`Action::Recreate`].
    Recreate,
    /// See [`Action::Start`].
    Start,
    /// See [`Action::Keep`].
    Keep,
    /// See [`Action::Remove`].
    Remove,
    /// A kept container whose config changed takes it in place (`reload` in the manifest):
    /// install decides this after the plan, which only says keep.
    Reload,
}

impl ActionKind {
    /// The verb, e.g. `recreate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Recreate => "recreate",
            Self::Start => "start",
            Self::Keep => "keep",
            Self::Remove => "remove",
            Self::Reload => "reload",
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Action {
    /// Its kind.
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::Create { .. } => ActionKind::Create,
            Self::Recreate { .. } => ActionKind::Recreate,
            Self::Start { .. } => ActionKind::Start,
            Self::Keep { .. } => ActionKind::Keep,
            Self::Remove { .. } => ActionKind::Remove,
        }
    }

    /// The container it is about.
    pub fn container(&self) -> &str {
        match self {
            Self::Create { desired } | Self::Recreate { desired, .. } => desired.name(),
            Self::Start { desired, .. } | Self::Keep { desired, .. } => desired.name(),
            Self::Remove { name, .. } => name,
        }
    }

    /// The desired container, unless the action removes one.
    pub fn desired(&self) -> Option<&Desired> {
        match self {
            Self::Create { desired }
            | Self::Recreate { desired, .. }
            | Self::Start { desired, .. }
            | Self::Keep { desired, .. } => Some(desired),
            Self::Remove { .. } => None,
        }
    }

    /// Why, when it is not obvious.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Recreate { reason, .. } | Self::Remove { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// A flat, serialisable view.
    pub fn entry(&self) -> PlanEntry {
        PlanEntry {
            action: self.kind(),
            container: self.container().to_owned(),
            service: self.desired().map(|d| d.service.clone()),
            image: self.desired().map(|d| d.spec.image.clone()),
            reason: self.reason().map(str::to_owned),
        }
    }
}

/// One line of a printed plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanEntry {
    /// What happens.
    pub action: ActionKind,
    /// To which container.
    pub container: String,
    /// Its service, unless removed.
    pub service: Option<String>,
    /// Its image, unless removed.
    pub image: Option<String>,
    /// Why, for recreate and remove.
    pub reason: Option<String>,
}

/// What deploying a stack takes: removals first, then the desired containers in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The steps.
    pub actions: Vec<Action>,
}

impl Plan {
    /// How many actions of each kind.
    pub fn counts(&self) -> BTreeMap<ActionKind, usize> {
        let mut counts = BTreeMap::new();
        for a in &self.actions {
            *counts.entry(a.kind()).or_insert(0) += 1;
        }
        counts
    }

    /// Whether applying it changes nothing.
    pub fn is_noop(&self) -> bool {
        self.actions.iter().all(|a| a.kind() == ActionKind::Keep)
    }

    /// The flat view of every action.
    pub fn entries(&self) -> Vec<PlanEntry> {
        self.actions.iter().map(Action::entry).collect()
    }

    /// The action about a container.
    pub fn action(&self, container: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.container() == container)
    }
}

/// Compares `desired` with `actual` (the stack's containers and any container holding a desired
/// name). `image_ids` maps image references to the ids the engine has now; a container
/// running another id of its reference is recreated.
///
/// Spec hashes are keyed with `key`, the host's: a container whose label was made under
/// another key (or unkeyed, by an older edge) differs and is recreated once. Every desired
/// spec in the plan carries its [`LABEL_SPEC_HASH`] label.
///
/// A container holding a desired name but labelled for another stack is a
/// [`DeployError::NameConflict`], and one without a spec-hash label (edge did not create it)
/// is [`DeployError::NotCreatedByEdge`]: neither is ever taken over.
pub fn plan(
    stack: &str,
    desired: Vec<Desired>,
    actual: &[ContainerInfo],
    image_ids: &BTreeMap<String, String>,
    key: &SpecHashKey,
) -> Result<Plan, DeployError> {
    let wanted: BTreeSet<&str> = desired.iter().map(Desired::name).collect();
    let mut actions = Vec::new();
    for c in actual {
        if wanted.contains(c.name.as_str()) || c.stack() != Some(stack) {
            continue;
        }
        let reason = match c.labels.get(LABEL_CHANNEL) {
            Some(channel) => format!("channel {channel} is not active"),
            None => "no longer in the stack".to_owned(),
        };
        actions.push(Action::Remove { name: c.name.clone(), id: c.id.clone(), reason });
    }
    for mut d in desired {
        let hash = d.hash(key);
        d.spec.labels.insert(LABEL_SPEC_HASH.to_owned(), hash.clone());
        let Some(c) = actual.iter().find(|c| c.name == d.name()) else {
            actions.push(Action::Create { desired: d });
            continue;
        };
        if let Some(owner) = c.stack().filter(|owner| *owner != stack) {
            return Err(DeployError::NameConflict {
                name: c.name.clone(),
                owner: owner.to_owned(),
                stack: stack.to_owned(),
            });
        }
        let Some(label) = c.spec_hash() else {
            return Err(DeployError::NotCreatedByEdge { name: c.name.clone() });
        };
        let reason = match label {
            l if l != hash => Some("spec changed".to_owned()),
            _ => match image_ids.get(&d.spec.image) {
                Some(id) if *id != c.image_id => Some(format!("image {} was rebuilt", d.spec.image)),
                _ if matches!(c.status, ContainerStatus::Dead | ContainerStatus::Removing) => {
                    Some(format!("container is {}", c.status))
                }
                _ => None,
            },
        };
        let id = c.id.clone();
        actions.push(match reason {
            Some(reason) => {
                let inherited = inherited_volumes(c, &d.spec);
                Action::Recreate { desired: d, id, reason, inherited }
            }
            None if matches!(c.status, ContainerStatus::Created | ContainerStatus::Exited) => {
                Action::Start { desired: d, id }
            }
            None => Action::Keep { desired: d, id },
        });
    }
    Ok(Plan { actions })
}

/// The anonymous volumes of `old` that a container made from `spec` inherits: those at paths
/// `spec` does not mount (a path it mounts gets what the spec says).
fn inherited_volumes(old: &ContainerInfo, spec: &ContainerSpec) -> Vec<Mount> {
    let taken: BTreeSet<&str> = spec.mounts.iter().map(Mount::clean_target).collect();
    old.anonymous_volumes().filter(|m| !taken.contains(m.clean_target())).cloned().collect()
}

/// Orders desired services into waves: each wave depends only on earlier ones.
/// Dependencies on services outside `services` are ignored (they are not being deployed).
pub fn waves<'a>(services: &[&'a Desired]) -> Result<Vec<Vec<&'a Desired>>, DeployError> {
    let names: BTreeSet<&str> = services.iter().map(|d| d.service.as_str()).collect();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut left: Vec<&Desired> = services.to_vec();
    let mut out = Vec::new();
    while !left.is_empty() {
        let (ready, rest): (Vec<&Desired>, Vec<&Desired>) = left.into_iter().partition(|d| {
            d.depends_on.iter().all(|dep| !names.contains(dep.as_str()) || placed.contains(dep.as_str()))
        });
        if ready.is_empty() {
            let services = rest.iter().map(|d| d.service.as_str()).collect::<Vec<_>>().join(", ");
            return Err(DeployError::DependencyCycle { services });
        }
        placed.extend(ready.iter().map(|d| d.service.as_str()));
        out.push(ready);
        left = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{HealthStatus, LABEL_STACK, MountKind};
    use crate::testing::{spec, spec_key};

    fn desired(name: &str) -> Desired {
        Desired::new(name, spec(name, "img:1"), vec![])
    }

    fn running(d: &Desired, image_id: &str) -> ContainerInfo {
        let mut labels = d.spec.labels.clone();
        labels.insert(LABEL_SPEC_HASH.into(), d.hash(&spec_key()));
        ContainerInfo {
            id: format!("id-{}", d.name()),
            name: d.name().into(),
            image: d.spec.image.clone(),
            image_id: image_id.into(),
            labels,
            status: ContainerStatus::Running,
            health: HealthStatus::Healthy,
            last_health_output: None,
            exit_code: None,
            restart_count: 0,
            mounts: d.spec.mounts.clone(),
        }
    }

    fn mount(source: &str, target: &str, kind: MountKind) -> Mount {
        Mount { source: source.into(), target: target.into(), read_only: false, kind }
    }

    /// Plans and returns `(kind, container, reason)` per action.
    fn check(desired: Vec<Desired>, actual: Vec<ContainerInfo>, expected: &[(ActionKind, &str, Option<&str>)]) {
        let images = BTreeMap::from([("img:1".to_owned(), "sha256:1".to_owned())]);
        let plan = plan("s", desired, &actual, &images, &spec_key()).unwrap();
        let got: Vec<_> = plan.actions.iter().map(|a| (a.kind(), a.container(), a.reason())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn fresh_install_creates_everything() {
        use ActionKind::*;
        check(vec![desired("a"), desired("b")], vec![], &[(Create, "a", None), (Create, "b", None)]);
    }

    #[test]
    fn unchanged_stack_keeps_everything() {
        use ActionKind::*;
        let (a, b) = (desired("a"), desired("b"));
        let actual = vec![running(&a, "sha256:1"), running(&b, "sha256:1")];
        check(vec![a, b], actual, &[(Keep, "a", None), (Keep, "b", None)]);
    }

    #[test]
    fn changed_spec_recreates_only_that_container() {
        use ActionKind::*;
        let (a, b) = (desired("a"), desired("b"));
        let actual = vec![running(&a, "sha256:1"), running(&b, "sha256:1")];
        let mut b2 = b.clone();
        b2.spec.mounts.push(crate::Mount {
            source: "/c/b.json".into(),
            target: "/b.json".into(),
            read_only: true,
            kind: crate::MountKind::File { digest: "new".into() },
        });
        check(vec![a, b2], actual, &[(Keep, "a", None), (Recreate, "b", Some("spec changed"))]);
    }

    #[test]
    fn the_planned_specs_carry_their_keyed_hash_label() {
        let (a, b) = (desired("a"), desired("b"));
        let images = BTreeMap::from([("img:1".to_owned(), "sha256:1".to_owned())]);
        let actual = vec![running(&a, "sha256:1")];
        let plan = plan("s", vec![a.clone(), b.clone()], &actual, &images, &spec_key()).unwrap();
        for (action, d) in plan.actions.iter().zip([&a, &b]) {
            let labels = &action.desired().unwrap().spec.labels;
            assert_eq!(labels[LABEL_SPEC_HASH], d.hash(&spec_key()), "{}", d.name());
        }
    }

    #[test]
    fn a_label_made_under_another_key_or_unkeyed_is_a_changed_spec() {
        use ActionKind::*;
        let a = desired("a");
        let other_key = SpecHashKey::from_bytes([8; 32]);
        let mut unkeyed = running(&a, "sha256:1");
        // The label an edge before keyed hashes wrote: the plain sha256 of the spec.
        let plain = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(serde_json::to_vec(&a.spec).unwrap()))
        };
        unkeyed.labels.insert(LABEL_SPEC_HASH.into(), plain);
        let mut another = running(&a, "sha256:1");
        another.labels.insert(LABEL_SPEC_HASH.into(), a.hash(&other_key));
        for actual in [unkeyed, another] {
            check(vec![a.clone()], vec![actual], &[(Recreate, "a", Some("spec changed"))]);
        }
        // Relabelled under the host's key by that recreation, it is kept from then on.
        check(vec![a.clone()], vec![running(&a, "sha256:1")], &[(Keep, "a", None)]);
    }

    #[test]
    fn unwanted_stack_containers_are_removed_and_foreign_ones_left_alone() {
        use ActionKind::*;
        let (a, mut gone) = (desired("a"), desired("gone"));
        gone.spec.labels.insert(LABEL_CHANNEL.into(), "naive".into());
        let mut foreign = running(&desired("other"), "sha256:9");
        foreign.labels.insert(LABEL_STACK.into(), "another-stack".into());
        let actual = vec![running(&a, "sha256:1"), running(&gone, "sha256:1"), foreign];
        check(vec![a], actual, &[(Remove, "gone", Some("channel naive is not active")), (Keep, "a", None)]);
    }

    #[test]
    fn rebuilt_image_or_stopped_containers() {
        use ActionKind::*;
        let (a, c) = (desired("a"), desired("c"));
        let rebuilt = running(&a, "sha256:0");
        let mut stopped = running(&c, "sha256:1");
        stopped.status = ContainerStatus::Exited;
        check(
            vec![a, c],
            vec![rebuilt, stopped],
            &[(Recreate, "a", Some("image img:1 was rebuilt")), (Start, "c", None)],
        );
    }

    #[test]
    fn a_container_edge_did_not_create_is_refused_not_recreated() {
        let (a, b) = (desired("a"), desired("b"));
        let mut unlabelled = running(&b, "sha256:1");
        unlabelled.labels.clear();
        unlabelled.mounts = vec![mount(&"c".repeat(64), "/data", MountKind::AnonymousVolume)];
        // Even labelled for this stack, a container without a spec hash is not edge's.
        let mut stack_label_only = running(&b, "sha256:1");
        stack_label_only.labels.remove(LABEL_SPEC_HASH);
        let images = BTreeMap::from([("img:1".to_owned(), "sha256:1".to_owned())]);
        for theirs in [unlabelled, stack_label_only] {
            let actual = vec![running(&a, "sha256:1"), theirs];
            let err = plan("s", vec![a.clone(), b.clone()], &actual, &images, &spec_key()).unwrap_err();
            assert!(matches!(&err, DeployError::NotCreatedByEdge { name } if name == "b"), "{err:?}");
            assert_eq!(
                err.to_string(),
                "container b exists and was not created by edge (it has no edge.spec-hash label); edge does not take \
                 over containers it did not create: back up its volumes, then remove it (docker rm b) or rename it \
                 (docker rename b b-old) and try again"
            );
        }
    }

    #[test]
    fn a_recreation_inherits_the_anonymous_volumes_at_paths_the_spec_leaves_free() {
        let mut old = desired("a");
        old.spec.mounts.push(mount("a-data", "/data", MountKind::Volume));
        let mut actual = running(&old, "sha256:1");
        let (certs, config, shadowed) = ("1".repeat(64), "2".repeat(64), "3".repeat(64));
        actual.mounts.extend([
            mount(&certs, "/certs/", MountKind::AnonymousVolume),
            Mount { read_only: true, ..mount(&config, "/config", MountKind::AnonymousVolume) },
            mount(&shadowed, "/cache", MountKind::AnonymousVolume),
            mount("/etc/e/Caddyfile", "/etc/caddy/Caddyfile", MountKind::Bind),
        ]);
        let mut new = old.clone();
        new.spec.env.insert("LOG".into(), "debug".into());
        new.spec.mounts.push(mount("a-cache", "/cache/", MountKind::Volume));
        let images = BTreeMap::from([("img:1".to_owned(), "sha256:1".to_owned())]);
        let plan = plan("s", vec![new], &[actual], &images, &spec_key()).unwrap();
        let Some(Action::Recreate { reason, inherited, .. }) = plan.action("a") else {
            panic!("a is recreated: {:?}", plan.entries());
        };
        assert_eq!(reason, "spec changed");
        let got: Vec<_> = inherited.iter().map(|m| (m.source.as_str(), m.target.as_str(), m.read_only)).collect();
        assert_eq!(got, [(certs.as_str(), "/certs/", false), (config.as_str(), "/config", true)]);
    }

    #[test]
    fn a_name_held_by_another_stack_is_a_conflict() {
        let a = desired("a");
        let mut theirs = running(&a, "sha256:1");
        theirs.labels.insert(LABEL_STACK.into(), "theirs".into());
        let err = plan("s", vec![a], &[theirs], &BTreeMap::new(), &spec_key()).unwrap_err().to_string();
        assert_eq!(
            err,
            "container a belongs to stack theirs, not s; remove it or give this stack other container names"
        );
    }

    #[test]
    fn waves_follow_dependencies() {
        let mut app = desired("app");
        app.depends_on = vec!["db".into(), "absent".into()];
        let mut proxy = desired("proxy");
        proxy.depends_on = vec!["app".into()];
        let db = desired("db");
        let all = [&proxy, &app, &db];
        let got: Vec<Vec<&str>> =
            waves(&all).unwrap().iter().map(|w| w.iter().map(|d| d.service.as_str()).collect()).collect();
        assert_eq!(got, [vec!["db"], vec!["app"], vec!["proxy"]]);

        let mut a = desired("a");
        a.depends_on = vec!["b".into()];
        let mut b = desired("b");
        b.depends_on = vec!["a".into()];
        let err = waves(&[&a, &b]).unwrap_err().to_string();
        assert_eq!(err, "services depend on each other in a cycle: a, b");
    }
}
