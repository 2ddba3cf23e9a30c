//! How a runtime follows the control plane: a snapshot, then revisioned events, resyncing
//! on any gap, on every NATS (re)connection, and every 30 seconds as a safety net. Routes
//! are swapped in whole; while control or NATS is away the last known routes keep serving.
//!
//! Also the runtime's module sources: over HTTP from control (cluster), or straight from
//! the blob store (everything in one process).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use futures::StreamExt;
use platform_control::blobs::BlobStore;
use platform_control::events::EventBus;
use platform_proto::v1::{FeedSnapshot, GetSnapshotRequest, GetSnapshotResponse};
use platform_runtime::feed::{Applied, FeedState, ServeScope};
use platform_runtime::module_cache::{ModuleSource, SourceError};
use platform_runtime::{Digest, Isolation, Runtime};
use prost::Message;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

/// Where snapshots come from.
#[async_trait]
pub trait SnapshotSource: Send + Sync {
    /// The current serving state.
    async fn snapshot(&self) -> anyhow::Result<FeedSnapshot>;
}

/// The control plane over HTTP (Connect, binary protobuf).
#[derive(Clone)]
pub struct ControlClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ControlClient {
    /// A client for `base` (e.g. `http://control:8081`) authenticating with `token`.
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        Ok(ControlClient {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(300))
                .build()?,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    /// Downloads `path` into `dest` (atomically); false on 404.
    pub async fn download(&self, path: &str, dest: &Path) -> anyhow::Result<bool> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let resp = resp.error_for_status()?;
        let dir = dest.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir).await?;
        let (file, tmp) = tempfile::NamedTempFile::new_in(dir)?.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            file.write_all(&chunk?).await?;
        }
        file.flush().await?;
        drop(file);
        tmp.persist(dest)?;
        Ok(true)
    }
}

