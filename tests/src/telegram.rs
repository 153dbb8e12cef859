//! A loopback chat server for alert tests: the webhook protocol (`{"message": …}`), the
//! Telegram Bot API's `sendMessage` (JSON or form body) and a `/metrics` page, each
//! configurable to fail, and recording every request it gets.
//!
//! It checks what the real far ends check: the webhook body must be valid
//! JSON with a string `message`; `sendMessage` needs `chat_id` and `text`,
//! rejects a text over 4096 characters with Telegram's own error, and can
//! answer 429 with `parameters.retry_after` or `{"ok": false}`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the server answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Accept: 200 (`{"ok": true, …}` on the Bot API).
    Accept,
    /// Answer this HTTP status with an error body.
    Fail(u16),
    /// Bot API: 429 `{"ok": false, "error_code": 429, "parameters": {"retry_after": N}}`.
    RetryAfter(u64),
    /// Bot API: 200 with `{"ok": false}` (a broken proxy, or a bot kicked from the chat).
    NotOk,
}

/// Which endpoint a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The webhook.
    Webhook,
    /// `/bot<token>/sendMessage`.
    Telegram,
}

/// One request the server got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Where it went.
    pub endpoint: Endpoint,
    /// Its `Content-Type`.
    pub content_type: String,
    /// The message text (`message` or `text`), when the body had one.
    pub text: Option<String>,
    /// `chat_id` (Bot API).
    pub chat_id: Option<String>,
    /// The token from the path (Bot API).
    pub token: Option<String>,
    /// Whether the answer was a success.
    pub accepted: bool,
}

#[derive(Default)]
struct Inner {
    webhook: VecDeque<Reply>,
    webhook_default: Option<Reply>,
    telegram: VecDeque<Reply>,
    telegram_default: Option<Reply>,
    metrics: Option<String>,
    received: Vec<Received>,
    next_message_id: u64,
}

/// The running server; stops when dropped.
pub struct ChatServer {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: JoinHandle<()>,
}

impl ChatServer {
    /// Starts on `127.0.0.1`, an ephemeral port; everything accepted, no metrics page.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = inner.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, shared.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, inner, task })
    }

    /// The webhook URL.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhook/monitor/healthcheck", self.addr)
    }

    /// The `sendMessage` URL for `token` (what `OXPULSE_TG_API_FALLBACK` takes).
    pub fn telegram_url(&self, token: &str) -> String {
        format!("http://{}/bot{token}/sendMessage", self.addr)
    }

    /// The metrics page URL.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// How the webhook answers from now on.
    pub fn set_webhook(&self, reply: Reply) {
        self.lock().webhook_default = Some(reply);
    }

    /// How the Bot API answers from now on.
    pub fn set_telegram(&self, reply: Reply) {
        self.lock().telegram_default = Some(reply);
    }

    /// One-shot Bot API answers, used in order before the standing one.
    pub fn script_telegram(&self, replies: &[Reply]) {
        self.lock().telegram.extend(replies.iter().copied());
    }

    /// One-shot webhook answers, used in order before the standing one.
    pub fn script_webhook(&self, replies: &[Reply]) {
        self.lock().webhook.extend(replies.iter().copied());
    }

    /// The page `/metrics` serves (`None`: 404).
    pub fn set_metrics(&self, page: Option<&str>) {
        self.lock().metrics = page.map(str::to_owned);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Texts of the accepted messages, in arrival order.
    pub fn delivered(&self) -> Vec<String> {
        self.lock().received.iter().filter(|r| r.accepted).filter_map(|r| r.text.clone()).collect()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.lock().received.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ChatServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A chat server shared by every test of the process, on its own runtime's thread: the alert
/// transport of installs whose test is not about alerts (without one, install is degraded).
pub fn shared_chat_server() -> &'static ChatServer {
    static SHARED: std::sync::OnceLock<ChatServer> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
            let runtime = runtime.expect("the shared chat server's runtime starts");
            let server = runtime.block_on(ChatServer::start()).expect("the shared chat server starts");
            let _ = tx.send(server);
            // The server's tasks live on this runtime: keep it for the life of the process.
            runtime.block_on(std::future::pending::<()>());
        });
        rx.recv().expect("the shared chat server starts")
    })
}

/// A loopback URL nobody listens on (the port was free a moment ago): a transport that is down.
pub fn refused_url(path: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(9);
    format!("http://127.0.0.1:{port}{path}")
}

type Answer = Response<Full<Bytes>>;

fn answer(status: u16, body: String) -> Answer {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}

