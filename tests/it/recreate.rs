//! Recreating a container never loses data, on the real Docker engine: a container edge made
//! keeps its anonymous volume (the same one, carried over) when a spec change recreates it,
//! and a same-named container edge did not make is refused and left as it was.

use std::collections::BTreeMap;
use std::time::Duration;

use edge_channels::image::{BuildContext, Images};
use edge_channels::{
    Action, ContainerSpec, Deployer, Desired, DockerEngine, Engine, Infrastructure, LABEL_STACK, Mount, MountKind,
    NetworkAttachment,
};
use edge_core::SpecHashKey;
use edge_tests::docker::{STANDIN_IMAGE, TestStack, docker_out, ensure_image, provision_local_images};

use crate::deploy::{code, container_ids, install, stderr};

/// The stand-in with `VOLUME /data`, as a Caddy image declares its data folder.
const VOLUME_IMAGE: &str = "edge-standin:volume";

/// A container of this test and the volumes it held, all removed when dropped, even after a
/// failure.
struct Leftovers {
    container: String,
    volumes: Vec<String>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        docker_out(&["rm", "-f", &self.container]);
        for v in &self.volumes {
            docker_out(&["volume", "rm", "-f", v]);
        }
    }
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("edge-it-{tag}-{}-{nanos}", std::process::id())
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime").block_on(future)
}

async fn ensure_volume_image() {
    let images = Images::connect().await.expect("the docker engine answers");
    let mut context = BuildContext::new();
    let dockerfile = format!("FROM {STANDIN_IMAGE}\nVOLUME [\"/data\"]\n");
    context.add_file("Dockerfile", dockerfile.into_bytes(), 0o644).expect("a build context");
    ensure_image(&images, VOLUME_IMAGE, &context).await.expect("building the image with a volume");
}

/// The stand-in from the image with a volume, alone on no network, in stack `stack`.
fn spec(name: &str, stack: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.to_owned(),
        image: VOLUME_IMAGE.to_owned(),
        command: vec![],
        env: BTreeMap::from([("GENERATION".to_owned(), "1".to_owned())]),
        ports: vec![],
        mounts: vec![],
        network: NetworkAttachment::Mode("none".to_owned()),
        user: None,
        healthcheck: None,
        restart: "no".to_owned(),
        logging: Default::default(),
        labels: BTreeMap::from([(LABEL_STACK.to_owned(), stack.to_owned())]),
        security: Default::default(),
    }
}

/// The anonymous volume a container mounts at `/data`.
async fn data_volume(engine: &DockerEngine, name: &str) -> Mount {
    let info = engine.inspect_container(name).await.unwrap().unwrap_or_else(|| panic!("{name} exists"));
    let data: Vec<&Mount> = info.mounts.iter().filter(|m| m.target == "/data").collect();
    assert_eq!(data.len(), 1, "one mount at /data: {:?}", info.mounts);
    assert_eq!(data[0].kind, MountKind::AnonymousVolume, "{:?}", data[0]);
    data[0].clone()
}

