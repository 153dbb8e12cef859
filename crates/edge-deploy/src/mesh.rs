//! The host side of a mesh channel (the partner edge's `awg`): a WireGuard or AmneziaWG
//! interface, brought up from its rendered config and judged by what the host reports.
//!
//! [`MeshHost`] is the seam, as `Engine` is for Docker: [`WgTools`] runs `awg-quick` when the
//! host has it, else `wg-quick` (which falls back to `wireguard-go` without a kernel module),
//! and reads `wg show IFACE latest-handshakes`. Unit tests use a fake.
//!
//! A mesh channel is `active` only while its interface exists and, when a peer is
//! configured, a handshake with it is fresh: within [`HANDSHAKE_MAX_AGE`], WireGuard's
//! reject-after time (a session rekeys every 120 s while used and is dropped after 180 s).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use edge_core::ChannelState;
use serde::Serialize;

/// How old the last handshake may be for the mesh to count as up.
pub const HANDSHAKE_MAX_AGE: Duration = Duration::from_secs(180);

/// The environment variable that overrides [`HANDSHAKE_MAX_AGE`], in seconds.
pub const HANDSHAKE_MAX_AGE_VAR: &str = "EDGE_AWG_HANDSHAKE_MAX_AGE";

/// [`HANDSHAKE_MAX_AGE`], or the seconds `EDGE_AWG_HANDSHAKE_MAX_AGE` gives through `lookup`.
pub fn handshake_max_age(lookup: impl Fn(&str) -> Option<String>) -> Duration {
    lookup(HANDSHAKE_MAX_AGE_VAR)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(HANDSHAKE_MAX_AGE, Duration::from_secs)
}

/// One peer of an interface as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerSeen {
    /// Its public key.
    pub public_key: String,
    /// Epoch seconds of its last handshake; `None`: never.
    pub latest_handshake: Option<u64>,
}

/// What the host says about an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum MeshProbe {
    /// No such interface.
    Missing,
    /// It exists but its WireGuard state cannot be read.
    Unreadable {
        /// Why.
        reason: String,
    },
    /// It exists, with these peers.
    Up {
        /// Its peers.
        peers: Vec<PeerSeen>,
    },
}

/// The host's WireGuard tools, as the mesh channel needs them.
pub trait MeshHost: std::fmt::Debug + Send + Sync {
    /// Brings `iface` up from the wg-quick config at `config` (named `IFACE.conf`), replacing
    /// the interface if it exists; the error says what the tool said.
    fn up(&self, iface: &str, config: &Path) -> Result<(), String>;
    /// Looks at `iface`.
    fn probe(&self, iface: &str) -> MeshProbe;
}

/// The state a probe makes of a mesh channel, and why, at `now` (epoch seconds).
pub fn judge(iface: &str, probe: &MeshProbe, now: u64, max_age: Duration) -> (ChannelState, String) {
    let failed = ChannelState::FailedAtRuntime;
    let peers = match probe {
        MeshProbe::Missing => return (failed, format!("interface {iface} does not exist")),
        MeshProbe::Unreadable { reason } => return (failed, format!("interface {iface} cannot be read: {reason}")),
        MeshProbe::Up { peers } if peers.is_empty() => {
            return (ChannelState::Active, format!("interface {iface} is up (no peer configured)"));
        }
        MeshProbe::Up { peers } => peers,
    };
    let limit = max_age.as_secs();
    let freshest =
        peers.iter().filter_map(|p| p.latest_handshake.map(|t| (p, now.saturating_sub(t)))).min_by_key(|(_, age)| *age);
    match freshest {
        None => (failed, format!("interface {iface}: no handshake yet with peer {}", short(&peers[0].public_key))),
        Some((p, age)) if age <= limit => (
            ChannelState::Active,
            format!("interface {iface}: handshake with peer {} {age}s ago", short(&p.public_key)),
        ),
        Some((p, age)) => (
            failed,
            format!("interface {iface}: last handshake with peer {} {age}s ago (limit {limit}s)", short(&p.public_key)),
        ),
    }
}

