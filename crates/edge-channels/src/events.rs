//! Following the engine's container events for one stack: a background task subscribes to
//! `/events` filtered by a label (the stack's Compose project), reconnects with backoff
//! when the engine goes away, and hands over [`WatchItem`]s through [`ContainerEvents::next`].
//!
//! A lost engine is data ([`WatchItem::Lost`]), not an error: the watchdog keeps ticking and
//! says so. On reconnection the subscription asks for the events since the last one seen
//! (the engine replays what it still has), and replays already seen are dropped, so a short
//! outage loses nothing the engine kept. No bollard type leaves this module.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::engine::{HealthStatus, LABEL_CHANNEL, LABEL_COMPOSE_SERVICE};

/// What happened to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerAction {
    /// Its process started (also after a restart by the restart policy).
    Start,
    /// Its process exited.
    Die {
        /// The exit code, when the engine gave one.
        exit_code: Option<i64>,
    },
    /// It was stopped (follows a `Die`).
    Stop,
    /// A signal was sent to it (it may survive).
    Kill {
        /// The signal, e.g. `15`.
        signal: Option<String>,
    },
    /// Its engine health check changed verdict.
    Health(HealthStatus),
    /// The kernel killed it for lack of memory.
    Oom,
    /// It was restarted.
    Restart,
    /// It was removed.
    Destroy,
    /// Any other container action, as the engine names it.
    Other(String),
}

impl ContainerAction {
    /// The engine's action word (`die`, `health_status: unhealthy`...).
    pub fn parse(action: &str, exit_code: Option<i64>, signal: Option<String>) -> Self {
        if let Some(rest) = action.strip_prefix("health_status") {
            return match rest.trim_start_matches(':').trim() {
                "healthy" => Self::Health(HealthStatus::Healthy),
                "unhealthy" => Self::Health(HealthStatus::Unhealthy),
                "starting" => Self::Health(HealthStatus::Starting),
                _ => Self::Other(action.to_owned()),
            };
        }
        match action {
            "start" => Self::Start,
            "die" => Self::Die { exit_code },
            "stop" => Self::Stop,
            "kill" => Self::Kill { signal },
            "oom" => Self::Oom,
            "restart" => Self::Restart,
            "destroy" => Self::Destroy,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One container event of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// Container id.
    pub id: String,
    /// Container name, without the leading `/`.
    pub name: String,
    /// What happened.
    pub action: ContainerAction,
    /// The channel its `edge.channel` label names, if any.
    pub channel: Option<String>,
    /// The service its `com.docker.compose.service` label names, if any.
    pub service: Option<String>,
    /// When, in nanoseconds since the epoch (0 when the engine did not say).
    pub time_nanos: i64,
}

/// What the watcher hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// Subscribed (first time, or again after [`WatchItem::Lost`]).
    Connected {
        /// Where the engine is.
        endpoint: String,
        /// Whether this follows a lost connection (events may have been missed: look again).
        reconnected: bool,
    },
    /// A container event.
    Event(ContainerEvent),
    /// The engine did not answer or closed the stream; the watcher retries after `retry_in`.
    Lost {
        /// Where the engine is.
        endpoint: String,
        /// Why.
        reason: String,
        /// When the next attempt is.
        retry_in: Duration,
    },
}

/// How to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowOptions {
    /// Only containers carrying this label (`key`, `value`), e.g. the Compose project.
    pub label: (String, String),
    /// First wait before reconnecting.
    pub backoff_min: Duration,
    /// Longest wait before reconnecting.
    pub backoff_max: Duration,
    /// The engine's unix socket; `None`: the engine `DOCKER_HOST` names (the local socket by default).
    pub socket: Option<PathBuf>,
}

impl FollowOptions {
    /// Containers labelled `key=value`; backoff from 250 ms doubling to 10 s.
    pub fn label(key: &str, value: &str) -> Self {
        Self {
            label: (key.to_owned(), value.to_owned()),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            socket: None,
        }
    }
}

/// The container events of one stack, followed by a background task (stopped on drop).
#[derive(Debug)]
pub struct ContainerEvents {
    rx: mpsc::Receiver<WatchItem>,
    task: JoinHandle<()>,
}

impl ContainerEvents {
    /// Starts following; must be called inside a tokio runtime.
    pub fn follow(options: FollowOptions) -> Self {
        let (tx, rx) = mpsc::channel(256);
        let task = tokio::spawn(watch(options, tx));
        Self { rx, task }
    }

    /// The next item; `None` only if the background task ended. Cancel-safe (for `select!`).
    pub async fn next(&mut self) -> Option<WatchItem> {
        self.rx.recv().await
    }
}

