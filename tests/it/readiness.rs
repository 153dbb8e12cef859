//! Readiness without tools inside the image: the naive image built as the release builds it
//! (`Dockerfile.naive`, no shell, no `wget`) with the fake naive binary becomes `active`
//! through `edge install` by edge's host-side probe, and a TCP probe is not fooled by Docker's
//! proxy accepting on a published port where nothing listens.

use std::time::Duration;

use edge_channels::image::Images;
use edge_channels::{Health, HostProbe, Prober};
use edge_tests::docker::{
    STANDIN_IMAGE, TestStack, docker_out, free_port, partner_edge_images, provision_local_images,
};
use edge_tests::naive_tarball::build_release_image;

use crate::deploy::{code, edge, inspect, install, naive, status_file, stdout};

/// Removes an image tag when dropped.
struct ImageTag(String);

impl Drop for ImageTag {
    fn drop(&mut self) {
        docker_out(&["rmi", "-f", &self.0]);
    }
}

#[test]
fn the_release_naive_image_becomes_active_by_its_host_probe() {
    provision_local_images();
    let stack = TestStack::partner_edge("ready").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let images = runtime.block_on(Images::connect()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let tag = ImageTag(format!("edge-it-naive-release:{}", std::process::id()));
    runtime.block_on(build_release_image(&images, work.path(), &tag.0)).expect("the naive image builds");

    // Nothing inside could run a docker health check.
    let wget = runtime.block_on(images.run_to_completion(&tag.0, &["wget", "--help"], Duration::from_secs(30)));
    assert!(!wget.as_ref().is_ok_and(|run| run.exit_code == 0), "the image has no wget: {wget:?}");

    let with_release_naive =
        partner_edge_images().replace(&format!("naive={STANDIN_IMAGE}"), &format!("naive={}", tag.0));
    let out = install(&stack, &["--images", &with_release_naive], &naive("naive-pass-5e6f7a8b"));
    assert_eq!(code(&out), Some(0), "{}", stdout(&out));
    assert_eq!(status_file(&stack), "xray=active\nawg=skipped\nhysteria2=skipped\nnaive=active\n");

    // No docker health check on the container; the probe edge ran is in its label.
    let container = inspect(&stack.container("oxpulse-partner-naive"));
    assert_eq!(container["Config"]["Image"], tag.0);
    assert!(container["Config"]["Healthcheck"].is_null(), "{}", container["Config"]["Healthcheck"]);
    assert_eq!(container["State"]["Health"], serde_json::Value::Null);
    let probe = format!("tcp://127.0.0.1:{}", stack.ports.naive_proxy);
    assert_eq!(container["Config"]["Labels"]["edge.readiness"], probe.as_str());

    // status and healthcheck probe it the same way.
    let status: serde_json::Value = serde_json::from_str(&stdout(&edge(&stack, &["status", "--json"], &[]))).unwrap();
    let channel = status["channels"].as_array().unwrap().iter().find(|c| c["id"] == "naive").unwrap().clone();
    assert_eq!(
        (&channel["containers"][0]["health"], &channel["containers"][0]["ready"]),
        (&"healthy".into(), &true.into())
    );
    assert_eq!(code(&edge(&stack, &["healthcheck"], &[])), Some(0));
}

#[test]
fn a_tcp_probe_fails_on_a_published_port_nothing_listens_behind() {
    provision_local_images();
    // The stand-in listens on 3080 only; 9999 is published, and Docker's proxy accepts on it.
    let name = format!("edge-it-probe-{}", std::process::id());
    let port = free_port();
    let id = docker_out(&["run", "-d", "--name", &name, "-p", &format!("127.0.0.1:{port}:9999"), STANDIN_IMAGE]);
    assert!(!id.trim().is_empty(), "docker run {STANDIN_IMAGE} failed");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let prober = Prober::new(Duration::from_secs(2)).unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let accepted = std::net::TcpStream::connect(addr).is_ok();
    let health = runtime.block_on(prober.check(&HostProbe::Tcp { addr }));
    docker_out(&["rm", "-f", &name]);
    assert!(accepted, "Docker's proxy accepts the connection");
    assert_eq!(
        health,
        Health::Unhealthy { reason: "connection closed at once: nothing listens behind the port".into() }
    );
}