#[test]
fn a_recreated_container_keeps_its_anonymous_volume_and_its_data() {
    provision_local_images();
    let name = unique("recreate");
    let mut leftovers = Leftovers { container: name.clone(), volumes: vec![] };
    block_on(async {
        ensure_volume_image().await;
        let engine = DockerEngine::connect().await.expect("the docker engine answers");
        let deployer = Deployer::new(&engine).with_poll_interval(Duration::from_millis(100));
        let key = SpecHashKey::generate().expect("a spec-hash key");
        let deploy = |spec: ContainerSpec| {
            let (deployer, key) = (&deployer, &key);
            let stack = name.clone();
            async move {
                let plan = deployer.plan(&stack, vec![Desired::new("svc", spec, vec![])], key).await.expect("planning");
                let quiet = |_| {};
                let applied =
                    deployer.apply(&plan, &Infrastructure::default(), Duration::from_secs(30), &quiet).await.unwrap();
                assert!(applied.failed.is_empty(), "{:?}", applied.failed);
                plan
            }
        };

        let plan = deploy(spec(&name, &name)).await;
        assert!(matches!(plan.action(&name), Some(Action::Create { .. })), "{:?}", plan.entries());
        let old_id = engine.inspect_container(&name).await.unwrap().unwrap().id;
        let volume = data_volume(&engine, &name).await;
        leftovers.volumes.push(volume.source.clone());
        engine.write_volume_file(&volume.source, "caddy/acme.json", b"account key", STANDIN_IMAGE).await.unwrap();

        // A changed env value recreates the container.
        let mut changed = spec(&name, &name);
        changed.env.insert("GENERATION".to_owned(), "2".to_owned());
        let plan = deploy(changed.clone()).await;
        let Some(Action::Recreate { reason, inherited, .. }) = plan.action(&name) else {
            panic!("a changed spec recreates the container: {:?}", plan.entries());
        };
        assert_eq!(reason, "spec changed");
        assert_eq!(inherited, std::slice::from_ref(&volume), "the old container's anonymous volume is carried over");

        let new = engine.inspect_container(&name).await.unwrap().expect("the new container");
        assert_ne!(new.id, old_id, "the container was recreated");
        assert_eq!(data_volume(&engine, &name).await, volume, "the same volume at /data, not a fresh one");
        assert_eq!(new.mounts.len(), 1, "no fresh anonymous volume: {:?}", new.mounts);
        assert!(engine.volume_exists(&volume.source).await.unwrap(), "no volume was deleted");
        let kept = engine.read_volume_file(&volume.source, "caddy/acme.json", STANDIN_IMAGE).await.unwrap();
        assert_eq!(kept.as_deref(), Some(&b"account key"[..]), "the file survived the recreation");

        // The carried-over volume is not part of the spec: the next run changes nothing.
        let plan = deploy(changed).await;
        assert!(plan.is_noop(), "{:?}", plan.entries());
        assert_eq!(engine.inspect_container(&name).await.unwrap().unwrap().id, new.id);
    });
}

#[test]
fn a_same_named_container_edge_did_not_create_is_refused_and_left_untouched() {
    provision_local_images();
    let stack = TestStack::partner_edge("unlabelled").expect("a test stack");
    let caddy = stack.container("oxpulse-partner-caddy");
    // A legacy Caddy made by hand, its certificates in an anonymous volume.
    let id = docker_out(&["run", "-d", "--name", &caddy, "--network", "none", "-v", "/data", STANDIN_IMAGE]);
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 64, "docker run made the container");
    let volume = docker_out(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", &caddy]).trim().to_owned();
    let _leftovers = Leftovers { container: caddy.clone(), volumes: vec![volume.clone()] };
    block_on(async {
        let engine = DockerEngine::connect().await.expect("the docker engine answers");
        engine.write_volume_file(&volume, "caddy/certificates/site.crt", b"cert", STANDIN_IMAGE).await.unwrap();
    });

    let out = install(&stack, &[], &[]);
    assert_eq!(code(&out), Some(1), "install refuses");
    // Install takes it for the legacy installer's and points to the adoption, which keeps its volumes.
    let err = stderr(&out);
    assert!(err.contains(&format!("containers {caddy} not made by edge")), "the error names the container: {err}");
    assert!(err.contains("run edge adopt --dry-run"), "and says what to do: {err}");

    let state = docker_out(&["inspect", "-f", "{{.Id}} {{.State.Status}} {{range .Mounts}}{{.Name}}{{end}}", &caddy]);
    assert_eq!(state.trim(), format!("{id} running {volume}"), "the container is untouched");
    assert!(container_ids(&stack).is_empty(), "no container of the stack was made");
    block_on(async {
        let engine = DockerEngine::connect().await.expect("the docker engine answers");
        let kept = engine.read_volume_file(&volume, "caddy/certificates/site.crt", STANDIN_IMAGE).await.unwrap();
        assert_eq!(kept.as_deref(), Some(&b"cert"[..]), "its volume keeps its data");
    });
}
