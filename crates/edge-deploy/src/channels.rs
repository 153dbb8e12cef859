//! Keeping `channels-status.env` true at runtime: a pool channel is `failed_at_runtime` while
//! its upstream is unhealthy or one of its containers is down, and `active` again once the
//! front proxy sees its upstream healthy (and no container of it is down).
//!
//! Only channels of the front proxy's pool flip: a channel out of the pool (skipped, failed
//! at render, or failed during install) stays as install left it, because `active` means
//! "in the pool" and only a new install puts it back there. A channel whose container the
//! operator stopped (`edge stop`) is not watched at all: that is no failure.
//!
//! A host-level mesh channel (`awg`) flips the same two ways on what the host's WireGuard
//! tools report ([`apply_mesh`]): `active` while its interface exists and, with a peer, the
//! last handshake is fresh ([`crate::mesh::judge`]).
//!
//! Every change is a read-modify-write of `channels-status.env` under the state lock
//! ([`apply`]), so the watchdog never writes back a state install has replaced meanwhile.
//!
//! A state change never re-renders the front proxy's pool: a `failed_at_runtime` channel stays in
//! it and Caddy's health checks keep traffic off it (and bring it back). Caddy has already
//! skipped a dead channel by the time the engine reports the death, and the render's inputs
//! (`--set`, the environment) are install's alone.

use std::time::Duration;

use edge_core::{ChannelState, ChannelsStatus, InstallRecord, Paths, PoolMember, Stack, UpstreamHealth};
use serde::Serialize;

use crate::OpError;
use crate::mesh::{MeshHost, judge};

/// A state change made to `channels-status.env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelChange {
    /// The channel.
    pub channel: String,
    /// Its state before.
    pub from: ChannelState,
    /// Its state now.
    pub to: ChannelState,
    /// The evidence.
    pub reason: String,
}

/// Whether a pool channel is watched: its state is one the watchdog owns (or not recorded).
pub fn watched(status: &ChannelsStatus, channel: &str) -> bool {
    matches!(status.get(channel), None | Some(ChannelState::Active | ChannelState::FailedAtRuntime))
}

/// Applies the evidence to `status`; returns what changed.
///
/// `health` is the upstream's health in the metrics (`None`: unknown, metrics unreadable or
/// no series); `down` says why a container of the channel is down, if one is.
pub fn reconcile(
    status: &mut ChannelsStatus,
    pool: &[PoolMember],
    health: impl Fn(&str) -> Option<UpstreamHealth>,
    down: impl Fn(&str) -> Option<String>,
) -> Vec<ChannelChange> {
    let mut changes = Vec::new();
    for member in pool {
        if !watched(status, &member.channel) {
            continue;
        }
        let current = status.get(&member.channel).unwrap_or(ChannelState::Active);
        let (target, reason) = match (down(&member.channel), health(&member.upstream)) {
            (Some(reason), _) => (ChannelState::FailedAtRuntime, reason),
            (None, Some(UpstreamHealth::Unhealthy)) => {
                (ChannelState::FailedAtRuntime, format!("upstream {} unhealthy", member.upstream))
            }
            (None, Some(UpstreamHealth::Healthy)) => {
                (ChannelState::Active, format!("upstream {} healthy", member.upstream))
            }
            // Unknown: nothing to go on, keep what the file says.
            (None, None) => continue,
        };
        if target != current || status.get(&member.channel).is_none() {
            status.set(&member.channel, target);
            if target != current {
                changes.push(ChannelChange { channel: member.channel.clone(), from: current, to: target, reason });
            }
        }
    }
    changes
}

/// Applies the evidence to `channels-status.env` under the state lock; returns what changed.
pub fn apply(
    paths: &Paths,
    pool: &[PoolMember],
    health: impl Fn(&str) -> Option<UpstreamHealth>,
    down: impl Fn(&str) -> Option<String>,
) -> Result<Vec<ChannelChange>, OpError> {
    Ok(ChannelsStatus::update(paths, |status| reconcile(status, pool, health, down))?)
}

/// The verdict on one mesh channel: its state and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshVerdict {
    /// The channel.
    pub channel: String,
    /// The state the host's report makes of it.
    pub state: ChannelState,
    /// The evidence.
    pub reason: String,
}

/// Looks at every mesh channel of `stack` the watchdog owns (`active` or `failed_at_runtime`
/// in `status`; one out of the pool stays as install left it).
pub fn judge_meshes(
    stack: &Stack,
    status: &ChannelsStatus,
    mesh: &dyn MeshHost,
    now: u64,
    max_age: Duration,
) -> Vec<MeshVerdict> {
    stack
        .channels
        .iter()
        .filter(|c| matches!(status.get(&c.id), Some(ChannelState::Active | ChannelState::FailedAtRuntime)))
        .filter_map(|c| {
            let (_, iface) = stack.interface_of(&c.id)?;
            let (state, reason) = judge(iface, &mesh.probe(iface), now, max_age);
            Some(MeshVerdict { channel: c.id.clone(), state, reason })
        })
        .collect()
}

/// Applies mesh verdicts to `status`; returns what changed.
pub fn reconcile_mesh(status: &mut ChannelsStatus, verdicts: &[MeshVerdict]) -> Vec<ChannelChange> {
    let mut changes = Vec::new();
    for v in verdicts {
        let Some(current @ (ChannelState::Active | ChannelState::FailedAtRuntime)) = status.get(&v.channel) else {
            continue;
        };
        if current != v.state {
            status.set(&v.channel, v.state);
            changes.push(ChannelChange {
                channel: v.channel.clone(),
                from: current,
                to: v.state,
                reason: v.reason.clone(),
            });
        }
    }
    changes
}

