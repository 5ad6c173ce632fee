//! `visage enroll DIR`: batch enrollment from a folder, one person per sub-folder, over the
//! HTTP API (so every photo goes through the service's own decoding, quality gate, consent
//! rules and audit; locally the command starts the service in-process on a loopback port).
//!
//! Resumable: what is done is written after every photo to a state file in the folder
//! (`.visage-enroll-<collection>.json`): the person created for each sub-folder, and each
//! photo's fate (enrolled, or refused with the service's reason). A second run, after a kill
//! or a crash, skips all of that and goes on. Transient failures (network, 5xx) are not
//! recorded, so the next run tries those photos again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Photo file extensions the service decodes.
const PHOTO_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// What a run needs to talk to the service.
#[derive(Debug, Clone)]
pub struct Target {
    /// The service's base URL, e.g. `http://127.0.0.1:8080` or `https://visage.example.org`.
    pub base_url: String,
    /// An API key with the enroll scope in `collection`.
    pub key: String,
    /// The collection to enroll into (`None`: the key's).
    pub collection: Option<String>,
}

/// The base URL of a remote service for `visage enroll --url`, checked: https, or http to this
/// machine (loopback), unless `allow_plain_http`. A key with the enroll scope and the photos
/// of every person would otherwise cross the network in clear, readable and replayable by
/// anyone on the path.
pub fn remote_base_url(url: &str, allow_plain_http: bool) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("--url {url}: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => anyhow::bail!("--url {url}: no host"),
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback || allow_plain_http => {}
        "http" => anyhow::bail!(
            "--url {url}: plain HTTP to another machine would send the API key and every photo \
             unencrypted; use https:// (or --allow-plain-http on a network you trust)"
        ),
        other => anyhow::bail!("--url {url}: {other}:// is not supported; use https://"),
    }
    if !parsed.query().unwrap_or_default().is_empty() || parsed.fragment().is_some() {
        anyhow::bail!("--url {url}: give the service's base URL, without a query or fragment");
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// One photo's fate, as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PhotoFate {
    Enrolled,
    /// Refused by the service: its problem code and detail.
    Refused {
        code: String,
        detail: String,
    },
}

/// One sub-folder's person and photos.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PersonState {
    pub person_id: Option<String>,
    pub photos: BTreeMap<String, PhotoFate>,
}

/// The state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub people: BTreeMap<String, PersonState>,
}

impl State {
    /// The state file of `dir` for `collection`.
    pub fn path(dir: &Path, collection: Option<&str>) -> PathBuf {
        dir.join(format!(
            ".visage-enroll-{}.json",
            collection.unwrap_or("default")
        ))
    }

    /// Reads the state file (empty when there is none).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a state file of visage enroll ({e}); move it away to start over",
                    path.display()
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        }
    }

    /// Writes it atomically (a temporary file renamed over it), so a kill never leaves half a
    /// file behind.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// What a run did, for the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub people_created: usize,
    pub enrolled: usize,
    /// Photos skipped because an earlier run had settled them.
    pub skipped: usize,
    /// Refused photos by problem code: (code, count, an example file and detail).
    pub refused: BTreeMap<String, (usize, String)>,
    /// Photos that failed for a transient reason (tried again by the next run).
    pub failed: Vec<String>,
}

impl Summary {
    /// The summary in words.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{} photos enrolled, {} people created, {} skipped (settled by an earlier run), {} refused, {} failed",
            self.enrolled,
            self.people_created,
            self.skipped,
            self.refused.values().map(|r| r.0).sum::<usize>(),
            self.failed.len()
        );
        for (code, (n, example)) in &self.refused {
            s.push_str(&format!("\n  refused {n} x {code}: e.g. {example}"));
        }
        for f in self.failed.iter().take(10) {
            s.push_str(&format!("\n  failed (run again to retry): {f}"));
        }
        s
    }
}

