//! Files in named volumes on the real Docker engine, through a `FROM scratch` helper image
//! that has no shell: written and read back byte for byte, missing ones read as nothing, and
//! no helper container left behind.

use edge_channels::{DeployError, DockerEngine, Engine};
use edge_tests::docker::{STANDIN_IMAGE, docker_out, provision_local_images};

/// A named volume of this test run, removed (forcibly) when dropped, even after a failure.
struct TestVolume(String);

impl TestVolume {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        Self(format!("edge-it-{tag}-{}-{nanos}", std::process::id()))
    }

    /// The volume helpers the engine still has for it.
    fn helpers_left(&self) -> String {
        docker_out(&["ps", "-aq", "--filter", &format!("label=edge.volume-helper={}", self.0)])
    }
}

impl Drop for TestVolume {
    fn drop(&mut self) {
        let helpers = self.helpers_left();
        if !helpers.trim().is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(helpers.split_whitespace());
            docker_out(&args);
        }
        docker_out(&["volume", "rm", "-f", &self.0]);
    }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime").block_on(future)
}

#[test]
fn a_file_written_into_a_volume_reads_back_byte_identical_until_the_volume_is_removed() {
    provision_local_images();
    let volume = TestVolume::new("volume-files");
    let name = volume.0.as_str();
    // Every byte value, and more than one tar block.
    let marker: Vec<u8> = (0..=255u8).cycle().take(3000).collect();

    block_on(async {
        let engine = DockerEngine::connect().await.expect("the docker engine answers");
        let read = |path: &'static str| engine.read_volume_file(name, path, STANDIN_IMAGE);

        assert_eq!(read("gate/marker").await.expect("reading from a missing volume"), None);
        let missing = engine.write_volume_file(name, "marker", b"x", STANDIN_IMAGE).await.unwrap_err();
        assert!(matches!(&missing, DeployError::WriteVolumeFile { source, .. } if source.is_not_found()), "{missing}");
        assert!(!engine.volume_exists(name).await.unwrap(), "writing must not create the volume");

        assert!(engine.ensure_volume(name, &Default::default()).await.unwrap());
        engine.write_volume_file(name, "gate/marker", &marker, STANDIN_IMAGE).await.expect("writing the marker");
        assert_eq!(read("gate/marker").await.expect("reading the marker"), Some(marker.clone()));
        assert_eq!(read("gate/other").await.expect("reading a missing file"), None);
        assert_eq!(read("nowhere/marker").await.expect("reading in a missing folder"), None);

        engine.write_volume_file(name, "gate/marker", b"", STANDIN_IMAGE).await.expect("replacing the marker");
        assert_eq!(read("gate/marker").await.unwrap(), Some(Vec::new()));

        let folder = read("gate").await.unwrap_err();
        assert!(matches!(folder, DeployError::ReadVolumeFile { .. }), "{folder}");
        assert_eq!(folder.to_string(), format!("cannot read gate from volume {name}: it is a folder, not a file"));
        for path in ["/etc/passwd", "../marker", "gate/../marker"] {
            let refused = engine.write_volume_file(name, path, b"x", STANDIN_IMAGE).await.unwrap_err();
            assert!(matches!(refused, DeployError::InvalidVolumePath { .. }), "{path}: {refused}");
        }
        let no_image = engine.read_volume_file(name, "gate/marker", "edge-it-no-such-image:0").await.unwrap_err();
        assert!(no_image.to_string().contains("edge-it-no-such-image:0"), "{no_image}");

        assert_eq!(volume.helpers_left().trim(), "", "every helper container is removed");
        assert!(engine.remove_volume(name).await.expect("removing the volume"), "the volume was there");
        assert!(!engine.volume_exists(name).await.unwrap());
        assert_eq!(read("gate/marker").await.unwrap(), None);
    });
}

#[test]
fn a_volume_copied_into_another_keeps_every_file_mode_owner_and_link() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    provision_local_images();
    let (from, to) = (TestVolume::new("copy-from"), TestVolume::new("copy-to"));
    let big: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    block_on(async {
        let engine = DockerEngine::connect().await.expect("the docker engine answers");
        let missing = engine.copy_volume(&from.0, &to.0, STANDIN_IMAGE).await.unwrap_err();
        assert!(matches!(&missing, DeployError::CopyVolume { source, .. } if source.is_not_found()), "{missing}");
        assert!(!engine.volume_exists(&to.0).await.unwrap(), "copying must not create a volume");
        for v in [&from.0, &to.0] {
            engine.ensure_volume(v, &Default::default()).await.unwrap();
        }
    });
    let mountpoint =
        |v: &str| std::path::PathBuf::from(docker_out(&["volume", "inspect", "-f", "{{.Mountpoint}}", v]).trim());
    let src = mountpoint(&from.0);
    std::fs::create_dir_all(src.join("caddy/certificates/acme")).unwrap();
    std::fs::write(src.join("caddy/certificates/acme/site.key"), b"private key").unwrap();
    std::fs::set_permissions(src.join("caddy/certificates/acme/site.key"), std::fs::Permissions::from_mode(0o600))
        .unwrap();
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::os::unix::fs::symlink("caddy/certificates", src.join("certs")).unwrap();
    std::os::unix::fs::chown(src.join("big.bin"), Some(1000), Some(1001)).unwrap();
    std::os::unix::fs::chown(&src, Some(65532), Some(65532)).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).unwrap();

    block_on(async {
        let engine = DockerEngine::connect().await.expect("the docker engine answers");
        engine.copy_volume(&from.0, &to.0, STANDIN_IMAGE).await.expect("copying the volume");
    });
    let dst = mountpoint(&to.0);
    assert_eq!(std::fs::read(dst.join("caddy/certificates/acme/site.key")).unwrap(), b"private key");
    assert_eq!(std::fs::metadata(dst.join("caddy/certificates/acme/site.key")).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::read(dst.join("big.bin")).unwrap(), big);
    let meta = std::fs::metadata(dst.join("big.bin")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1001), "owners are kept");
    assert_eq!(std::fs::read_link(dst.join("certs")).unwrap(), std::path::Path::new("caddy/certificates"));
    let root = std::fs::metadata(&dst).unwrap();
    assert_eq!((root.uid(), root.mode() & 0o7777), (65532, 0o750), "the volume root keeps its owner and mode");
    assert!(from.helpers_left().trim().is_empty() && to.helpers_left().trim().is_empty(), "no helper is left");
}