impl Drop for ContainerEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn endpoint(options: &FollowOptions) -> String {
    match &options.socket {
        Some(path) => format!("unix://{}", path.display()),
        None => std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned()),
    }
}

fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// `since` for the events API: `SECONDS.NANOS`.
fn since_arg(nanos: i64) -> String {
    format!("{}.{:09}", nanos.div_euclid(1_000_000_000), nanos.rem_euclid(1_000_000_000))
}

async fn connect(options: &FollowOptions) -> Result<Docker, String> {
    let docker = match &options.socket {
        Some(path) => Docker::connect_with_unix(&path.to_string_lossy(), 120, bollard::API_DEFAULT_VERSION),
        None => Docker::connect_with_defaults(),
    };
    docker.map_err(|e| e.to_string())?.negotiate_version().await.map_err(|e| e.to_string())
}

/// The watch loop: subscribe, forward, and on failure wait and subscribe again from the last event seen.
async fn watch(options: FollowOptions, tx: mpsc::Sender<WatchItem>) {
    let endpoint = endpoint(&options);
    // Events from just before the start count: a container that dies while we connect is not missed.
    let mut last_seen = now_nanos() - 1_000_000_000;
    let mut backoff = options.backoff_min;
    let mut lost = false;
    let filters = HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        ("label".to_owned(), vec![format!("{}={}", options.label.0, options.label.1)]),
    ]);
    loop {
        let reason = match connect(&options).await {
            Err(reason) => reason,
            Ok(docker) => {
                let query = EventsOptionsBuilder::new().since(&since_arg(last_seen)).filters(&filters).build();
                let mut stream = docker.events(Some(query));
                let connected = WatchItem::Connected { endpoint: endpoint.clone(), reconnected: lost };
                if tx.send(connected).await.is_err() {
                    return;
                }
                backoff = options.backoff_min;
                let mut reason = "the engine closed the event stream".to_owned();
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(message) => {
                            let Some(event) = container_event(message) else { continue };
                            // Replays of what was already handed over are dropped.
                            if event.time_nanos != 0 && event.time_nanos <= last_seen {
                                continue;
                            }
                            last_seen = last_seen.max(event.time_nanos);
                            if tx.send(WatchItem::Event(event)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            reason = e.to_string();
                            break;
                        }
                    }
                }
                reason
            }
        };
        lost = true;
        let lost_item = WatchItem::Lost { endpoint: endpoint.clone(), reason, retry_in: backoff };
        if tx.send(lost_item).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(options.backoff_max);
    }
}

/// A container event out of the engine's message; `None` for other object types.
fn container_event(message: EventMessage) -> Option<ContainerEvent> {
    if message.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let action = message.action?;
    let actor = message.actor.unwrap_or_default();
    let mut attributes = actor.attributes.unwrap_or_default();
    let exit_code = attributes.get("exitCode").and_then(|c| c.parse().ok());
    let signal = attributes.remove("signal");
    let time_nanos =
        message.time_nano.or_else(|| message.time.map(|t| t.saturating_mul(1_000_000_000))).unwrap_or_default();
    Some(ContainerEvent {
        id: actor.id.unwrap_or_default(),
        name: attributes.remove("name").unwrap_or_default().trim_start_matches('/').to_owned(),
        action: ContainerAction::parse(&action, exit_code, signal),
        channel: attributes.remove(LABEL_CHANNEL),
        service: attributes.remove(LABEL_COMPOSE_SERVICE),
        time_nanos,
    })
}

#[cfg(test)]
mod tests {
    use bollard::models::EventActor;

    use super::*;

    fn check(action: &str, expected: ContainerAction) {
        assert_eq!(ContainerAction::parse(action, Some(137), Some("9".into())), expected, "{action}");
    }

    #[test]
    fn actions() {
        check("die", ContainerAction::Die { exit_code: Some(137) });
        check("kill", ContainerAction::Kill { signal: Some("9".into()) });
        check("start", ContainerAction::Start);
        check("stop", ContainerAction::Stop);
        check("health_status: unhealthy", ContainerAction::Health(HealthStatus::Unhealthy));
        check("health_status:healthy", ContainerAction::Health(HealthStatus::Healthy));
        check("health_status", ContainerAction::Other("health_status".into()));
        check("exec_start: wget -q", ContainerAction::Other("exec_start: wget -q".into()));
    }