/// The sub-folders of `dir` (one person each) with their photos, sorted.
pub fn scan(dir: &Path) -> anyhow::Result<Vec<(String, Vec<PathBuf>)>> {
    let mut people = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !path.is_dir() || name.starts_with('.') {
            continue;
        }
        let mut photos: Vec<PathBuf> = std::fs::read_dir(&path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .filter(|p| {
                !p.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or(".")
                    .starts_with('.')
            })
            .collect();
        photos.sort();
        people.push((name, photos));
    }
    people.sort();
    Ok(people)
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        _ => "image/jpeg",
    }
}

/// Whether the service settled a request for good (a refusal) rather than failing for now.
fn settled(status: reqwest::StatusCode) -> bool {
    status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS
}

struct Client<'a> {
    http: reqwest::Client,
    target: &'a Target,
}

impl Client<'_> {
    fn url(&self, path: &str) -> String {
        match &self.target.collection {
            Some(c) => format!("{}{path}?collection={c}", self.target.base_url),
            None => format!("{}{path}", self.target.base_url),
        }
    }

    /// Creates the person of sub-folder `name`.
    async fn create_person(
        &self,
        name: &str,
        consent: &serde_json::Value,
    ) -> anyhow::Result<String> {
        let r = self
            .http
            .post(self.url("/v1/people"))
            .bearer_auth(&self.target.key)
            .json(&serde_json::json!({ "name": name, "consent": consent }))
            .send()
            .await?;
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        if status != reqwest::StatusCode::CREATED {
            anyhow::bail!(
                "creating {name:?}: {status}: {}",
                body["detail"].as_str().unwrap_or("no detail")
            );
        }
        body["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("creating {name:?}: no id in the answer"))
    }

    /// Sends one photo of person `id`: its fate, or `Err` for a transient failure.
    async fn add_photo(&self, id: &str, photo: &Path) -> anyhow::Result<PhotoFate> {
        let bytes = std::fs::read(photo)?;
        let r = self
            .http
            .post(self.url(&format!("/v1/people/{id}/faces/image")))
            .bearer_auth(&self.target.key)
            .header(reqwest::header::CONTENT_TYPE, content_type(photo))
            .body(bytes)
            .send()
            .await?;
        let status = r.status();
        if status == reqwest::StatusCode::CREATED {
            return Ok(PhotoFate::Enrolled);
        }
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        let code = body["code"].as_str().unwrap_or("unknown").to_string();
        let detail = body["detail"].as_str().unwrap_or_default().to_string();
        if settled(status) {
            if status == reqwest::StatusCode::NOT_FOUND && code == "not_found" {
                // The person of the state file is gone (erased, or another server):
                // nothing this run can do for the folder.
                anyhow::bail!("person {id} is not there any more: {detail}");
            }
            Ok(PhotoFate::Refused { code, detail })
        } else {
            anyhow::bail!("{status} {code}: {detail}")
        }
    }
}