/// A public key's first characters: enough to tell peers apart in a message.
fn short(key: &str) -> String {
    let head: String = key.chars().take(8).collect();
    if head.len() < key.len() { format!("{head}…") } else { head }
}

/// The real tools, run on this host or inside a network namespace.
#[derive(Debug, Clone, Default)]
pub struct WgTools {
    netns: Option<String>,
}

impl WgTools {
    /// The tools acting in network namespace `name` (`ip netns exec NAME ...`).
    pub fn in_netns(name: &str) -> Self {
        Self { netns: Some(name.to_owned()) }
    }

    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    /// `(quick, show)`: AmneziaWG's tools when installed, else WireGuard's.
    fn tools() -> (&'static str, &'static str) {
        if on_path("awg-quick") { ("awg-quick", "awg") } else { ("wg-quick", "wg") }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let out = self.command(program).args(args).output().map_err(|e| format!("cannot run {program}: {e}"))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        // wg-quick echoes each command it runs as `[#] ...`: the error is what is left.
        let said: Vec<&str> =
            stderr.lines().filter(|l| !l.starts_with("[#]") && !l.trim().is_empty()).rev().take(3).collect();
        let said: Vec<&str> = said.into_iter().rev().collect();
        Err(format!("{program} {} failed ({}): {}", args.join(" "), out.status, said.join("; ")))
    }
}

impl MeshHost for WgTools {
    fn up(&self, iface: &str, config: &Path) -> Result<(), String> {
        let (quick, _) = Self::tools();
        if quick == "wg-quick" && amneziawg_parameters(config) {
            return Err(format!(
                "{} sets AmneziaWG's obfuscation parameters, which only awg-quick understands: install amneziawg-tools or leave AWG_JC..AWG_H4 unset",
                config.display()
            ));
        }
        let path = config.to_string_lossy();
        if self.probe(iface) != MeshProbe::Missing {
            // A re-install replaces the interface: its address or peer may have changed.
            if self.run(quick, &["down", &path]).is_err() {
                self.run("ip", &["link", "delete", "dev", iface])?;
            }
        }
        self.run(quick, &["up", &path]).map(drop)
    }

    fn probe(&self, iface: &str) -> MeshProbe {
        match self.run("ip", &["link", "show", "dev", iface]) {
            Ok(_) => {}
            Err(e) if e.contains("does not exist") => return MeshProbe::Missing,
            Err(reason) => return MeshProbe::Unreadable { reason },
        }
        let (_, show) = Self::tools();
        match self.run(show, &["show", iface, "latest-handshakes"]) {
            Ok(text) => MeshProbe::Up { peers: parse_handshakes(&text) },
            Err(reason) => MeshProbe::Unreadable { reason },
        }
    }
}

/// `wg show IFACE latest-handshakes`: `PUBKEY<TAB>EPOCH` per peer, 0 for never.
pub fn parse_handshakes(text: &str) -> Vec<PeerSeen> {
    text.lines()
        .filter_map(|l| {
            let (key, at) = l.split_once('\t')?;
            let at: u64 = at.trim().parse().ok()?;
            Some(PeerSeen { public_key: key.trim().to_owned(), latest_handshake: (at > 0).then_some(at) })
        })
        .collect()
}

