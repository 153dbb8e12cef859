//! A minimal STUN/TURN client (RFC 5389/5766) for tests: Allocate and CreatePermission over
//! UDP, unauthenticated or with TURN REST API credentials (the shared-secret scheme coturn's
//! `use-auth-secret` checks), enough to tell an open relay from a closed one.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use base64::Engine;
use hmac::Mac;

const MAGIC_COOKIE: u32 = 0x2112_A442;
const ALLOCATE: u16 = 0x0003;
const CREATE_PERMISSION: u16 = 0x0008;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;

/// A TURN server's answer: success, or the error code it gave (401, 403...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A success response.
    Success,
    /// An error response with its code and reason.
    Error(u16, String),
}

/// A TURN REST API credential: `EXPIRY:USER` and base64(HMAC-SHA1(secret, username)).
pub fn rest_credential(secret: &str, user: &str, expiry: u64) -> (String, String) {
    let username = format!("{expiry}:{user}");
    let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

/// One UDP client session with a TURN server.
pub struct TurnClient {
    socket: UdpSocket,
    realm: String,
    nonce: String,
    key: Option<[u8; 16]>,
    username: String,
}

impl TurnClient {
    /// A client of `server` (a loopback address in tests).
    pub fn connect(server: SocketAddr) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a UDP socket")?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok(Self { socket, realm: String::new(), nonce: String::new(), key: None, username: String::new() })
    }

    /// An Allocate (UDP relay) without credentials; the realm and nonce of a 401 are kept.
    pub fn allocate_unauthenticated(&mut self) -> anyhow::Result<Answer> {
        self.request(ALLOCATE, &[requested_transport()], false)
    }

    /// An Allocate with long-term credentials, after the unauthenticated one learnt the realm
    /// and nonce (a 438 stale nonce is retried once with the new nonce).
    pub fn allocate(&mut self, username: &str, password: &str) -> anyhow::Result<Answer> {
        if self.realm.is_empty() {
            self.allocate_unauthenticated()?;
        }
        self.username = username.to_owned();
        let key = long_term_key(username, &self.realm, password);
        self.key = Some(key);
        match self.request(ALLOCATE, &[requested_transport()], true)? {
            Answer::Error(438, _) => self.request(ALLOCATE, &[requested_transport()], true),
            answer => Ok(answer),
        }
    }

    /// A CreatePermission for a peer, on the allocation made by [`TurnClient::allocate`].
    pub fn create_permission(&mut self, peer: Ipv4Addr) -> anyhow::Result<Answer> {
        self.request(CREATE_PERMISSION, &[xor_peer_address(peer)], true)
    }

    fn request(&mut self, method: u16, attrs: &[(u16, Vec<u8>)], sign: bool) -> anyhow::Result<Answer> {
        let txid = transaction_id();
        let mut all: Vec<(u16, Vec<u8>)> = attrs.to_vec();
        if sign {
            all.push((ATTR_USERNAME, self.username.clone().into_bytes()));
            all.push((ATTR_REALM, self.realm.clone().into_bytes()));
            all.push((ATTR_NONCE, self.nonce.clone().into_bytes()));
        }
        let mut msg = header(method, &txid);
        for (t, v) in &all {
            push_attr(&mut msg, *t, v);
        }
        if let (true, Some(key)) = (sign, self.key) {
            // The length covers MESSAGE-INTEGRITY itself (24 bytes) when the HMAC is computed.
            let len = msg.len() - 20 + 24;
            set_len(&mut msg, len);
            let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(&key).expect("any key length");
            mac.update(&msg);
            push_attr(&mut msg, ATTR_MESSAGE_INTEGRITY, &mac.finalize().into_bytes());
        }
        let mut buf = [0u8; 1500];
        for _ in 0..6 {
            self.socket.send(&msg)?;
            let Ok(n) = self.socket.recv(&mut buf) else { continue };
            if n < 20 || buf[8..20] != txid {
                continue;
            }
            return self.read_answer(&buf[..n]);
        }
        bail!("no STUN answer from {:?}", self.socket.peer_addr())
    }

    fn read_answer(&mut self, msg: &[u8]) -> anyhow::Result<Answer> {
        let kind = u16::from_be_bytes([msg[0], msg[1]]);
        let mut error = None;
        let mut at = 20;
        while at + 4 <= msg.len() {
            let t = u16::from_be_bytes([msg[at], msg[at + 1]]);
            let len = usize::from(u16::from_be_bytes([msg[at + 2], msg[at + 3]]));
            let value = msg.get(at + 4..at + 4 + len).context("truncated STUN attribute")?;
            match t {
                ATTR_REALM => self.realm = String::from_utf8_lossy(value).into_owned(),
                ATTR_NONCE => self.nonce = String::from_utf8_lossy(value).into_owned(),
                ATTR_ERROR_CODE if len >= 4 => {
                    let code = u16::from(value[2] & 0x7) * 100 + u16::from(value[3]);
                    error = Some((code, String::from_utf8_lossy(&value[4..]).into_owned()));
                }
                _ => {}
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        // Class bits: 0x0100 success, 0x0110 error.
        match (kind & 0x0110, error) {
            (0x0100, _) => Ok(Answer::Success),
            (0x0110, Some((code, reason))) => Ok(Answer::Error(code, reason)),
            _ => bail!("unexpected STUN message type {kind:#06x}"),
        }
    }
}

/// The long-term credential key: MD5(username ":" realm ":" password).
fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(format!("{username}:{realm}:{password}").as_bytes()).into()
}

/// A fresh transaction id: unique per request of this process.
fn transaction_id() -> [u8; 12] {
    use sha2::Digest;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = format!("{}-{}-{:?}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed), SystemTime::now());
    let digest = sha2::Sha256::digest(seed.as_bytes());
    let mut id = [0u8; 12];
    id.copy_from_slice(&digest[..12]);
    id
}

fn header(method: u16, txid: &[u8; 12]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(128);
    msg.extend_from_slice(&method.to_be_bytes());
    msg.extend_from_slice(&0u16.to_be_bytes());
    msg.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    msg.extend_from_slice(txid);
    msg
}

fn push_attr(msg: &mut Vec<u8>, t: u16, v: &[u8]) {
    msg.extend_from_slice(&t.to_be_bytes());
    msg.extend_from_slice(&(v.len() as u16).to_be_bytes());
    msg.extend_from_slice(v);
    msg.resize(msg.len().div_ceil(4) * 4, 0);
    let len = msg.len() - 20;
    set_len(msg, len);
}

fn set_len(msg: &mut [u8], len: usize) {
    msg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
}

/// REQUESTED-TRANSPORT: UDP (protocol 17).
fn requested_transport() -> (u16, Vec<u8>) {
    (ATTR_REQUESTED_TRANSPORT, vec![17, 0, 0, 0])
}

/// XOR-PEER-ADDRESS of an IPv4 peer (port 9, unused: a permission is per address).
fn xor_peer_address(peer: Ipv4Addr) -> (u16, Vec<u8>) {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = 9u16 ^ (MAGIC_COOKIE >> 16) as u16;
    let mut v = vec![0, 0x01];
    v.extend_from_slice(&port.to_be_bytes());
    v.extend(peer.octets().iter().zip(cookie).map(|(a, c)| a ^ c));
    (ATTR_XOR_PEER_ADDRESS, v)
}