    #[test]
    fn messages_become_container_events() {
        let attributes = HashMap::from([
            ("name".to_owned(), "oxpulse-partner-naive".to_owned()),
            ("exitCode".to_owned(), "137".to_owned()),
            (LABEL_CHANNEL.to_owned(), "naive".to_owned()),
            (LABEL_COMPOSE_SERVICE.to_owned(), "naive".to_owned()),
        ]);
        let message = EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some("die".into()),
            actor: Some(EventActor { id: Some("abc".into()), attributes: Some(attributes) }),
            time: Some(5),
            time_nano: Some(5_000_000_001),
            ..Default::default()
        };
        assert_eq!(
            container_event(message),
            Some(ContainerEvent {
                id: "abc".into(),
                name: "oxpulse-partner-naive".into(),
                action: ContainerAction::Die { exit_code: Some(137) },
                channel: Some("naive".into()),
                service: Some("naive".into()),
                time_nanos: 5_000_000_001,
            })
        );
        let network = EventMessage { typ: Some(EventMessageTypeEnum::NETWORK), ..Default::default() };
        assert_eq!(container_event(network), None);
    }

    #[test]
    fn since_has_nanoseconds() {
        assert_eq!(since_arg(5_000_000_001), "5.000000001");
        assert_eq!(since_arg(0), "0.000000000");
    }

    /// A stand-in engine on a unix socket: `/version`, and `/events` serving the scripted
    /// lines of each connection in turn, then closing it (as a restarting engine does) or holding it open.
    async fn fake_engine(
        listener: tokio::net::UnixListener,
        scripts: Vec<(Vec<String>, bool)>,
        queries: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut scripts = scripts.into_iter();
        let mut held = Vec::new();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
            if target.contains("/version") {
                let body = r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                continue;
            }
            queries.lock().unwrap().push(target);
            let Some((lines, close)) = scripts.next() else { return };
            let mut answer =
                String::from("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
            for l in lines {
                answer.push_str(&l);
                answer.push('\n');
            }
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.flush().await;
            if !close {
                held.push(stream);
            }
        }
    }

    fn event_line(action: &str, name: &str, nanos: i64) -> String {
        serde_json::json!({
            "Type": "container",
            "Action": action,
            "Actor": {"ID": name, "Attributes": {"name": name, "edge.channel": "naive"}},
            "time": nanos / 1_000_000_000,
            "timeNano": nanos,
        })
        .to_string()
    }

    async fn next(events: &mut ContainerEvents) -> WatchItem {
        tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn it_backs_off_reconnects_from_the_last_event_and_drops_replays() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let mut options = FollowOptions::label("com.docker.compose.project", "p");
        options.backoff_min = Duration::from_millis(20);
        options.backoff_max = Duration::from_millis(50);
        options.socket = Some(socket.clone());
        let mut events = ContainerEvents::follow(options);

        // No engine yet: lost, with a growing wait up to the maximum.
        let waits: Vec<Duration> = {
            let mut waits = Vec::new();
            for _ in 0..3 {
                match next(&mut events).await {
                    WatchItem::Lost { retry_in, .. } => waits.push(retry_in),
                    other => panic!("{other:?}"),
                }
            }
            waits
        };
        assert_eq!(waits, [Duration::from_millis(20), Duration::from_millis(40), Duration::from_millis(50)]);

        // The engine comes up, sends two events and restarts; then replays one and sends a new one.
        let t = now_nanos();
        let queries = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let scripts = vec![
            (vec![event_line("die", "a", t + 1), event_line("start", "a", t + 2)], true),
            (vec![event_line("start", "a", t + 2), event_line("health_status: unhealthy", "a", t + 3)], false),
        ];
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        tokio::spawn(fake_engine(listener, scripts, queries.clone()));

        let mut seen = Vec::new();
        while seen.len() < 6 {
            match next(&mut events).await {
                // Attempts that failed before the socket existed may still be reported.
                WatchItem::Lost { .. } if seen.is_empty() => {}
                WatchItem::Connected { reconnected, .. } => seen.push(format!("connected reconnected={reconnected}")),
                WatchItem::Event(e) => seen.push(format!("{} {:?}", e.name, e.action)),
                WatchItem::Lost { .. } => seen.push("lost".to_owned()),
            }
        }
        assert_eq!(
            seen,
            [
                "connected reconnected=true",
                "a Die { exit_code: None }",
                "a Start",
                "lost",
                "connected reconnected=true",
                "a Health(Unhealthy)",
            ]
        );
        let queries = queries.lock().unwrap().clone();
        assert_eq!(queries.len(), 2, "{queries:?}");
        assert!(queries[1].contains(&format!("since={}", since_arg(t + 2))), "{queries:?}");
        assert!(queries[0].contains("filters="), "{queries:?}");
    }
}