#[async_trait]
impl SnapshotSource for ControlClient {
    async fn snapshot(&self) -> anyhow::Result<FeedSnapshot> {
        let resp = self
            .http
            .post(format!("{}/platform.v1.FeedService/GetSnapshot", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/proto")
            .body(GetSnapshotRequest {}.encode_to_vec())
            .send()
            .await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            anyhow::bail!(
                "control answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        GetSnapshotResponse::decode(body)?
            .snapshot
            .context("empty snapshot")
    }
}

/// The control plane in the same process.
pub struct InProcessSource(pub Arc<platform_control::Control>);

#[async_trait]
impl SnapshotSource for InProcessSource {
    async fn snapshot(&self) -> anyhow::Result<FeedSnapshot> {
        Ok(platform_control::feed::snapshot(&self.0).await?)
    }
}

/// Modules and artifacts fetched from control over HTTP, cached in a local directory.
pub struct ControlModuleSource {
    client: ControlClient,
    dir: PathBuf,
}

impl ControlModuleSource {
    /// A source caching modules in `dir`.
    pub fn new(client: ControlClient, dir: PathBuf) -> Self {
        ControlModuleSource { client, dir }
    }
}

#[async_trait]
impl ModuleSource for ControlModuleSource {
    async fn module_path(&self, digest: &Digest) -> Result<PathBuf, SourceError> {
        let path = self.dir.join(format!("{digest}.wasm"));
        if path.exists() {
            return Ok(path);
        }
        match self
            .client
            .download(&format!("/v1/modules/{digest}/wasm"), &path)
            .await
        {
            Ok(true) => Ok(path),
            Ok(false) => Err(SourceError(format!("control has no module {digest}"))),
            Err(e) => Err(SourceError(format!("cannot fetch module {digest}: {e:#}"))),
        }
    }

    async fn fetch_artifact(
        &self,
        digest: &Digest,
        flavor: &str,
        dest: &Path,
    ) -> Result<bool, SourceError> {
        self.client
            .download(&format!("/v1/artifacts/{digest}/{flavor}"), dest)
            .await
            .map_err(|e| SourceError(format!("cannot fetch artifact {digest}: {e:#}")))
    }
}

/// Modules and artifacts read from the blob store directly (one process).
pub struct BlobModuleSource {
    blobs: BlobStore,
    dir: PathBuf,
}

impl BlobModuleSource {
    /// A source over `blobs`, caching non-local blobs in `dir`.
    pub fn new(blobs: BlobStore, dir: PathBuf) -> Self {
        BlobModuleSource { blobs, dir }
    }
}

#[async_trait]
impl ModuleSource for BlobModuleSource {
    async fn module_path(&self, digest: &Digest) -> Result<PathBuf, SourceError> {
        let key = BlobStore::module_key(digest.as_str());
        if let Some(p) = self.blobs.local_path(&key)
            && p.exists()
        {
            return Ok(p);
        }
        let path = self.dir.join(format!("{digest}.wasm"));
        if !path.exists() {
            self.blobs
                .get_to_file(&key, &path)
                .await
                .map_err(|e| SourceError(format!("cannot read module {digest}: {e}")))?;
        }
        Ok(path)
    }

    async fn fetch_artifact(
        &self,
        digest: &Digest,
        flavor: &str,
        dest: &Path,
    ) -> Result<bool, SourceError> {
        let key = BlobStore::artifact_key(digest.as_str(), flavor);
        match self.blobs.exists(&key).await {
            Ok(true) => self
                .blobs
                .get_to_file(&key, dest)
                .await
                .map(|()| true)
                .map_err(|e| SourceError(format!("cannot read artifact {digest}: {e}"))),
            Ok(false) => Ok(false),
            Err(e) => Err(SourceError(e.to_string())),
        }
    }
}

/// Follows the feed until `shutdown` resolves, installing route tables into `rt`.
pub async fn follow(
    rt: Arc<Runtime>,
    source: Arc<dyn SnapshotSource>,
    bus: Option<EventBus>,
    resync: Arc<Notify>,
    scope: ServeScope,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // Ready means the first snapshot's modules are on local disk, not just its routes
    // installed: held here, released by the first snapshot's prefetch.
    // Shared by the installs: the one whose table goes in releases it, so a newer table
    // arriving while the first one's modules are fetched keeps readiness held until its own
    // modules are local too.
    let first_hold = FirstHold::new(rt.hold_readiness("first feed snapshot"));
    // Counts installs: a table still waiting for its modules goes in only if no newer one
    // came meanwhile.
    let installs = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut events = None;
    let mut state: Option<FeedState> = None;
    // Set when the state must be read again from a snapshot: at start, after a revision
    // gap or a lost stream, on request, and every 30 s as a safety net. The state read
    // before stays in force (and is compared with the new one) until then.
    let mut need_snapshot = true;
    let mut backoff = Duration::from_millis(100);
    let mut safety = tokio::time::interval(Duration::from_secs(30));
    safety.tick().await;
    loop {
        // Subscribe before taking the snapshot, so nothing falls between the two.
        if events.is_none()
            && let Some(bus) = &bus
        {
            match bus.subscribe_feed().await {
                Ok(s) => events = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to feed events; relying on periodic resync")
                }
            }
        }
        if need_snapshot {
            match source.snapshot().await {
                Ok(s) => {
                    let st = FeedState::from_snapshot(s);
                    // The periodic resync usually finds nothing new: say so only at DEBUG.
                    if state.as_ref() == Some(&st) {
                        tracing::debug!(
                            revision = st.revision(),
                            apps = st.len(),
                            "feed snapshot unchanged"
                        );
                    } else {
                        install(&rt, &st, &scope, &first_hold, &installs);
                        tracing::info!(
                            revision = st.revision(),
                            apps = st.len(),
                            "feed snapshot applied"
                        );
                    }
                    state = Some(st);
                    need_snapshot = false;
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_ms = backoff.as_millis() as u64, "cannot read the feed snapshot; serving the last known routes");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let next = async {
            match events.as_mut() {
                Some(s) => s.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => return,
            ev = next => match ev {
                Some(ev) => {
                    if let Some(st) = state.as_mut().filter(|_| !need_snapshot) {
                        match st.apply(&ev) {
                            Applied::Changed => {
                                install(&rt, st, &scope, &first_hold, &installs);
                                tracing::info!(revision = st.revision(), "feed event applied");
                            }
                            Applied::Ignored => {}
                            Applied::Gap => {
                                tracing::info!(have = st.revision(), got = ev.revision, "feed revision gap; resyncing");
                                need_snapshot = true;
                            }
                        }
                    }
                }
                None => {
                    tracing::warn!("feed event stream ended; resubscribing");
                    events = None;
                    need_snapshot = true;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            () = resync.notified() => need_snapshot = true,
            _ = safety.tick() => need_snapshot = true,
        }
    }
}

/// How many modules are fetched at once ahead of traffic.
const PREFETCH_CONCURRENCY: usize = 4;

/// How long a new table waits for modules that cannot be fetched (control away) before it
/// goes in anyway, its first requests then loading them.
const FETCH_PATIENCE: std::time::Duration = Duration::from_secs(30);

/// Installs `state`'s routes once the artifacts of their modules are on local disk: while
/// one cannot be fetched (control away, say), the table in force keeps serving, so a
/// release made just before control went down does not answer 5xx for want of its
/// artifact; the fetch is retried and the table goes in when it succeeds (or after
/// [`FETCH_PATIENCE`]). Per-request snapshots are prepared after. The start-up readiness
/// hold is released by the install whose table goes in, once its snapshots are prepared;
/// one superseded by a newer table leaves it to that one.
fn install(
    rt: &Arc<Runtime>,
    state: &FeedState,
    scope: &ServeScope,
    hold: &FirstHold,
    installs: &Arc<std::sync::atomic::AtomicU64>,
) {
    let revision = state.revision();
    let hold = hold.clone();
    use std::sync::atomic::Ordering;
    let table = state.route_table_for(scope);
    let digests: std::collections::BTreeSet<(Digest, bool)> = table
        .routes()
        .iter()
        // A dedicated app forwarded to its Service runs no guest here.
        .filter(|(_, t)| t.forward().is_none())
        .map(|(_, t)| t.clone())
        .chain(table.subjects().iter().map(|(_, t)| t.target.clone()))
        .flat_map(|t| {
            t.releases
                .iter()
                .map(|(_, s)| (s.module.clone(), s.isolation == Isolation::PerRequest))
                .collect::<Vec<_>>()
        })
        .collect();
    let generation = installs.fetch_add(1, Ordering::SeqCst) + 1;
    let count = digests.len();
    let missing: Vec<Digest> = digests
        .iter()
        .filter(|(d, _)| !rt.cache.artifact_path(d).exists())
        .map(|(d, _)| d.clone())
        .collect();
    // In at once when every module is local; else once they are (below).
    let mut table = if missing.is_empty() {
        rt.routes.replace(table);
        rt.served_revision.store(revision, Ordering::SeqCst);
        None
    } else {
        Some(table)
    };
    let installed_now = table.is_none();
    let rt = rt.clone();
    let cache = rt.cache.clone();
    let installs = installs.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut pending = missing;
        let mut installed = installed_now;
        while !pending.is_empty() {
            let failed: Vec<Digest> = futures::stream::iter(pending)
                .map(|d| {
                    let cache = cache.clone();
                    async move {
                        match cache.prefetch(&d).await {
                            // Not in the source: the first request compiles it; waiting
                            // would not help.
                            Ok(_) => None,
                            Err(e) => {
                                tracing::warn!(module = ?d, error = %e, "artifact fetch failed; the routes in force keep serving until it succeeds");
                                Some(d)
                            }
                        }
                    }
                })
                .buffer_unordered(PREFETCH_CONCURRENCY)
                .filter_map(|d| async move { d })
                .collect()
                .await;
            pending = failed;
            let superseded = installs.load(Ordering::SeqCst) != generation;
            if pending.is_empty() || superseded || started.elapsed() >= FETCH_PATIENCE {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        if let Some(table) = table.take()
            && installs.load(Ordering::SeqCst) == generation
        {
            if !pending.is_empty() {
                tracing::warn!(
                    modules = pending.len(),
                    "installing routes whose artifacts could not be fetched; their first requests load them"
                );
            }
            rt.routes.replace(table);
            rt.served_revision.store(revision, Ordering::SeqCst);
            installed = true;
        }
        for (d, per_request) in digests {
            if per_request && let Err(e) = cache.prepare_snapshot(&d).await {
                tracing::warn!(module = ?d, error = %e, "per-request snapshot unavailable");
            }
        }
        if installed && hold.release() {
            tracing::info!(
                modules = count,
                ms = started.elapsed().as_millis() as u64,
                "modules of the first routes fetched; ready"
            );
        }
    });
}

/// The start-up readiness hold, shared by the installs that may release it.
#[derive(Clone)]
struct FirstHold(Arc<std::sync::Mutex<Option<platform_runtime::readiness::ReadinessHold>>>);

impl FirstHold {
    fn new(hold: platform_runtime::readiness::ReadinessHold) -> Self {
        FirstHold(Arc::new(std::sync::Mutex::new(Some(hold))))
    }

    /// Releases the hold; true if this call did (it was still held).
    fn release(&self) -> bool {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use platform_proto::v1::{Release, ServingApp, ServingRoute, WeightedRelease};
    use platform_runtime::RuntimeConfig;

    use super::*;

    /// A snapshot source whose answer the test changes.
    struct Snapshots(Mutex<FeedSnapshot>);

    #[async_trait]
    impl SnapshotSource for Snapshots {
        async fn snapshot(&self) -> anyhow::Result<FeedSnapshot> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    /// Has no artifacts; fetching `gated`'s fails (control away) until `open` is set.
    struct GatedSource {
        gated: Digest,
        open: AtomicBool,
        failed: AtomicU32,
    }

    #[async_trait]
    impl ModuleSource for GatedSource {
        async fn module_path(&self, _digest: &Digest) -> Result<PathBuf, SourceError> {
            Err(SourceError("no module bytes in this test".into()))
        }

        async fn fetch_artifact(
            &self,
            digest: &Digest,
            _flavor: &str,
            _dest: &Path,
        ) -> Result<bool, SourceError> {
            if *digest == self.gated && !self.open.load(Ordering::SeqCst) {
                self.failed.fetch_add(1, Ordering::SeqCst);
                return Err(SourceError("control is away".into()));
            }
            Ok(false)
        }
    }

    fn snapshot(revision: u64, release: &str, digest: char) -> FeedSnapshot {
        FeedSnapshot {
            revision,
            apps: vec![ServingApp {
                app_id: "app".into(),
                tenant: "t".into(),
                name: "app".into(),
                routes: vec![ServingRoute {
                    host: String::new(),
                    path_prefix: "/a".into(),
                }],
                releases: vec![WeightedRelease {
                    weight: 100,
                    release: Some(Release {
                        id: release.into(),
                        module_digest: digest.to_string().repeat(64),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn served_release(rt: &Runtime) -> Option<String> {
        let m = rt.routes.load().lookup(None, "/a/x")?;
        Some(m.target.releases.first()?.1.release.clone())
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("not within 10 s: {what}");
    }

    /// Found by the chaos test: a release made just before control went away was installed
    /// at once, and its requests answered 5xx while its artifact could not be fetched. The
    /// table in force must keep serving until the new table's modules are local.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_table_in_force_serves_until_the_new_tables_modules_are_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let source = Arc::new(GatedSource {
            gated: Digest::parse(&"b".repeat(64)).unwrap(),
            open: AtomicBool::new(false),
            failed: AtomicU32::new(0),
        });
        let rt = Runtime::new(RuntimeConfig::new(dir.path()), source.clone()).unwrap();
        let snapshots = Arc::new(Snapshots(Mutex::new(snapshot(1, "r1", 'a'))));
        let resync = Arc::new(Notify::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let following = tokio::spawn(follow(
            rt.clone(),
            snapshots.clone(),
            None,
            resync.clone(),
            ServeScope::All,
            async {
                let _ = stopped.await;
            },
        ));
        until("the first table goes in", || {
            served_release(&rt).as_deref() == Some("r1")
        })
        .await;

        // Release r2 (module b) while its artifact cannot be fetched.
        *snapshots.0.lock().unwrap() = snapshot(2, "r2", 'b');
        resync.notify_one();
        until("the fetch is retried", || {
            source.failed.load(Ordering::SeqCst) >= 2
        })
        .await;
        assert_eq!(served_release(&rt).as_deref(), Some("r1"));
        assert_eq!(rt.served_revision.load(Ordering::SeqCst), 1);

        // Control back: the new table goes in.
        source.open.store(true, Ordering::SeqCst);
        until("the new table goes in once its module is fetched", || {
            served_release(&rt).as_deref() == Some("r2")
        })
        .await;
        assert_eq!(rt.served_revision.load(Ordering::SeqCst), 2);
        let _ = stop.send(());
        following.await.unwrap();
    }
}
