//! A naiveproxy-shaped release tarball for release tests: `naiveproxy-v<ver>-linux-<arch>.tar.xz`
//! holding `naiveproxy-v<ver>-linux-<arch>/naive`, a small static binary built here with
//! `gcc -static` that answers `--version` like the real one (and `--uid`, to show its user) and,
//! run with its config, listens where the config says.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use edge_channels::image::{BuildContext, BuildRequest, Images};

/// The C source of the fake `naive`. Run as the image runs it (`naive CONFIG`), it opens a TCP
/// listener on the port of every `listen` URL of the config (`socks://0.0.0.0:1080`) and holds
/// each connection open until its client closes it, as naive's listeners wait for their client
/// to speak; it serves no health page, as the real one does not.
const FAKE_NAIVE_C: &str = r#"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#define MAX_FDS 64
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) { printf("naive %s\n", NAIVE_VERSION); return 0; }
    if (argc > 1 && strcmp(argv[1], "--uid") == 0) { printf("%u\n", (unsigned) getuid()); return 0; }
    if (argc != 2 || argv[1][0] == '-') { fprintf(stderr, "fake naive: --version, --uid or CONFIG\n"); return 2; }
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 1; }
    static char config[65536];
    size_t n = fread(config, 1, sizeof config - 1, f);
    fclose(f);
    config[n] = 0;
    struct pollfd fds[MAX_FDS];
    int listeners = 0, count = 0;
    const char *schemes[] = { "\"socks://", "\"http://" };
    for (int k = 0; k < 2; k++)
    for (char *url = strstr(config, schemes[k]); url && count < MAX_FDS / 2; url = strstr(url + 1, schemes[k])) {
        char *host = url + strlen(schemes[k]);
        char *colon = host + strcspn(host, "\"/ \n");
        while (colon > host && *colon != ':') colon--;
        int port = atoi(colon + 1);
        if (colon == host || port <= 0 || port > 65535) continue;
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY) };
        if (bind(fd, (struct sockaddr *) &addr, sizeof addr) != 0 || listen(fd, 16) != 0) { perror("listen"); return 1; }
        fprintf(stderr, "fake naive: listening on port %d\n", port);
        fds[count].fd = fd; fds[count].events = POLLIN; count++; listeners++;
    }
    if (listeners == 0) { fprintf(stderr, "fake naive: no listen URL in %s\n", argv[1]); return 1; }
    for (;;) {
        if (poll(fds, count, -1) < 0) { perror("poll"); return 1; }
        for (int i = 0; i < count; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (i < listeners) {
                int c = accept(fds[i].fd, NULL, NULL);
                if (c >= 0 && count < MAX_FDS) { fds[count].fd = c; fds[count].events = POLLIN; fds[count].revents = 0; count++; }
                else if (c >= 0) close(c);
            } else {
                char buf[512];
                if (read(fds[i].fd, buf, sizeof buf) <= 0) { close(fds[i].fd); fds[i] = fds[--count]; i--; }
            }
        }
    }
}
"#;

/// What to put in the tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaiveTarball {
    /// Upstream version the binary prints, e.g. `130.0.6723.40`.
    pub version: String,
    /// naiveproxy's arch name in the folder: `x64` or `arm64`.
    pub naive_arch: String,
    /// Whether the folder holds the `naive` binary at all.
    pub with_binary: bool,
}

impl NaiveTarball {
    /// A well-formed linux-x64 release of `version`.
    pub fn x64(version: &str) -> Self {
        Self { version: version.to_string(), naive_arch: "x64".to_string(), with_binary: true }
    }

    /// The top folder (and file stem): `naiveproxy-v<version>-1-linux-<arch>`.
    pub fn folder(&self) -> String {
        format!("naiveproxy-v{}-1-linux-{}", self.version, self.naive_arch)
    }

    /// Writes `<folder>.tar.xz` into `dir` and returns its path. The binary is compiled into `dir`.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let folder = self.folder();
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: String, bytes: &[u8], mode: u32| -> Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(mode);
            header.set_mtime(0);
            builder.append_data(&mut header, path, bytes).context("cannot append to the tarball")
        };
        if self.with_binary {
            let binary = fake_naive_binary(dir, &self.version)?;
            add(format!("{folder}/naive"), &binary, 0o755)?;
        }
        add(format!("{folder}/config.json"), br#"{"listen": "socks://127.0.0.1:1080"}"#, 0o644)?;
        add(format!("{folder}/USAGE.txt"), b"fake naiveproxy release for tests\n", 0o644)?;
        let tar = builder.into_inner().context("cannot finish the tarball")?;
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut tar.as_slice(), &mut xz).context("cannot xz the tarball")?;
        let path = dir.join(format!("{folder}.tar.xz"));
        std::fs::write(&path, xz).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// Compiles the fake `naive` (static, stripped) into `dir` and returns its bytes.
pub fn fake_naive_binary(dir: &Path, version: &str) -> Result<Vec<u8>> {
    let source = dir.join("fake-naive.c");
    let binary = dir.join("fake-naive");
    std::fs::write(&source, FAKE_NAIVE_C).with_context(|| format!("cannot write {}", source.display()))?;
    let output = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&binary)
        .arg(format!("-DNAIVE_VERSION=\"{version}\""))
        .arg(&source)
        .output()
        .context("cannot run gcc (apt-get install gcc libc6-dev)")?;
    ensure!(output.status.success(), "gcc -static failed: {}", String::from_utf8_lossy(&output.stderr));
    std::fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))
}

/// Builds the naive image as `cargo xtask release --base-image scratch` does (the release tests'
/// base), around the fake binary: the workspace's `Dockerfile.naive` and the binary as `naive`
/// are the whole context, `BASE_IMAGE=scratch`. Tags it `tag`; the binary is compiled in `dir`.
///
/// The release itself also builds every release binary first, which takes minutes; the image is
/// this build.
pub async fn build_release_image(images: &Images, dir: &Path, tag: &str) -> Result<()> {
    let dockerfile_path = crate::docker::workspace_root().join("Dockerfile.naive");
    let dockerfile =
        std::fs::read(&dockerfile_path).with_context(|| format!("cannot read {}", dockerfile_path.display()))?;
    let binary = fake_naive_binary(dir, "130.0.6723.40")?;
    let mut context = BuildContext::new();
    context.add_file("Dockerfile", dockerfile, 0o644)?;
    context.add_file("naive", binary, 0o755)?;
    let mut request = BuildRequest::new(tag);
    request.build_args.insert("BASE_IMAGE".to_owned(), "scratch".to_owned());
    images.build_image(&context, &request).await.with_context(|| format!("building {tag} from Dockerfile.naive"))?;
    Ok(())
}
