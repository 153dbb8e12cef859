//! The deploy planner: desired containers (with spec hashes) against the containers the
//! engine has, to create / recreate / start / keep / remove actions.
//!
//! Reconcile, never recreate blindly: a container whose name, spec hash and image id all
//! match is kept as it is (adopted), whoever started it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::DeployError;
use crate::engine::{ContainerInfo, ContainerSpec, ContainerStatus, LABEL_CHANNEL};

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

    /// Its spec hash.
    pub fn hash(&self) -> String {
        self.spec.spec_hash()
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
    /// The container differs from the spec: remove it and create it anew.
    Recreate {
        /// What to create.
        desired: Desired,
        /// Id of the container replaced.
        id: String,
        /// What differs.
        reason: String,
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
/// A container holding a desired name but labelled for another stack is a
/// [`DeployError::NameConflict`]: it is never taken over.
pub fn plan(
    stack: &str,
    desired: Vec<Desired>,
    actual: &[ContainerInfo],
    image_ids: &BTreeMap<String, String>,
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
    for d in desired {
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
        let reason = match c.spec_hash() {
            None => Some("not created by edge (no spec hash label)".to_owned()),
            Some(h) if h != d.hash() => Some("spec changed".to_owned()),
            Some(_) => match image_ids.get(&d.spec.image) {
                Some(id) if *id != c.image_id => Some(format!("image {} was rebuilt", d.spec.image)),
                _ if matches!(c.status, ContainerStatus::Dead | ContainerStatus::Removing) => {
                    Some(format!("container is {}", c.status))
                }
                _ => None,
            },
        };
        let id = c.id.clone();
        actions.push(match reason {
            Some(reason) => Action::Recreate { desired: d, id, reason },
            None if matches!(c.status, ContainerStatus::Created | ContainerStatus::Exited) => {
                Action::Start { desired: d, id }
            }
            None => Action::Keep { desired: d, id },
        });
    }
    Ok(Plan { actions })
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
    use crate::engine::{HealthStatus, LABEL_SPEC_HASH, LABEL_STACK};
    use crate::testing::spec;

    fn desired(name: &str) -> Desired {
        Desired::new(name, spec(name, "img:1"), vec![])
    }

    fn running(d: &Desired, image_id: &str) -> ContainerInfo {
        let mut labels = d.spec.labels.clone();
        labels.insert(LABEL_SPEC_HASH.into(), d.hash());
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
        }
    }

    /// Plans and returns `(kind, container, reason)` per action.
    fn check(desired: Vec<Desired>, actual: Vec<ContainerInfo>, expected: &[(ActionKind, &str, Option<&str>)]) {
        let images = BTreeMap::from([("img:1".to_owned(), "sha256:1".to_owned())]);
        let plan = plan("s", desired, &actual, &images).unwrap();
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
    fn rebuilt_image_unlabelled_or_stopped_containers() {
        use ActionKind::*;
        let (a, b, c) = (desired("a"), desired("b"), desired("c"));
        let rebuilt = running(&a, "sha256:0");
        let mut unlabelled = running(&b, "sha256:1");
        unlabelled.labels.clear();
        let mut stopped = running(&c, "sha256:1");
        stopped.status = ContainerStatus::Exited;
        check(
            vec![a, b, c],
            vec![rebuilt, unlabelled, stopped],
            &[
                (Recreate, "a", Some("image img:1 was rebuilt")),
                (Recreate, "b", Some("not created by edge (no spec hash label)")),
                (Start, "c", None),
            ],
        );
    }

    #[test]
    fn a_name_held_by_another_stack_is_a_conflict() {
        let a = desired("a");
        let mut theirs = running(&a, "sha256:1");
        theirs.labels.insert(LABEL_STACK.into(), "theirs".into());
        let err = plan("s", vec![a], &[theirs], &BTreeMap::new()).unwrap_err().to_string();
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