fn tg_error(status: u16, code: u16, description: &str) -> Answer {
    answer(status, serde_json::json!({"ok": false, "error_code": code, "description": description}).to_string())
}

async fn handle(req: Request<Incoming>, inner: Arc<Mutex<Inner>>) -> Result<Answer, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let content_type =
        req.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());

    if method == Method::GET && path == "/metrics" {
        return Ok(match &inner.metrics {
            Some(page) => answer(200, page.clone()),
            None => answer(404, "no metrics page".to_owned()),
        });
    }
    if method != Method::POST {
        return Ok(answer(405, "POST only".to_owned()));
    }

    if let Some(token) = path.strip_prefix("/bot").and_then(|rest| rest.strip_suffix("/sendMessage")) {
        let (chat_id, text) = telegram_fields(&content_type, &body);
        let reply = inner.telegram.pop_front().or(inner.telegram_default).unwrap_or(Reply::Accept);
        let resp = match (&chat_id, &text, reply) {
            (None, _, _) => tg_error(400, 400, "Bad Request: chat_id is empty"),
            (_, None, _) => tg_error(400, 400, "Bad Request: message text is empty"),
            (_, Some(t), _) if t.encode_utf16().count() > 4096 => {
                tg_error(400, 400, "Bad Request: message is too long")
            }
            (_, _, Reply::Accept) => {
                inner.next_message_id += 1;
                let id = inner.next_message_id;
                answer(200, serde_json::json!({"ok": true, "result": {"message_id": id}}).to_string())
            }
            (_, _, Reply::Fail(status)) => tg_error(status, status, "Internal Server Error"),
            (_, _, Reply::RetryAfter(secs)) => answer(
                429,
                serde_json::json!({
                    "ok": false,
                    "error_code": 429,
                    "description": format!("Too Many Requests: retry after {secs}"),
                    "parameters": {"retry_after": secs},
                })
                .to_string(),
            ),
            (_, _, Reply::NotOk) => answer(200, r#"{"ok":false}"#.to_owned()),
        };
        let accepted = resp.status().is_success() && reply == Reply::Accept;
        inner.received.push(Received {
            endpoint: Endpoint::Telegram,
            content_type,
            text,
            chat_id,
            token: Some(token.to_owned()),
            accepted,
        });
        return Ok(resp);
    }

    // Anything else is the webhook: a JSON object with a string `message`.
    let text = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned));
    let reply = inner.webhook.pop_front().or(inner.webhook_default).unwrap_or(Reply::Accept);
    let resp = match (&text, reply) {
        (None, _) => answer(400, r#"{"error":"body must be a JSON object with a string message"}"#.to_owned()),
        (_, Reply::Accept) => answer(200, r#"{"status":"ok"}"#.to_owned()),
        (_, Reply::Fail(status)) => answer(status, r#"{"error":"failing on purpose"}"#.to_owned()),
        (_, Reply::RetryAfter(_) | Reply::NotOk) => answer(503, r#"{"error":"unavailable"}"#.to_owned()),
    };
    let accepted = resp.status().is_success();
    inner.received.push(Received {
        endpoint: Endpoint::Webhook,
        content_type,
        text,
        chat_id: None,
        token: None,
        accepted,
    });
    Ok(resp)
}

/// `chat_id` and `text` from a JSON or `application/x-www-form-urlencoded` body.
fn telegram_fields(content_type: &str, body: &[u8]) -> (Option<String>, Option<String>) {
    if content_type.starts_with("application/json") {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return (None, None) };
        let chat = match v.get("chat_id") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let text = v.get("text").and_then(|t| t.as_str()).map(str::to_owned);
        return (chat, text);
    }
    let form = String::from_utf8_lossy(body);
    let mut chat = None;
    let mut text = None;
    for pair in form.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "chat_id" => chat = Some(form_decode(v)),
            "text" => text = Some(form_decode(v)),
            _ => {}
        }
    }
    (chat.filter(|c| !c.is_empty()), text.filter(|t| !t.is_empty()))
}

/// Decodes one `application/x-www-form-urlencoded` value (`+` is a space, `%XX` a byte).
pub fn form_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(encoded: &str, decoded: &str) {
        assert_eq!(form_decode(encoded), decoded, "{encoded}");
    }

    #[test]
    fn form_values_decode() {
        check("a+b", "a b");
        check("%5Bh%5D%20x", "[h] x");
        check("100%", "100%");
        check("%zz", "%zz");
        check("%e2%86%92", "→");
    }

    proptest::proptest! {
        #[test]
        fn form_decode_never_panics(s in "\\PC*") {
            let _ = form_decode(&s);
        }
    }
}
