//! `install.env`, typed: what an install decided and later commands read back (the pool,
//! the metrics URL, the images, the services the operator stopped), next to the install
//! parameters legacy scripts `source`.
//!
//! A file written by the legacy bash installer has no `POOL`: [`InstallRecord::pool`] is then
//! `None`. A corrupt file is an error, never a silent switch to legacy mode.
//!
//! `TUNNEL` keeps its legacy meaning, the installer's `--tunnel` value; the pool is `POOL`.
//! Edge before `EDGE_RECORD=2` wrote the pool's channels under `TUNNEL`: such a value, equal to
//! `POOL`'s channel list, is read as no tunnel rather than as the operator's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::status::read_optional;
use crate::{CoreError, EnvFile, LineError, PoolMember};

const PARTNER_ID: &str = "PARTNER_ID";
const PARTNER_DOMAIN: &str = "PARTNER_DOMAIN";
const TUNNEL: &str = "TUNNEL";
const STACK: &str = "STACK";
const STACK_ORIGIN: &str = "STACK_ORIGIN";
const EDGE_ROOT: &str = "EDGE_ROOT";
const POOL: &str = "POOL";
const METRICS_URL: &str = "METRICS_URL";
const IMAGES: &str = "IMAGES";
const STOPPED: &str = "STOPPED";
const EDGE_VERSION: &str = "EDGE_VERSION";
const INSTALLED_AT: &str = "INSTALLED_AT";
const CONFIGS: &str = "CONFIGS";
const EDGE_RECORD: &str = "EDGE_RECORD";
/// The record format edge writes: 2 is the first where `TUNNEL` is the operator's.
const RECORD_FORMAT: &str = "2";
const IMAGE_HISTORY: &str = "IMAGE_HISTORY";
/// How many images of each service the record remembers.
pub const IMAGE_HISTORY_LEN: usize = 5;
const FRONT_URL: &str = "FRONT_URL";
const FRONT_CA: &str = "FRONT_CA";
const KNOWN: [&str; 17] = [
    PARTNER_ID,
    PARTNER_DOMAIN,
    TUNNEL,
    STACK,
    STACK_ORIGIN,
    EDGE_ROOT,
    POOL,
    METRICS_URL,
    IMAGES,
    STOPPED,
    EDGE_VERSION,
    INSTALLED_AT,
    CONFIGS,
    EDGE_RECORD,
    IMAGE_HISTORY,
    FRONT_URL,
    FRONT_CA,
];

/// The install record (`install.env`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallRecord {
    /// `PARTNER_ID`.
    pub partner_id: Option<String>,
    /// `PARTNER_DOMAIN`.
    pub partner_domain: Option<String>,
    /// `TUNNEL`: the legacy installer's `--tunnel` value, kept for scripts that `source` the file.
    pub tunnel: Option<String>,
    /// `STACK`: the stack's name.
    pub stack: Option<String>,
    /// `STACK_ORIGIN`: where the manifest came from.
    pub stack_origin: Option<String>,
    /// `EDGE_ROOT`: the root prefix, when one was given.
    pub edge_root: Option<PathBuf>,
    /// `POOL`: the front proxy's pool; `None` in a file the legacy installer wrote.
    pub pool: Option<Vec<PoolMember>>,
    /// `METRICS_URL`: the front proxy's metrics.
    pub metrics_url: Option<String>,
    /// `IMAGES`: image overrides by service.
    pub images: BTreeMap<String, String>,
    /// `STOPPED`: services the operator stopped with `edge stop`.
    pub stopped: BTreeSet<String>,
    /// `EDGE_VERSION`: the edge that wrote it.
    pub edge_version: Option<String>,
    /// `INSTALLED_AT`: epoch seconds.
    pub installed_at: Option<u64>,
    /// `CONFIGS`: for each service that takes its config in place (`reload` in the manifest),
    /// the keyed digest of the config it runs, `SERVICE=DIGEST` (a container label cannot
    /// change without recreating it; this can).
    pub configs: BTreeMap<String, String>,
    /// `IMAGE_HISTORY`: the images each service ran, oldest first, the current one last, at
    /// most [`IMAGE_HISTORY_LEN`]; `SERVICE=IMAGE|IMAGE,...`. `edge rollback` goes one back.
    pub image_history: BTreeMap<String, Vec<String>>,
    /// `FRONT_URL`: where smoke checks go (the stack's `front_url`, resolved).
    pub front_url: Option<String>,
    /// `FRONT_CA`: a PEM file of an extra root the front proxy's certificate may chain to.
    pub front_ca: Option<String>,
    /// Keys edge does not know, kept as they were.
    pub other: Vec<(String, String)>,
}

