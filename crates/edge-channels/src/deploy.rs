//! The deployer: finds a stack's containers, plans against them, applies the plan and waits
//! until containers are healthy, all through an [`Engine`].
//!
//! A container that cannot be created, started or made healthy is data in the result
//! ([`Applied::failed`], [`Readiness::Failed`]), so that an optional channel failing never
//! stops the others; only stack-wide steps (listing, network, volumes) are errors.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use edge_core::SpecHashKey;
use futures_util::future::join_all;
use serde::Serialize;

use crate::engine::{ContainerInfo, ContainerStatus, Engine, HealthStatus, LABEL_READINESS, LABEL_STACK, Mount};
use crate::plan::{Action, Desired, Plan, plan, waves};
use crate::prober::{Health, Prober};
use crate::{ContainerSpec, DeployError};

/// How long one host-side readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Something the deployer is doing, for progress output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Removing a container.
    Removing {
        /// Container name.
        name: String,
    },
    /// Creating a container.
    Creating {
        /// Container name.
        name: String,
    },
    /// Starting a container.
    Starting {
        /// Container name.
        name: String,
    },
    /// Still waiting for a container to become healthy.
    Waiting {
        /// Container name.
        name: String,
        /// Its state now, e.g. `running, health starting`.
        state: String,
        /// Time waited so far.
        waited: Duration,
    },
    /// A container is running and healthy.
    Ready {
        /// Container name.
        name: String,
    },
    /// A container failed to deploy or to become healthy.
    Failed {
        /// Container name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Whether a container became ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Readiness {
    /// Running and, if it has a health check, healthy.
    Ready {
        /// How long it took, in milliseconds.
        after_ms: u64,
    },
    /// Did not become ready.
    Failed {
        /// Why, e.g. `unhealthy: HTTP 503` or `exited with code 1`.
        reason: String,
    },
}

impl Readiness {
    /// Whether it is [`Readiness::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready { .. })
    }
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Containers created or recreated (by name), with their new ids.
    pub created: BTreeMap<String, String>,
    /// Containers started as they were.
    pub started: Vec<String>,
    /// Containers removed.
    pub removed: Vec<String>,
    /// Containers left alone.
    pub kept: Vec<String>,
    /// Containers that could not be created or started, with the error.
    pub failed: BTreeMap<String, DeployError>,
    /// Dependencies waited for before their dependents' wave, with how that ended.
    pub waited: BTreeMap<String, Readiness>,
}

/// Stack-wide objects the containers need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Infrastructure {
    /// Labels put on the network and volumes.
    pub labels: BTreeMap<String, String>,
}

/// Deploys containers through an engine.
#[derive(Debug)]
pub struct Deployer<'e, E: Engine> {
    engine: &'e E,
    stop_grace: Duration,
    poll: Duration,
}

impl<'e, E: Engine> Deployer<'e, E> {
    /// A deployer on `engine`: 10 s stop grace, health polled every 250 ms.
    pub fn new(engine: &'e E) -> Self {
        Self { engine, stop_grace: Duration::from_secs(10), poll: Duration::from_millis(250) }
    }