/// Probes the stack's mesh channels and applies the verdicts to `channels-status.env` under
/// the state lock; returns the verdicts and what changed.
pub fn apply_mesh(
    paths: &Paths,
    stack: &Stack,
    mesh: &dyn MeshHost,
    now: u64,
    max_age: Duration,
) -> Result<(Vec<MeshVerdict>, Vec<ChannelChange>), OpError> {
    let status = ChannelsStatus::load(&paths.channels_status())?;
    // The tools run outside the lock; the write re-reads the file under it.
    let verdicts = judge_meshes(stack, &status, mesh, now, max_age);
    if verdicts.is_empty() {
        return Ok((verdicts, Vec::new()));
    }
    let changes = ChannelsStatus::update(paths, |status| reconcile_mesh(status, &verdicts))?;
    Ok((verdicts, changes))
}

/// The pool members to watch: recorded in the pool, in a state the watchdog owns, and with no
/// service the operator stopped. `None` in legacy mode (no pool recorded).
pub fn watched_pool(stack: &Stack, record: &InstallRecord, status: Option<&ChannelsStatus>) -> Option<Vec<PoolMember>> {
    let pool = record.pool.as_ref()?;
    Some(
        pool.iter()
            .filter(|m| status.is_none_or(|s| watched(s, &m.channel)))
            .filter(|m| !stopped_channel(stack, record, &m.channel))
            .cloned()
            .collect(),
    )
}

/// Whether the operator stopped a service that carries `channel`.
pub fn stopped_channel(stack: &Stack, record: &InstallRecord, channel: &str) -> bool {
    stack.services_of(channel).any(|s| record.stopped.contains(&s.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Vec<PoolMember> {
        vec![PoolMember::new("xray", "u1"), PoolMember::new("naive", "u3")]
    }

    /// `health`: (upstream, healthy?) pairs; `down`: channels with a container down.
    fn check(status: &str, health: &[(&str, bool)], down: &[&str], expected_status: &str, expected_changes: &[&str]) {
        let mut s = ChannelsStatus::parse(status).unwrap();
        let changes = reconcile(
            &mut s,
            &pool(),
            |u| {
                health
                    .iter()
                    .find(|(n, _)| *n == u)
                    .map(|(_, h)| if *h { UpstreamHealth::Healthy } else { UpstreamHealth::Unhealthy })
            },
            |c| down.contains(&c).then(|| format!("container of {c} exited")),
        );
        assert_eq!(s.to_string(), expected_status);
        let got: Vec<String> = changes.iter().map(|c| format!("{} {}->{}", c.channel, c.from, c.to)).collect();
        assert_eq!(got, expected_changes);
    }

    #[test]
    fn the_status_file_follows_the_evidence() {
        let all = "xray=active\nawg=active\nhysteria2=skipped\nnaive=active\n";
        // Healthy: nothing changes.
        check(all, &[("u1", true), ("u3", true)], &[], all, &[]);
        // An unhealthy upstream fails its channel.
        check(
            all,
            &[("u1", true), ("u3", false)],
            &[],
            "xray=active\nawg=active\nhysteria2=skipped\nnaive=failed_at_runtime\n",
            &["naive active->failed_at_runtime"],
        );
        // A dead container fails its channel even while the proxy still says healthy.
        check(
            all,
            &[("u1", true), ("u3", true)],
            &["naive"],
            "xray=active\nawg=active\nhysteria2=skipped\nnaive=failed_at_runtime\n",
            &["naive active->failed_at_runtime"],
        );
        // Recovery needs the proxy's word.
        let failed = "xray=active\nnaive=failed_at_runtime\n";
        check(failed, &[("u1", true)], &[], failed, &[]);
        check(
            failed,
            &[("u1", true), ("u3", true)],
            &[],
            "xray=active\nnaive=active\n",
            &["naive failed_at_runtime->active"],
        );
        check(failed, &[("u3", true)], &["naive"], failed, &[]);
    }

    #[test]
    fn channels_out_of_the_pool_are_left_alone() {
        let s = "xray=active\nnaive=failed_at_render\n";
        check(s, &[("u1", true), ("u3", true)], &[], s, &[]);
        let s = "xray=active\nnaive=skipped\n";
        check(s, &[("u3", false)], &["naive"], s, &[]);
    }

    #[test]
    fn an_unlisted_pool_channel_is_recorded() {
        check("xray=active\n", &[("u3", true)], &[], "xray=active\nnaive=active\n", &[]);
        check(
            "xray=active\n",
            &[("u3", false)],
            &[],
            "xray=active\nnaive=failed_at_runtime\n",
            &["naive active->failed_at_runtime"],
        );
    }
}

#[cfg(test)]
mod watched_pool_tests {
    use super::*;

    #[test]
    fn stopped_and_settled_channels_are_not_watched() {
        let stack = Stack::partner_edge();
        let pool = vec![
            PoolMember::new("xray", "127.0.0.1:3081"),
            PoolMember::new("hysteria2", "127.0.0.1:3082"),
            PoolMember::new("naive", "127.0.0.1:3083"),
        ];
        let mut record = InstallRecord { pool: Some(pool), ..Default::default() };
        let status = ChannelsStatus::parse(
            "xray=active
hysteria2=failed_at_render
naive=failed_at_runtime
",
        )
        .unwrap();
        let ids = |r: &InstallRecord| -> Vec<String> {
            watched_pool(&stack, r, Some(&status)).unwrap().into_iter().map(|m| m.channel).collect()
        };
        assert_eq!(ids(&record), ["xray", "naive"]);
        record.stopped.insert("naive".into());
        assert_eq!(ids(&record), ["xray"]);
        assert!(stopped_channel(&stack, &record, "naive"));
        assert_eq!(watched_pool(&stack, &InstallRecord::default(), None), None);
    }
}