impl InstallRecord {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, LineError> {
        let env = EnvFile::parse(text)?;
        let get = |key: &str| env.get(key).map(str::to_owned);
        let bad = |key: &str, message: String| LineError { line: line_of(text, key), message };
        let pool = match env.get(POOL) {
            Some(value) => Some(PoolMember::decode_list(value).map_err(|m| bad(POOL, format!("{POOL}: {m}")))?),
            None => None,
        };
        let by_service = |key: &str, what: &str| -> Result<BTreeMap<String, String>, LineError> {
            let mut out = BTreeMap::new();
            for item in env.get(key).unwrap_or_default().split(',').map(str::trim).filter(|i| !i.is_empty()) {
                match item.split_once('=') {
                    Some((s, v)) if !s.trim().is_empty() && !v.trim().is_empty() => {
                        out.insert(s.trim().to_owned(), v.trim().to_owned());
                    }
                    _ => return Err(bad(key, format!("{key}: item {item:?} is not SERVICE={what}"))),
                }
            }
            Ok(out)
        };
        let images = by_service(IMAGES, "IMAGE")?;
        let configs = by_service(CONFIGS, "DIGEST")?;
        let image_history = by_service(IMAGE_HISTORY, "IMAGE|IMAGE")?
            .into_iter()
            .map(|(s, v)| (s, v.split('|').map(str::trim).filter(|i| !i.is_empty()).map(str::to_owned).collect()))
            .collect();
        let installed_at = match env.get(INSTALLED_AT) {
            Some(v) => {
                Some(v.parse().map_err(|_| bad(INSTALLED_AT, format!("{INSTALLED_AT}: {v:?} is not epoch seconds")))?)
            }
            None => None,
        };
        let stopped = env
            .get(STOPPED)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self {
            partner_id: get(PARTNER_ID),
            partner_domain: get(PARTNER_DOMAIN),
            tunnel: get(TUNNEL).filter(|t| !is_former_pool_list(&env, t)),
            stack: get(STACK),
            stack_origin: get(STACK_ORIGIN),
            edge_root: get(EDGE_ROOT).map(PathBuf::from),
            pool,
            metrics_url: get(METRICS_URL),
            images,
            stopped,
            edge_version: get(EDGE_VERSION),
            installed_at,
            configs,
            image_history,
            front_url: get(FRONT_URL),
            front_ca: get(FRONT_CA),
            other: env.iter().filter(|(k, _)| !KNOWN.contains(k)).map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        })
    }

    /// Reads the file: `None` when there is none, an error when it is corrupt.
    pub fn load_optional(path: &Path) -> Result<Option<Self>, CoreError> {
        match read_optional(path)? {
            None => Ok(None),
            Some(text) => {
                Self::parse(&text).map(Some).map_err(|source| CoreError::Parse { path: path.to_owned(), source })
            }
        }
    }

    /// Writes the file atomically (0644: it holds no credential).
    pub fn save(&self, path: &Path) -> Result<(), CoreError> {
        self.to_env().save(path, 0o644)
    }

    /// Records that `service` now runs `image`: appended unless it is already the current one,
    /// the oldest dropped beyond [`IMAGE_HISTORY_LEN`].
    pub fn push_image(&mut self, service: &str, image: &str) {
        let history = self.image_history.entry(service.to_owned()).or_default();
        if history.last().map(String::as_str) != Some(image) {
            history.push(image.to_owned());
        }
        let extra = history.len().saturating_sub(IMAGE_HISTORY_LEN);
        history.drain(..extra);
    }

    /// The image each service ran before its current one, for the services that have one.
    pub fn previous_images(&self) -> BTreeMap<String, String> {
        self.image_history
            .iter()
            .filter_map(|(s, h)| Some((s.clone(), h.len().checked_sub(2).map(|i| h[i].clone())?)))
            .collect()
    }

    /// The image each service runs now, as recorded.
    pub fn current_images(&self) -> BTreeMap<String, String> {
        self.image_history.iter().filter_map(|(s, h)| Some((s.clone(), h.last()?.clone()))).collect()
    }

    /// Whether the legacy bash installer wrote it (no pool recorded).
    pub fn is_legacy(&self) -> bool {
        self.pool.is_none()
    }

    /// The file's pairs, known keys first.
    pub fn to_env(&self) -> EnvFile {
        let mut env = EnvFile::default();
        let mut put = |key: &str, value: Option<&str>| {
            if let Some(v) = value {
                env.set(key, v);
            }
        };
        put(PARTNER_ID, self.partner_id.as_deref());
        put(PARTNER_DOMAIN, self.partner_domain.as_deref());
        put(TUNNEL, self.tunnel.as_deref());
        put(EDGE_RECORD, Some(RECORD_FORMAT));
        put(STACK, self.stack.as_deref());
        put(STACK_ORIGIN, self.stack_origin.as_deref());
        let root = self.edge_root.as_ref().map(|r| r.display().to_string());
        put(EDGE_ROOT, root.as_deref());
        let pool = self.pool.as_deref().map(PoolMember::encode_list);
        put(POOL, pool.as_deref());
        put(METRICS_URL, self.metrics_url.as_deref());
        let images = self.images.iter().map(|(s, i)| format!("{s}={i}")).collect::<Vec<_>>().join(",");
        put(IMAGES, Some(images.as_str()).filter(|i| !i.is_empty()));
        let stopped = self.stopped.iter().cloned().collect::<Vec<_>>().join(",");
        put(STOPPED, Some(stopped.as_str()).filter(|s| !s.is_empty()));
        put(EDGE_VERSION, self.edge_version.as_deref());
        let at = self.installed_at.map(|t| t.to_string());
        put(INSTALLED_AT, at.as_deref());
        let configs = self.configs.iter().map(|(s, d)| format!("{s}={d}")).collect::<Vec<_>>().join(",");
        put(CONFIGS, Some(configs.as_str()).filter(|c| !c.is_empty()));
        let history =
            self.image_history.iter().map(|(s, i)| format!("{s}={}", i.join("|"))).collect::<Vec<_>>().join(",");
        put(IMAGE_HISTORY, Some(history.as_str()).filter(|h| !h.is_empty()));
        put(FRONT_URL, self.front_url.as_deref());
        put(FRONT_CA, self.front_ca.as_deref());
        for (k, v) in &self.other {
            env.set(k, v);
        }
        env
    }
}