/// Enrolls the people of `dir` with `consent` (the consent object of `POST /v1/people`),
/// resuming from the state file; `progress` hears each photo settled.
pub async fn run(
    dir: &Path,
    consent: &serde_json::Value,
    target: &Target,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Summary> {
    let state_path = State::path(dir, target.collection.as_deref());
    let mut state = State::load(&state_path)?;
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?,
        target,
    };
    let mut summary = Summary::default();
    for (name, photos) in scan(dir)? {
        let known = state.people.get(&name);
        let pending: Vec<&PathBuf> = photos
            .iter()
            .filter(|p| {
                let file = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                !known.is_some_and(|k| k.photos.contains_key(file))
            })
            .collect();
        summary.skipped += photos.len() - pending.len();
        if pending.is_empty() {
            continue;
        }
        let id = match known.and_then(|k| k.person_id.clone()) {
            Some(id) => id,
            None => {
                let id = client.create_person(&name, consent).await?;
                state.people.entry(name.clone()).or_default().person_id = Some(id.clone());
                summary.people_created += 1;
                // Saved at once: a kill right after must not create the person twice.
                state.save(&state_path)?;
                id
            }
        };
        for photo in pending {
            let file = photo
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let shown = format!("{name}/{file}");
            let supported = photo
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| PHOTO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            let fate = if supported {
                client.add_photo(&id, photo).await
            } else {
                Ok(PhotoFate::Refused {
                    code: "not_a_photo".into(),
                    detail: format!("not one of {}", PHOTO_EXTENSIONS.join(", ")),
                })
            };
            match fate {
                Ok(fate) => {
                    match &fate {
                        PhotoFate::Enrolled => summary.enrolled += 1,
                        PhotoFate::Refused { code, detail } => {
                            let r = summary
                                .refused
                                .entry(code.clone())
                                .or_insert((0, format!("{shown}: {detail}")));
                            r.0 += 1;
                        }
                    }
                    state
                        .people
                        .entry(name.clone())
                        .or_default()
                        .photos
                        .insert(file, fate);
                    state.save(&state_path)?;
                }
                Err(e) => summary.failed.push(format!("{shown}: {e:#}")),
            }
            progress(&shown);
        }
    }
    Ok(summary)
}

/// How many photos `dir` holds and how many the state file has settled already.
pub fn count(dir: &Path, collection: Option<&str>) -> anyhow::Result<(usize, usize)> {
    let state = State::load(&State::path(dir, collection))?;
    let (mut total, mut done) = (0, 0);
    for (name, photos) in scan(dir)? {
        total += photos.len();
        if let Some(p) = state.people.get(&name) {
            done += photos
                .iter()
                .filter(|f| {
                    f.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| p.photos.contains_key(n))
                })
                .count();
        }
    }
    Ok((total, done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_are_https_or_this_machine() {
        for ok in [
            "https://visage.example.org",
            "https://visage.example.org:8443/",
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:8080",
        ] {
            assert!(remote_base_url(ok, false).is_ok(), "{ok} refused");
        }
        assert_eq!(
            remote_base_url("https://v.example.org/", false).unwrap(),
            "https://v.example.org"
        );
        for refused in [
            "http://visage.example.org",
            "http://10.0.0.5:8080",
            "http://127.0.0.1.example.org",
            "ftp://visage.example.org",
            "visage.example.org",
            "https://v.example.org/?collection=x",
        ] {
            assert!(
                remote_base_url(refused, false).is_err(),
                "{refused} accepted"
            );
        }
        assert!(remote_base_url("http://10.0.0.5:8080", true).is_ok());
    }

    #[test]
    fn the_state_file_round_trips_and_refusals_are_settled() {
        let dir = std::env::temp_dir().join(format!("visage-enroll-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("ann")).expect("dir");
        std::fs::write(dir.join("ann/1.jpg"), b"x").expect("photo");
        std::fs::write(dir.join("ann/.hidden"), b"x").expect("hidden");
        let path = State::path(&dir, Some("site-a"));
        let refused = PhotoFate::Refused {
            code: "no_face".into(),
            detail: "none".into(),
        };
        let mut s = State::default();
        let p = s.people.entry("ann".into()).or_default();
        p.person_id = Some("id".into());
        p.photos.insert("1.jpg".into(), refused.clone());
        s.save(&path).expect("save");
        let back = State::load(&path).expect("load");
        assert_eq!(back.people["ann"].photos["1.jpg"], refused);
        assert_eq!(count(&dir, Some("site-a")).expect("count"), (1, 1));
        assert_eq!(count(&dir, Some("other")).expect("count"), (1, 0));
        assert!(settled(reqwest::StatusCode::UNPROCESSABLE_ENTITY));
        assert!(!settled(reqwest::StatusCode::TOO_MANY_REQUESTS));
        assert!(!settled(reqwest::StatusCode::SERVICE_UNAVAILABLE));
        let _ = std::fs::remove_dir_all(dir);
    }
}