/// Whether a config sets one of AmneziaWG's obfuscation keys.
fn amneziawg_parameters(config: &Path) -> bool {
    const KEYS: &[&str] = &["Jc", "Jmin", "Jmax", "S1", "S2", "H1", "H2", "H3", "H4"];
    let Ok(text) = std::fs::read_to_string(config) else { return false };
    text.lines().filter_map(|l| l.split_once('=')).any(|(k, _)| KEYS.contains(&k.trim()))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
pub(crate) mod fake {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use super::{MeshHost, MeshProbe};

    /// A host whose interfaces are what the test says.
    #[derive(Debug, Default)]
    pub(crate) struct FakeMesh {
        pub(crate) probes: Mutex<BTreeMap<String, MeshProbe>>,
        /// Set by `up`: the interface and its config.
        pub(crate) brought_up: Mutex<Vec<(String, PathBuf)>>,
        /// What `up` leaves behind.
        pub(crate) after_up: Option<MeshProbe>,
        /// `up` fails with this.
        pub(crate) up_error: Option<String>,
    }

    impl FakeMesh {
        pub(crate) fn set(&self, iface: &str, probe: MeshProbe) {
            self.probes.lock().unwrap().insert(iface.to_owned(), probe);
        }
    }

    impl MeshHost for FakeMesh {
        fn up(&self, iface: &str, config: &Path) -> Result<(), String> {
            self.brought_up.lock().unwrap().push((iface.to_owned(), config.to_owned()));
            if let Some(e) = &self.up_error {
                return Err(e.clone());
            }
            if let Some(p) = &self.after_up {
                self.set(iface, p.clone());
            }
            Ok(())
        }

        fn probe(&self, iface: &str) -> MeshProbe {
            self.probes.lock().unwrap().get(iface).cloned().unwrap_or(MeshProbe::Missing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "1Zg1v1nu3AwPWj+V/f51pXznc/5TaReXmyzLx+4asxE=";

    fn up(at: Option<u64>) -> MeshProbe {
        MeshProbe::Up { peers: vec![PeerSeen { public_key: KEY.to_owned(), latest_handshake: at }] }
    }

    fn check(probe: MeshProbe, expected: (ChannelState, &str)) {
        let got = judge("awg0", &probe, 1_000, Duration::from_secs(180));
        assert_eq!((got.0, got.1.as_str()), expected);
    }

    #[test]
    fn active_needs_the_interface_and_a_fresh_handshake() {
        use ChannelState::{Active, FailedAtRuntime};
        check(MeshProbe::Missing, (FailedAtRuntime, "interface awg0 does not exist"));
        check(
            MeshProbe::Unreadable { reason: "wg failed".into() },
            (FailedAtRuntime, "interface awg0 cannot be read: wg failed"),
        );
        check(MeshProbe::Up { peers: vec![] }, (Active, "interface awg0 is up (no peer configured)"));
        check(up(None), (FailedAtRuntime, "interface awg0: no handshake yet with peer 1Zg1v1nu…"));
        check(up(Some(900)), (Active, "interface awg0: handshake with peer 1Zg1v1nu… 100s ago"));
        check(up(Some(820)), (Active, "interface awg0: handshake with peer 1Zg1v1nu… 180s ago"));
        check(
            up(Some(819)),
            (FailedAtRuntime, "interface awg0: last handshake with peer 1Zg1v1nu… 181s ago (limit 180s)"),
        );
    }

    #[test]
    fn handshakes_parse_from_wg_show() {
        let peers = parse_handshakes(&format!("{KEY}\t1796092208\nother=\t0\ngarbage\n"));
        assert_eq!(
            peers,
            [
                PeerSeen { public_key: KEY.to_owned(), latest_handshake: Some(1796092208) },
                PeerSeen { public_key: "other=".to_owned(), latest_handshake: None },
            ]
        );
    }

    #[test]
    fn the_freshness_window_can_be_shortened() {
        assert_eq!(handshake_max_age(|_| None), HANDSHAKE_MAX_AGE);
        assert_eq!(handshake_max_age(|_| Some("5".into())), Duration::from_secs(5));
        assert_eq!(handshake_max_age(|_| Some("soon".into())), HANDSHAKE_MAX_AGE);
        assert_eq!(handshake_max_age(|_| Some("0".into())), HANDSHAKE_MAX_AGE);
    }
}