/// Whether `tunnel` is what edge before record format 2 wrote under `TUNNEL`: `POOL`'s channels.
fn is_former_pool_list(env: &EnvFile, tunnel: &str) -> bool {
    if env.get(EDGE_RECORD).is_some() {
        return false;
    }
    let Some(Ok(pool)) = env.get(POOL).map(PoolMember::decode_list) else { return false };
    pool.iter().map(|m| m.channel.as_str()).collect::<Vec<_>>().join(",") == tunnel
}

/// The 1-based line that sets `key` (1 if none does).
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("export ").map(str::trim_start).unwrap_or(l);
            l.strip_prefix(key).is_some_and(|rest| rest.starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<InstallRecord, &str>) {
        match (InstallRecord::parse(text), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(e), Err(want)) => assert_eq!(e.to_string(), want),
            (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn reads_what_install_writes_and_what_the_legacy_installer_wrote() {
        check(
            "PARTNER_ID=acme\nPARTNER_DOMAIN=edge.example.com\nTUNNEL=xray\n",
            Ok(InstallRecord {
                partner_id: Some("acme".into()),
                partner_domain: Some("edge.example.com".into()),
                tunnel: Some("xray".into()),
                ..Default::default()
            }),
        );
        check(
            "POOL=xray=127.0.0.1:3081\nIMAGES=caddy=c:1,xray=x:2\nSTOPPED=naive,caddy\nINSTALLED_AT=17\nCONFIGS=caddy=0a1b\nOWN=kept\n",
            Ok(InstallRecord {
                pool: Some(vec![PoolMember::new("xray", "127.0.0.1:3081")]),
                configs: BTreeMap::from([("caddy".into(), "0a1b".into())]),
                images: BTreeMap::from([("caddy".into(), "c:1".into()), ("xray".into(), "x:2".into())]),
                stopped: BTreeSet::from(["caddy".into(), "naive".into()]),
                installed_at: Some(17),
                other: vec![("OWN".into(), "kept".into())],
                ..Default::default()
            }),
        );
        assert!(InstallRecord::parse("PARTNER_ID=a\n").unwrap().is_legacy());
        assert!(!InstallRecord::parse("POOL=\n").unwrap().is_legacy());
    }

    #[test]
    fn tunnel_keeps_its_legacy_meaning_and_a_former_pool_list_is_not_taken_for_it() {
        let tunnel = |text: &str| InstallRecord::parse(text).unwrap().tunnel;
        // The legacy installer's value.
        assert_eq!(tunnel("PARTNER_ID=a\nTUNNEL=tun-7f3\n").as_deref(), Some("tun-7f3"));
        // Edge before format 2 wrote the pool's channels there.
        let former = "TUNNEL=xray,naive\nPOOL=xray=127.0.0.1:3081,naive=127.0.0.1:3083\n";
        assert_eq!(tunnel(former), None);
        assert_eq!(tunnel("TUNNEL=\nPOOL=\n"), None);
        // Anything else under TUNNEL, or any value once the format is 2, is the operator's.
        assert_eq!(tunnel("TUNNEL=xray\nPOOL=xray=127.0.0.1:3081,naive=127.0.0.1:3083\n").as_deref(), Some("xray"));
        assert_eq!(tunnel(&format!("{former}EDGE_RECORD=2\n")).as_deref(), Some("xray,naive"));
        // Written back, the operator's value survives and the former list is gone.
        let migrated = InstallRecord::parse(former).unwrap().to_env().to_string();
        assert!(!migrated.contains("TUNNEL="), "{migrated}");
        let record = InstallRecord {
            tunnel: Some("xray".into()),
            pool: Some(vec![PoolMember::new("xray", "a:1")]),
            ..Default::default()
        };
        assert_eq!(InstallRecord::parse(&record.to_env().to_string()).unwrap(), record);
    }

    #[test]
    fn a_corrupt_record_is_an_error_naming_the_line() {
        check("PARTNER_ID=a\nPOOL=xray\n", Err("line 2: POOL: pool item \"xray\" is not channel=upstream"));
        check("IMAGES=caddy\n", Err("line 1: IMAGES: item \"caddy\" is not SERVICE=IMAGE"));
        check("A=1\nCONFIGS=caddy=\n", Err("line 2: CONFIGS: item \"caddy=\" is not SERVICE=DIGEST"));
        check("A=1\n\nINSTALLED_AT=soon\n", Err("line 3: INSTALLED_AT: \"soon\" is not epoch seconds"));
        check("PARTNER_ID='x\n", Err("line 1: unterminated quote in the value of PARTNER_ID"));
    }

    #[test]
    fn the_image_history_keeps_the_last_releases_of_each_service() {
        let mut record = InstallRecord::default();
        for image in ["app:1", "app:1", "app:2", "app:3", "app:4", "app:5", "app:6"] {
            record.push_image("app", image);
        }
        record.push_image("caddy", "caddy:2");
        let back = InstallRecord::parse(&record.to_env().to_string()).unwrap();
        assert_eq!(back.image_history["app"], ["app:2", "app:3", "app:4", "app:5", "app:6"]);
        assert_eq!(back.previous_images(), BTreeMap::from([("app".into(), "app:5".into())]));
        assert_eq!(back.current_images()["caddy"], "caddy:2");
        check(
            "IMAGE_HISTORY=app=a:1|a:2,caddy=c:1\n",
            Ok(InstallRecord {
                image_history: BTreeMap::from([
                    ("app".into(), vec!["a:1".into(), "a:2".into()]),
                    ("caddy".into(), vec!["c:1".into()]),
                ]),
                ..Default::default()
            }),
        );
    }

    #[test]
    fn missing_and_corrupt_files_differ() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("install.env");
        assert_eq!(InstallRecord::load_optional(&path).unwrap(), None);
        std::fs::write(&path, "POOL=junk\n").unwrap();
        let err = InstallRecord::load_optional(&path).unwrap_err().to_string();
        assert!(err.contains("install.env: line 1: POOL"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn records_round_trip(
            id in "\\PC{0,12}",
            pool in proptest::collection::vec(("[a-z0-9_-]{1,8}", "[a-z0-9.:-]{1,20}"), 0..4),
            stopped in proptest::collection::btree_set("[a-z0-9_-]{1,8}", 0..3),
            at in proptest::option::of(proptest::prelude::any::<u64>()),
            configs in proptest::collection::btree_map("[a-z0-9_-]{1,8}", "[0-9a-f]{1,64}", 0..3),
            tunnel in proptest::option::of("\\PC{0,12}"),
        ) {
            let record = InstallRecord {
                partner_id: Some(id),
                tunnel,
                pool: Some(pool.into_iter().map(|(c, u)| PoolMember::new(c, u)).collect()),
                stopped,
                installed_at: at,
                configs,
                ..Default::default()
            };
            proptest::prop_assert_eq!(InstallRecord::parse(&record.to_env().to_string()).unwrap(), record);
        }
    }
}
