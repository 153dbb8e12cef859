//! `edge install` pulls what the engine lacks from a real registry: Debian's `docker-registry`
//! on loopback with htpasswd auth, credentials read from `$DOCKER_CONFIG/config.json`.
//!
//! Each test pushes its own copies of the local images (the stand-in and Caddy) under its
//! registry's name, built with a first layer unique to the test so that the engine shares no
//! layer with them, then removes them from the engine: `edge install` has to pull every byte.
//! The unqualified local images other tests use are left alone.

use std::collections::BTreeMap;
use std::path::Path;

use edge_channels::image::{BuildRequest, Images, RegistryCredentials};
use edge_tests::docker::{
    TestStack, build_standin_binary, caddy_context_marked, docker_out, provision_local_images, standin_context_marked,
};
use edge_tests::registry::{Registry, USER};

use crate::deploy::{all_channels, code, container_ids, install, status_file, stderr, stdout};

/// A test stack whose images are only in a registry. Fields drop in order: the stack's
/// containers go before the pulled images, and the registry last.
struct Pushed {
    stack: TestStack,
    images: PulledImages,
    registry: Registry,
}

/// The registry-named images, removed from the engine when dropped.
struct PulledImages {
    standin: String,
    caddy: String,
}

impl Drop for PulledImages {
    fn drop(&mut self) {
        docker_out(&["rmi", "-f", &self.standin, &self.caddy]);
    }
}

impl PulledImages {
    /// `--images` putting the stack on them.
    fn flag(&self) -> String {
        let mut items = vec![format!("caddy={}", self.caddy)];
        for service in ["xray", "hysteria2", "naive", "coturn", "sfu"] {
            items.push(format!("{service}={}", self.standin));
        }
        items.join(",")
    }

    fn on_engine(&self) -> BTreeMap<&str, bool> {
        [&self.standin, &self.caddy]
            .into_iter()
            .map(|r| (r.as_str(), !docker_out(&["image", "inspect", "--format", "{{.Id}}", r]).trim().is_empty()))
            .collect()
    }
}

fn run<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(future)
}

/// A registry holding this test's images, and a stack whose images are not on the engine.
fn pushed(tag: &str) -> Pushed {
    provision_local_images();
    let registry = Registry::start().expect("the registry starts");
    let stack = TestStack::partner_edge(tag).expect("test stack");
    let repo = format!("{}/{}", registry.host(), stack.name);
    let images = PulledImages { standin: format!("{repo}/standin:dev"), caddy: format!("{repo}/caddy:dev") };
    let binary = build_standin_binary().expect("the stand-in builds");
    run(async {
        let engine = Images::connect().await.expect("docker answers");
        let standin = standin_context_marked(&binary, true, Some(&stack.name)).unwrap();
        let caddy = caddy_context_marked(&edge_tests::caddy::Caddy::Current.bin().unwrap(), Some(&stack.name)).unwrap();
        let credentials = RegistryCredentials { username: USER.to_owned(), password: registry.password().to_owned() };
        for (reference, context) in [(&images.standin, standin), (&images.caddy, caddy)] {
            engine.build_image(&context, &BuildRequest::new(reference.as_str())).await.expect("build");
            engine.push(reference, Some(&credentials)).await.expect("push to the loopback registry");
            assert!(engine.remove(reference).await.expect("remove"), "{reference} was on the engine");
        }
    });
    assert_eq!(images.on_engine().values().filter(|on| **on).count(), 0, "the engine has none of them");
    Pushed { stack, images, registry }
}

impl Pushed {
    fn install(&self, docker_config: &Path, extra: &[&str]) -> std::process::Output {
        let flag = self.images.flag();
        let mut args = vec!["--images", flag.as_str()];
        args.extend(extra);
        let mut env = all_channels();
        env.push(("DOCKER_CONFIG", docker_config.display().to_string()));
        install(&self.stack, &args, &env)
    }
}