    /// Sets how long a stopping container may take before it is killed.
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// Sets how often health is polled.
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        self.engine
    }

    /// The stack's containers (by label) plus any container holding one of `names`.
    pub async fn current(&self, stack: &str, names: &[&str]) -> Result<Vec<ContainerInfo>, DeployError> {
        let mut found = self.engine.list_containers(LABEL_STACK, stack).await?;
        let known: BTreeSet<String> = found.iter().map(|c| c.name.clone()).collect();
        let missing = names.iter().filter(|n| !known.contains(**n));
        for c in join_all(missing.map(|n| self.engine.inspect_container(n))).await {
            if let Some(c) = c? {
                found.push(c);
            }
        }
        Ok(found)
    }

    /// The id of each desired image the engine has. An image it lacks is
    /// [`DeployError::ImageMissing`] unless it is among `pending` (to be pulled before the
    /// plan is applied); pulls happen before, see [`crate::registry::pull`].
    pub async fn image_ids(
        &self,
        desired: &[Desired],
        pending: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, String>, DeployError> {
        let mut refs: BTreeMap<&str, &str> = BTreeMap::new();
        for d in desired {
            refs.entry(d.spec.image.as_str()).or_insert(d.service.as_str());
        }
        let lookups = join_all(refs.keys().map(|r| self.engine.image_id(r))).await;
        let mut ids = BTreeMap::new();
        for ((image, service), id) in refs.into_iter().zip(lookups) {
            match id? {
                Some(id) => drop(ids.insert(image.to_owned(), id)),
                None if pending.contains(image) => {}
                None => {
                    return Err(DeployError::ImageMissing { service: service.to_owned(), image: image.to_owned() });
                }
            };
        }
        Ok(ids)
    }

    /// Plans the deployment of `desired` for `stack` against what the engine has, spec
    /// hashes keyed with the host's `key` (see [`plan()`]). Every image must be on the engine.
    pub async fn plan(&self, stack: &str, desired: Vec<Desired>, key: &SpecHashKey) -> Result<Plan, DeployError> {
        self.plan_pending(stack, desired, key, &BTreeSet::new()).await
    }

    /// [`Deployer::plan`] before the images in `pending` are pulled, for a dry run: they may
    /// be missing, and a container of one is kept unless its spec changed. The real run plans
    /// again once they are pulled, so that a newer image recreates its containers.
    pub async fn plan_pending(
        &self,
        stack: &str,
        desired: Vec<Desired>,
        key: &SpecHashKey,
        pending: &BTreeSet<String>,
    ) -> Result<Plan, DeployError> {
        let names: Vec<&str> = desired.iter().map(Desired::name).collect();
        let actual = self.current(stack, &names).await?;
        let images = self.image_ids(&desired, pending).await?;
        plan(stack, desired, &actual, &images, key)
    }

    /// Applies a plan: removals first, then creations and starts wave by wave along
    /// `depends_on` (a wave waits until the services it depends on are healthy, for at most
    /// `timeout`). The stack network and named volumes are created first if missing.
    pub async fn apply(
        &self,
        plan: &Plan,
        infra: &Infrastructure,
        timeout: Duration,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<Applied, DeployError> {
        let mut applied = Applied::default();
        let specs: Vec<&ContainerSpec> = plan.actions.iter().filter_map(|a| a.desired()).map(|d| &d.spec).collect();
        let networks: BTreeSet<&str> = specs.iter().filter_map(|s| s.stack_network()).collect();
        for n in networks {
            self.engine.ensure_network(n, &infra.labels).await?;
        }
        let volumes: BTreeSet<&str> = specs.iter().flat_map(|s| s.volume_names()).collect();
        for v in volumes {
            let mut labels = infra.labels.clone();
            labels.insert("com.docker.compose.volume".to_owned(), v.to_owned());
            self.engine.ensure_volume(v, &labels).await?;
        }

        // Old containers go first: they may hold the ports and names the new ones need. Their
        // volumes stay: a recreated container mounts the anonymous ones again.
        let doomed: Vec<&str> = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Remove { .. } | Action::Recreate { .. }))
            .map(Action::container)
            .collect();
        let removals = join_all(doomed.iter().map(|name| async move {
            on_event(Event::Removing { name: (*name).to_owned() });
            self.engine.stop_container(name, self.stop_grace).await?;
            self.engine.remove_container(name).await
        }))
        .await;
        for (name, result) in doomed.iter().zip(removals) {
            result?;
            if matches!(plan.action(name), Some(Action::Remove { .. })) {
                applied.removed.push((*name).to_owned());
            }
        }

        let desired: Vec<&Desired> = plan.actions.iter().filter_map(|a| a.desired()).collect();
        let deadline = Instant::now() + timeout;
        let mut readiness: BTreeMap<String, Readiness> = BTreeMap::new();
        for wave in waves(&desired)? {
            // Dependencies of this wave that were deployed in earlier waves must be healthy.
            let deps: BTreeSet<&str> = wave.iter().flat_map(|d| d.depends_on.iter().map(String::as_str)).collect();
            let to_wait: Vec<String> = desired
                .iter()
                .filter(|d| deps.contains(d.service.as_str()) && !readiness.contains_key(d.name()))
                .map(|d| d.name().to_owned())
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            readiness.extend(self.wait_ready(&to_wait, left, on_event).await);

            let steps = join_all(wave.iter().map(|d| {
                let failed_dep = d.depends_on.iter().find_map(|dep| {
                    let dep = desired.iter().find(|x| x.service == *dep)?;
                    match readiness.get(dep.name()) {
                        Some(Readiness::Failed { .. }) => Some(dep.service.clone()),
                        _ => None,
                    }
                });
                self.step(plan.action(d.name()), failed_dep, on_event)
            }))
            .await;
            for (d, outcome) in wave.iter().zip(steps) {
                let name = d.name().to_owned();
                match outcome {
                    Ok(Step::Created(id)) => drop(applied.created.insert(name, id)),
                    Ok(Step::Started) => applied.started.push(name),
                    Ok(Step::Kept) => applied.kept.push(name),
                    Err(e) => {
                        on_event(Event::Failed { name: name.clone(), reason: e.to_string() });
                        readiness.insert(name.clone(), Readiness::Failed { reason: e.to_string() });
                        applied.failed.insert(name, e);
                    }
                }
            }
        }
        for name in readiness.keys().filter(|n| !applied.failed.contains_key(*n)).cloned().collect::<Vec<_>>() {
            if let Some(r) = readiness.remove(&name) {
                applied.waited.insert(name, r);
            }
        }
        Ok(applied)
    }

    async fn step(
        &self,
        action: Option<&Action>,
        failed_dependency: Option<String>,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<Step, DeployError> {
        let Some(action) = action else { return Ok(Step::Kept) };
        let name = action.container().to_owned();
        if let Some(dep) = failed_dependency
            && !matches!(action, Action::Keep { .. })
        {
            return Err(DeployError::StartContainer {
                name,
                source: crate::EngineError::new(None, format!("dependency {dep} is not healthy")),
            });
        }
        match action {
            Action::Create { desired } => self.create(desired, &[], on_event).await,
            Action::Recreate { desired, inherited, .. } => self.create(desired, inherited, on_event).await,
            Action::Start { .. } => {
                on_event(Event::Starting { name: name.clone() });
                self.engine.start_container(&name).await?;
                Ok(Step::Started)
            }
            Action::Keep { .. } | Action::Remove { .. } => Ok(Step::Kept),
        }
    }

    /// Creates and starts a container, `inherited` mounted besides its spec's.
    async fn create(
        &self,
        desired: &Desired,
        inherited: &[Mount],
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<Step, DeployError> {
        let name = desired.name().to_owned();
        on_event(Event::Creating { name: name.clone() });
        let id = self.engine.create_container(&desired.spec, inherited).await?;
        on_event(Event::Starting { name: name.clone() });
        self.engine.start_container(&name).await?;
        Ok(Step::Created(id))
    }

    /// Waits, in parallel, until each named container is running and healthy, at most
    /// `timeout`. A container reported unhealthy, exited or restarting fails at once. One with a
    /// host-side readiness probe ([`ContainerInfo::host_probe`]) is ready once that probe passes.
    pub async fn wait_ready(
        &self,
        names: &[String],
        timeout: Duration,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> BTreeMap<String, Readiness> {
        let started = Instant::now();
        let deadline = started + timeout;
        let prober = Prober::new(PROBE_TIMEOUT).map_err(|e| e.to_string());
        let prober = &prober;
        let results = join_all(names.iter().map(|name| async move {
            let outcome = self.wait_one(name, prober, started, deadline, on_event).await;
            match &outcome {
                Readiness::Ready { .. } => on_event(Event::Ready { name: name.clone() }),
                Readiness::Failed { reason } => on_event(Event::Failed { name: name.clone(), reason: reason.clone() }),
            }
            (name.clone(), outcome)
        }))
        .await;
        results.into_iter().collect()
    }

    async fn wait_one(
        &self,
        name: &str,
        prober: &Result<Prober, String>,
        started: Instant,
        deadline: Instant,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Readiness {
        loop {
            let c = match self.engine.inspect_container(name).await {
                Ok(Some(c)) => c,
                Ok(None) => return Readiness::Failed { reason: "the container is gone".to_owned() },
                Err(e) => return Readiness::Failed { reason: e.to_string() },
            };
            // A host-side probe fails until the service listens: it is waited for, like a
            // health check that is still starting.
            let mut probe_failure = None;
            if c.is_ready() {
                let probed = match prober {
                    Ok(prober) => prober.probe_container(&c).await,
                    Err(e) if c.labels.contains_key(LABEL_READINESS) => return Readiness::Failed { reason: e.clone() },
                    Err(_) => None,
                };
                match probed {
                    None | Some(Health::Healthy) => {
                        return Readiness::Ready { after_ms: started.elapsed().as_millis() as u64 };
                    }
                    Some(Health::Unhealthy { reason }) => probe_failure = Some(reason),
                }
            }
            if let Some(reason) = failure(&c) {
                return Readiness::Failed { reason };
            }
            let state = match &probe_failure {
                Some(reason) => format!("{}, probe {reason}", c.status),
                None => describe(&c),
            };
            if Instant::now() >= deadline {
                let secs = deadline.saturating_duration_since(started).as_secs();
                return Readiness::Failed {
                    reason: match probe_failure {
                        Some(reason) => format!("unhealthy: {reason} (not ready within {secs}s)"),
                        None => format!("not healthy within {secs}s ({state})"),
                    },
                };
            }
            on_event(Event::Waiting { name: name.to_owned(), state, waited: started.elapsed() });
            tokio::time::sleep(self.poll.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
}

enum Step {
    Created(String),
    Started,
    Kept,
}

/// Why a container will not become ready on its own, if it will not.
fn failure(c: &ContainerInfo) -> Option<String> {
    let code = c.exit_code.map(|c| format!(" (exit code {c})")).unwrap_or_default();
    match c.status {
        ContainerStatus::Exited | ContainerStatus::Dead => Some(format!("container {}{code}", c.status)),
        ContainerStatus::Restarting => Some(format!("container keeps restarting{code}")),
        ContainerStatus::Missing | ContainerStatus::Removing => Some(format!("container is {}", c.status)),
        ContainerStatus::Paused => Some("container is paused".to_owned()),
        ContainerStatus::Running if c.health == HealthStatus::Unhealthy => {
            let output = c.last_health_output.as_deref().map(str::trim).filter(|o| !o.is_empty());
            Some(match output {
                Some(o) => format!("unhealthy: {}", one_line(o)),
                None => "unhealthy".to_owned(),
            })
        }
        ContainerStatus::Created | ContainerStatus::Running => None,
    }
}

fn describe(c: &ContainerInfo) -> String {
    match c.health {
        HealthStatus::None => c.status.to_string(),
        h => format!("{}, health {h}", c.status),
    }
}

/// The first line of a health check's output, at most 200 characters.
fn one_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim();
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ActionKind;
    use crate::testing::{FakeEngine, spec, spec_key};

    fn desired(name: &str, deps: &[&str]) -> Desired {
        Desired::new(name, spec(name, "img:1"), deps.iter().map(|d| (*d).to_owned()).collect())
    }

    fn quiet(_: Event) {}

    async fn deploy(engine: &FakeEngine, desired: Vec<Desired>) -> (Plan, Applied, BTreeMap<String, Readiness>) {
        let deployer = Deployer::new(engine).with_poll_interval(Duration::from_millis(1));
        let names: Vec<String> = desired.iter().map(|d| d.name().to_owned()).collect();
        let plan = deployer.plan("s", desired, &spec_key()).await.unwrap();
        let applied = deployer.apply(&plan, &Infrastructure::default(), Duration::from_secs(1), &quiet).await.unwrap();
        let ready = deployer.wait_ready(&names, Duration::from_millis(50), &quiet).await;
        (plan, applied, ready)
    }

    #[tokio::test]
    async fn install_then_rerun_touches_nothing() {
        let engine = FakeEngine::with_images(&["img:1"]);
        let (_, applied, ready) = deploy(&engine, vec![desired("a", &[]), desired("b", &[])]).await;
        assert_eq!(applied.created.len(), 2);
        assert!(ready.values().all(Readiness::is_ready));
        let ids = engine.ids();

        let (plan, applied, _) = deploy(&engine, vec![desired("a", &[]), desired("b", &[])]).await;
        assert!(plan.is_noop(), "{:?}", plan.entries());
        assert_eq!(applied.kept, ["a", "b"]);
        assert_eq!(engine.ids(), ids);
        assert_eq!(engine.calls_of("create"), 2, "the re-run created nothing");
    }

    #[tokio::test]
    async fn a_dropped_service_is_removed_and_a_changed_one_recreated() {
        let engine = FakeEngine::with_images(&["img:1"]);
        deploy(&engine, vec![desired("a", &[]), desired("b", &[]), desired("c", &[])]).await;
        let before = engine.ids();
        let mut b = desired("b", &[]);
        b.spec.command = vec!["--changed".into()];
        let (plan, applied, _) = deploy(&engine, vec![desired("a", &[]), b]).await;
        let kinds: Vec<_> = plan.actions.iter().map(|a| (a.kind(), a.container())).collect();
        assert_eq!(kinds, [(ActionKind::Remove, "c"), (ActionKind::Keep, "a"), (ActionKind::Recreate, "b")]);
        assert_eq!(applied.removed, ["c"]);
        let after = engine.ids();
        assert_eq!(after.get("a"), before.get("a"));
        assert_ne!(after.get("b"), before.get("b"));
        assert!(!after.contains_key("c"));
    }

    #[tokio::test]
    async fn containers_carry_the_keyed_hash_and_a_new_key_recreates_them_once() {
        use crate::LABEL_SPEC_HASH;
        let engine = FakeEngine::with_images(&["img:1"]);
        deploy(&engine, vec![desired("a", &[])]).await;
        let label = || async { engine.inspect_container("a").await.unwrap().unwrap().labels[LABEL_SPEC_HASH].clone() };
        assert_eq!(label().await, desired("a", &[]).hash(&spec_key()));

        // Another key (a host whose key was lost, or labels made before hashes were keyed):
        // the container is recreated once, then kept.
        let other = edge_core::SpecHashKey::from_bytes([9; 32]);
        let deployer = Deployer::new(&engine).with_poll_interval(Duration::from_millis(1));
        let plan = deployer.plan("s", vec![desired("a", &[])], &other).await.unwrap();
        assert_eq!(plan.action("a").and_then(Action::reason), Some("spec changed"));
        deployer.apply(&plan, &Infrastructure::default(), Duration::from_secs(1), &quiet).await.unwrap();
        assert_eq!(label().await, desired("a", &[]).hash(&other));
        let plan = deployer.plan("s", vec![desired("a", &[])], &other).await.unwrap();
        assert!(plan.is_noop(), "{:?}", plan.entries());
    }

    #[tokio::test]
    async fn an_unhealthy_container_is_data_not_an_error() {
        let engine = FakeEngine::with_images(&["img:1"]);
        engine.make_unhealthy("b", "HTTP 503");
        let (_, applied, ready) = deploy(&engine, vec![desired("a", &[]), desired("b", &[])]).await;
        assert!(applied.failed.is_empty());
        assert!(ready["a"].is_ready());
        assert_eq!(ready["b"], Readiness::Failed { reason: "unhealthy: HTTP 503".into() });
    }

    #[tokio::test]
    async fn a_host_probe_is_waited_for_until_it_passes_or_the_deadline() {
        let engine = FakeEngine::with_images(&["img:1"]);
        // Reserve a loopback port, then let it go: nothing listens there until the test says so.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut probed = spec("a", "img:1");
        probed.labels.insert(LABEL_READINESS.into(), format!("tcp://{addr}"));
        let deployer = Deployer::new(&engine).with_poll_interval(Duration::from_millis(20));
        let plan = deployer.plan("s", vec![Desired::new("a", probed, vec![])], &spec_key()).await.unwrap();
        deployer.apply(&plan, &Infrastructure::default(), Duration::from_secs(1), &quiet).await.unwrap();
        let names = vec!["a".to_owned()];

        let failed = deployer.wait_ready(&names, Duration::from_millis(300), &quiet).await;
        let Readiness::Failed { reason } = &failed["a"] else { panic!("nothing listens: {failed:?}") };
        assert!(reason.starts_with(&format!("unhealthy: tcp://{addr}: ")), "{reason}");
        assert!(reason.ends_with(" (not ready within 0s)"), "{reason}");

        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                open.push(s);
            }
        });
        let ready = deployer.wait_ready(&names, Duration::from_secs(5), &quiet).await;
        assert!(ready["a"].is_ready(), "{ready:?}");
        held.abort();
    }

    #[tokio::test]
    async fn a_failed_start_names_the_container_and_spares_the_rest() {
        let engine = FakeEngine::with_images(&["img:1"]);
        engine.fail_start("b", "port is already allocated");
        let (_, applied, _) = deploy(&engine, vec![desired("a", &[]), desired("b", &[])]).await;
        assert!(applied.created.contains_key("a"));
        assert_eq!(applied.failed["b"].to_string(), "cannot start container b: port is already allocated");
    }

    #[tokio::test]
    async fn dependents_wait_for_health_and_skip_a_failed_dependency() {
        let engine = FakeEngine::with_images(&["img:1"]);
        engine.make_unhealthy("db", "no");
        let (_, applied, _) = deploy(&engine, vec![desired("app", &["db"]), desired("db", &[])]).await;
        assert_eq!(engine.calls_of("create"), 1, "app is not created while db is unhealthy");
        assert_eq!(applied.failed["app"].to_string(), "cannot start container app: dependency db is not healthy");
    }

    #[tokio::test]
    async fn a_missing_image_is_an_error_naming_service_and_image() {
        let engine = FakeEngine::with_images(&[]);
        let err = Deployer::new(&engine).plan("s", vec![desired("a", &[])], &spec_key()).await.unwrap_err().to_string();
        assert_eq!(
            err,
            "image img:1 of service a is not on the docker engine; pull it (--pull missing), build or load it, or pass --images a=REF"
        );
    }

    #[tokio::test]
    async fn a_recreated_container_keeps_its_anonymous_volumes_and_no_volume_is_removed() {
        let engine = FakeEngine::with_images(&[]);
        engine.add_image_volume("img:1", "/data");
        engine.add_image_volume("img:1", "/config");
        deploy(&engine, vec![desired("a", &[]), desired("b", &[])]).await;
        let old = engine.inspect_container("a").await.unwrap().unwrap();
        let anonymous: Vec<_> = old.anonymous_volumes().map(|m| (m.source.clone(), m.target.clone())).collect();
        assert_eq!(anonymous.len(), 2, "{:?}", old.mounts);
        engine.put_volume_file(&anonymous[0].0, "certs/site.crt", b"cert");

        // A changed env recreates a; a no longer wanted b is removed.
        let mut a = desired("a", &[]);
        a.spec.env.insert("LOG".into(), "debug".into());
        let (plan, applied, ready) = deploy(&engine, vec![a]).await;
        assert!(matches!(plan.action("a"), Some(Action::Recreate { inherited, .. }) if inherited.len() == 2));
        assert_eq!(applied.removed, ["b"]);
        assert!(ready["a"].is_ready());
        let new = engine.inspect_container("a").await.unwrap().unwrap();
        assert_ne!(new.id, old.id, "a was recreated");
        let carried: Vec<_> = new.anonymous_volumes().map(|m| (m.source.clone(), m.target.clone())).collect();
        assert_eq!(carried, anonymous, "the same volumes at the same paths, no fresh ones");
        assert_eq!(engine.volume_file(&anonymous[0].0, "certs/site.crt").as_deref(), Some(&b"cert"[..]));
        assert_eq!(engine.volumes().len(), 4, "b's anonymous volumes stay too: {:?}", engine.volumes());
        assert_eq!(engine.calls_of("remove_volume"), 0);

        // The next run keeps it: the inherited volumes are not part of its spec hash.
        let mut a = desired("a", &[]);
        a.spec.env.insert("LOG".into(), "debug".into());
        let (plan, _, _) = deploy(&engine, vec![a]).await;
        assert!(plan.is_noop(), "{:?}", plan.entries());
    }

    #[tokio::test]
    async fn a_container_edge_did_not_create_is_refused_and_left_untouched() {
        let engine = FakeEngine::with_images(&[]);
        engine.add_image_volume("img:1", "/data");
        let id = engine.run_unlabelled("a", "img:1");
        let volume = engine.inspect_container("a").await.unwrap().unwrap().mounts[0].source.clone();
        engine.put_volume_file(&volume, "caddy/acme.json", b"account");

        let err = Deployer::new(&engine)
            .plan("s", vec![desired("a", &[]), desired("b", &[])], &spec_key())
            .await
            .unwrap_err();
        assert!(matches!(&err, DeployError::NotCreatedByEdge { name } if name == "a"), "{err}");
        assert_eq!(engine.ids(), BTreeMap::from([("a".to_owned(), id)]));
        assert_eq!(engine.status_of("a"), Some(ContainerStatus::Running));
        assert_eq!(engine.volume_file(&volume, "caddy/acme.json").as_deref(), Some(&b"account"[..]));
        assert_eq!(engine.calls_of("stop") + engine.calls_of("remove") + engine.calls_of("create"), 0);
    }

    #[tokio::test]
    async fn network_and_volumes_are_created_once() {
        let engine = FakeEngine::with_images(&["img:1"]);
        let mut a = desired("a", &[]);
        a.spec.mounts.push(crate::Mount {
            source: "data".into(),
            target: "/data".into(),
            read_only: false,
            kind: crate::MountKind::Volume,
        });
        deploy(&engine, vec![a.clone()]).await;
        deploy(&engine, vec![a]).await;
        assert_eq!(engine.calls_of("create_network"), 1);
        assert_eq!(engine.calls_of("create_volume"), 1);
    }
}