#[test]
fn install_pulls_what_the_engine_lacks_from_a_registry_with_auth_and_deploys() {
    let p = pushed("pull");
    let config = p.registry.docker_config("good", p.registry.password()).unwrap();
    let out = p.install(&config, &["--json"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    for image in [&p.images.standin, &p.images.caddy] {
        assert!(err.contains(&format!("pulling {image} from {}", p.registry.host())), "{err}");
        assert!(err.contains(&format!("ok {image}: pulled ")), "{err}");
    }
    assert!(p.images.on_engine().values().all(|on| *on));
    assert!(!err.contains(p.registry.password()) && !stdout(&out).contains(p.registry.password()));
    assert_eq!(status_file(&p.stack), "xray=active\nawg=skipped\nhysteria2=active\nnaive=active\n");

    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the report is JSON");
    let pulls = report["pulls"].as_array().expect("pulls");
    assert_eq!(pulls.len(), 2, "{pulls:?}");
    let mut total_bytes = 0;
    let mut longest = 0;
    for pull in pulls {
        assert_eq!(pull["registry"], p.registry.host().as_str());
        assert_eq!(pull["present"], false);
        total_bytes += pull["size"].as_u64().expect("size");
        longest = longest.max(pull["duration_ms"].as_u64().expect("duration"));
        eprintln!("pulled {} ({} bytes) in {} ms", pull["image"], pull["size"], pull["duration_ms"]);
    }
    eprintln!("pull phase: {total_bytes} bytes in {longest} ms (the pulls run at once)");

    // Present now: a re-run pulls nothing and changes nothing.
    let ids = container_ids(&p.stack);
    let again = p.install(&config, &[]);
    assert_eq!(code(&again), Some(0), "{}", stderr(&again));
    assert!(!stderr(&again).contains("pulling "), "{}", stderr(&again));
    assert_eq!(container_ids(&p.stack), ids);
}

#[test]
fn wrong_credentials_fail_with_exit_1_and_change_nothing() {
    let p = pushed("pull-auth");
    let good = p.registry.docker_config("good", p.registry.password()).unwrap();
    let out = p.install(&good, &[]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let (ids, status) = (container_ids(&p.stack), status_file(&p.stack));

    let wrong_password = "not-the-password-5d1e";
    let bad = p.registry.docker_config("bad", wrong_password).unwrap();
    let out = p.install(&bad, &["--pull", "always"]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let config_json = bad.join("config.json");
    let refused = format!("registry {} refused the credentials for ", p.registry.host());
    assert!(err.contains(&refused) && err.contains(&format!("(from {})", config_json.display())), "{err}");
    assert!(err.contains(&p.images.standin) || err.contains(&p.images.caddy), "{err}");
    assert!(!err.contains(wrong_password) && !stdout(&out).contains(wrong_password), "{err}");
    assert!(!err.contains("removing") && !err.contains("creating"), "{err}");
    assert_eq!(container_ids(&p.stack), ids, "no container was replaced");
    assert_eq!(status_file(&p.stack), status);
}

#[test]
fn no_credentials_an_unknown_tag_and_a_registry_that_is_down_are_clear_errors_before_anything_is_deployed() {
    let mut p = pushed("pull-down");
    let config = p.registry.docker_config("good", p.registry.password()).unwrap();
    let host = p.registry.host();

    let empty = p.registry.dir().join("no-credentials");
    std::fs::create_dir_all(&empty).unwrap();
    let out = p.install(&empty, &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let none = format!("and {} has none for it", empty.join("config.json").display());
    assert!(err.contains(&format!("registry {host} wants credentials to pull ")) && err.contains(&none), "{err}");

    let unknown = format!("{host}/{}/standin:no-such-tag", p.stack.name);
    let flag = format!("{},xray={unknown}", p.images.flag());
    let out = p.install(&config, &["--images", &flag]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("registry {host} has no image {unknown}")), "{err}");

    // The images pulled beside the unknown one are on the engine now: only `always` asks the registry.
    p.registry.stop();
    let out = p.install(&config, &["--pull", "always"]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let down = format!("cannot reach registry {host} to pull ");
    assert!(err.contains(&down) && err.contains("connection refused"), "{err}");
    assert!(container_ids(&p.stack).is_empty(), "nothing was deployed");
    assert!(!crate::deploy::paths(&p.stack).channels_status().exists(), "no status was written");
}
