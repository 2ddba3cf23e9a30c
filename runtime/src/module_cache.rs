//! `ModuleCache`: content-addressed modules, compiled once, loaded by mmap, evicted when idle.
//!
//! ```text
//!  request ──► get(digest) ──► in memory? ──yes──► LoadedModule (warm)
//!                                  │ no (single flight per digest)
//!                                  ▼
//!              artifact <digest>-<engine>.cwasm on disk? ──yes──► deserialize_file (mmap, cold)
//!                                  │ no
//!                                  ▼
//!              ModuleSource: precompiled artifact from the feed, else the .wasm bytes,
//!              compiled with Cranelift on a blocking thread, written atomically, then mmapped
//! ```
//!
//! Components (wasi:http, see [`crate::component`]) go through the same cache: compiled
//! with `precompile_component`, mapped with `Component::deserialize_file`, and
//! pre-instantiated against the component linker instead of the module linker.
//!
//! A module Cranelift refuses is remembered (per digest and artifact kind): later requests
//! get the same error at once instead of each running the compiler again.
//!
//! Modules stay in memory while in use and are dropped after `idle_timeout` without a
//! request: the host keeps only the route and the artifact file for an idle app (scale to
//! zero inside the host). Loading a compiled artifact costs well under a millisecond.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;
use wasmtime::component::Component;
use wasmtime::{Engine, InstancePre, Linker, Module, Precompiled};

use crate::abi::{self, AbiError, AbiInfo, AbiKind};
use crate::component::{ComponentPre, ComponentState};
use crate::engine::EngineFingerprint;
use crate::guest::GuestState;

/// A module's content address: the lower-case hex sha256 of its bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(hex::encode(Sha256::digest(bytes)))
    }

    /// Parses a 64-character hex digest, with or without a `sha256:` prefix.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix("sha256:").unwrap_or(s);
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Digest(s.to_ascii_lowercase()))
    }

    /// Wraps a finished hasher.
    pub fn from_hasher(h: Sha256) -> Self {
        Digest(hex::encode(h.finalize()))
    }

    /// The hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.short())
    }
}

/// Which compiled form of a module an artifact holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    /// The module as uploaded.
    Plain,
    /// An SDK module pre-initialized with Wizer (`per-request` isolation): instances start
    /// with Go's start-up already done.
    Snapshot,
}

impl ArtifactKind {
    /// The artifact's flavor name for `engine`: part of its file and blob names, so a
    /// snapshot and a plain artifact of one module never collide.
    pub fn flavor(self, engine: &EngineFingerprint) -> String {
        match self {
            ArtifactKind::Plain => engine.as_str().to_string(),
            ArtifactKind::Snapshot => format!("{}-snapshot", engine.as_str()),
        }
    }
}

/// Where the cache gets module bytes (and, when a compiler worker made one, artifacts).
#[async_trait]
pub trait ModuleSource: Send + Sync {
    /// Path of a local file holding the module's wasm bytes.
    async fn module_path(&self, digest: &Digest) -> Result<PathBuf, SourceError>;

    /// Writes a precompiled artifact named `flavor` (see [`ArtifactKind::flavor`]) to
    /// `dest` if the source has one. Returns `false` when it has none (the cache then
    /// compiles, or snapshots, locally).
    async fn fetch_artifact(
        &self,
        _digest: &Digest,
        _flavor: &str,
        _dest: &Path,
    ) -> Result<bool, SourceError> {
        Ok(false)
    }
}

/// A source could not produce a module.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Modules kept in a local directory as `<digest>.wasm`.
#[derive(Debug, Clone)]
pub struct LocalModuleStore {
    dir: PathBuf,
}

impl LocalModuleStore {
    /// A store in `dir` (created when missing).
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(LocalModuleStore { dir })
    }

    /// The file a digest is kept in.
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }

    /// Stores `bytes` (once per content) and returns their digest.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<Digest> {
        let digest = Digest::of(bytes);
        let path = self.path_of(&digest);
        if !path.exists() {
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            std::io::Write::write_all(&mut tmp, bytes)?;
            tmp.persist(&path).map_err(|e| e.error)?;
        }
        Ok(digest)
    }
}

#[async_trait]
impl ModuleSource for LocalModuleStore {
    async fn module_path(&self, digest: &Digest) -> Result<PathBuf, SourceError> {
        let path = self.path_of(digest);
        if path.exists() {
            Ok(path)
        } else {
            Err(SourceError(format!(
                "module {digest:?} is not in {}",
                self.dir.display()
            )))
        }
    }
}

/// A module ready to instantiate.
pub struct LoadedModule {
    /// Content digest.
    pub digest: Digest,
    /// What kind of guest it is.
    pub abi: AbiInfo,
    /// The compiled code, imports resolved.
    pub code: Code,
    /// A pre-initialized snapshot (SDK per-request mode): instances skip Go's start-up.
    pub is_snapshot: bool,
}

/// Compiled code (an mmapped artifact) with its imports resolved.
pub enum Code {
    /// A core module (WAGI or SDK), pre-instantiated against the shared module linker.
    Core(InstancePre<GuestState>),
    /// A wasi:http component, pre-instantiated against the component linker.
    Component(ComponentPre),
}

/// A core-module request path was handed a component.
#[derive(Debug, thiserror::Error)]
#[error("this is a component, not a core module")]
pub struct NotCoreModule;

impl LoadedModule {
    /// The pre-instantiated core module (WAGI and SDK execution).
    pub fn core_pre(&self) -> Result<&InstancePre<GuestState>, NotCoreModule> {
        match &self.code {
            Code::Core(pre) => Ok(pre),
            Code::Component(_) => Err(NotCoreModule),
        }
    }

    /// The pre-instantiated component, if this is one.
    pub fn proxy_pre(&self) -> Option<&ComponentPre> {
        match &self.code {
            Code::Component(pre) => Some(pre),
            Code::Core(_) => None,
        }
    }
}

impl fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModule")
            .field("digest", &self.digest)
            .field("abi", &self.abi.kind)
            .finish()
    }
}

/// How a module was obtained for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// Already in memory.
    Warm,
    /// Mapped from an artifact on disk.
    Artifact,
    /// Compiled with Cranelift first (the artifact did not exist).
    Compiled,
}

impl LoadKind {
    /// Label for metrics and spans.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadKind::Warm => "warm",
            LoadKind::Artifact => "artifact",
            LoadKind::Compiled => "compiled",
        }
    }

    /// True for anything but [`LoadKind::Warm`].
    pub fn is_cold(self) -> bool {
        self != LoadKind::Warm
    }
}

/// Why a module could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The source does not have it.
    #[error("module unavailable: {0}")]
    Unavailable(String),
    /// It is not a module this host can run.
    #[error(transparent)]
    Abi(#[from] AbiError),
    /// Cranelift or the artifact loader failed.
    #[error("cannot compile the module: {0}")]
    Compile(String),
    /// The pre-initialized snapshot for `per-request` isolation could not be made (the
    /// module's start-up failed, or it is not an SDK module).
    #[error("cannot make the per-request snapshot: {0}")]
    Snapshot(String),
    /// Imports did not resolve against the host linker.
    #[error("cannot link the module: {0}")]
    Link(String),
    /// Disk trouble in the artifact directory.
    #[error("artifact cache I/O: {0}")]
    Io(String),
}

/// One module in the cache: loaded at most once, shared by every request for it.
pub struct ModuleSlot {
    cell: OnceCell<(Arc<LoadedModule>, LoadKind)>,
    last_used_ms: AtomicU64,
}

/// How long a failed snapshot is remembered before a request may try again: making one
/// takes seconds, and a module whose start-up fails fails the same way next time.
const SNAPSHOT_FAILURE_TTL: Duration = Duration::from_secs(60);

/// The cache. Cheap to share behind an `Arc`.
pub struct ModuleCache {
    engine: Engine,
    fingerprint: EngineFingerprint,
    linker: Arc<Linker<GuestState>>,
    component_linker: wasmtime::component::Linker<ComponentState>,
    source: Arc<dyn ModuleSource>,
    artifact_dir: PathBuf,
    idle_timeout: Duration,
    slots: Mutex<HashMap<(Digest, ArtifactKind), Arc<ModuleSlot>>>,
    failed_snapshots: Mutex<HashMap<Digest, (Instant, LoadError)>>,
    /// Modules Cranelift refused: the same bytes fail the same way on the same engine, so
    /// the failure is answered again rather than recompiled on every request.
    failed_compiles: Mutex<HashMap<(Digest, ArtifactKind), LoadError>>,
    epoch: Instant,
    compiles: AtomicU64,
    snapshots: AtomicU64,
}

impl fmt::Debug for ModuleCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleCache")
            .field("artifact_dir", &self.artifact_dir)
            .field("resident", &self.resident())
            .finish()
    }
}

impl ModuleCache {
    /// A cache writing artifacts to `artifact_dir`.
    pub fn new(
        engine: Engine,
        linker: Arc<Linker<GuestState>>,
        source: Arc<dyn ModuleSource>,
        artifact_dir: impl Into<PathBuf>,
        idle_timeout: Duration,
    ) -> std::io::Result<Self> {
        let artifact_dir = artifact_dir.into();
        std::fs::create_dir_all(&artifact_dir)?;
        let component_linker = crate::component::build_linker(&engine)
            .map_err(|e| std::io::Error::other(format!("component linker: {e:#}")))?;
        Ok(ModuleCache {
            component_linker,
            fingerprint: EngineFingerprint::of(&engine),
            engine,
            linker,
            source,
            artifact_dir,
            idle_timeout,
            slots: Mutex::new(HashMap::new()),
            failed_snapshots: Mutex::new(HashMap::new()),
            failed_compiles: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            compiles: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
        })
    }

    /// The engine modules are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine's fingerprint (part of artifact names).
    pub fn fingerprint(&self) -> &EngineFingerprint {
        &self.fingerprint
    }

    /// Where the artifact for `digest` lives (whether or not it exists yet).
    pub fn artifact_path(&self, digest: &Digest) -> PathBuf {
        self.artifact_path_of(digest, ArtifactKind::Plain)
    }

    /// Where the artifact of `kind` for `digest` lives (whether or not it exists yet).
    pub fn artifact_path_of(&self, digest: &Digest, kind: ArtifactKind) -> PathBuf {
        self.artifact_dir
            .join(format!("{digest}-{}.cwasm", kind.flavor(&self.fingerprint)))
    }

    /// How many snapshots this cache made itself (rather than fetched from its source).
    pub fn snapshot_count(&self) -> u64 {
        self.snapshots.load(Ordering::Relaxed)
    }

    /// How many times this cache ran Cranelift (single flight makes concurrent cold
    /// requests share one compile).
    pub fn compile_count(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// Number of modules held in memory.
    pub fn resident(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The module for `digest`, loading (and if need be compiling) it on first use.
    /// Concurrent callers for the same cold module share one load.
    pub async fn get(&self, digest: &Digest) -> Result<(Arc<LoadedModule>, LoadKind), LoadError> {
        self.get_kind(digest, ArtifactKind::Plain).await
    }

    /// The pre-initialized snapshot of the SDK module `digest`, for `per-request`
    /// isolation: fetched from the source (the compile worker makes it at upload), else
    /// made here once and cached on disk like any artifact. A failure is remembered for
    /// [`SNAPSHOT_FAILURE_TTL`] so requests do not each pay for a doomed attempt.
    pub async fn get_snapshot(
        &self,
        digest: &Digest,
    ) -> Result<(Arc<LoadedModule>, LoadKind), LoadError> {
        self.snapshot_slot(digest).await.map(|(m, k, _)| (m, k))
    }

    /// [`Self::get_snapshot`], with the slot the snapshot is kept in.
    async fn snapshot_slot(
        &self,
        digest: &Digest,
    ) -> Result<(Arc<LoadedModule>, LoadKind, Arc<ModuleSlot>), LoadError> {
        if let Ok(failed) = self.failed_snapshots.lock()
            && let Some((at, e)) = failed.get(digest)
            && at.elapsed() < SNAPSHOT_FAILURE_TTL
        {
            return Err(e.clone());
        }
        let result = self.get_slot(digest, ArtifactKind::Snapshot).await;
        if let Err(e @ LoadError::Snapshot(_)) = &result
            && let Ok(mut failed) = self.failed_snapshots.lock()
        {
            failed.insert(digest.clone(), (Instant::now(), e.clone()));
        }
        result
    }

    /// The module for `digest` in the compiled form `kind`.
    pub async fn get_kind(
        &self,
        digest: &Digest,
        artifact: ArtifactKind,
    ) -> Result<(Arc<LoadedModule>, LoadKind), LoadError> {
        self.get_slot(digest, artifact)
            .await
            .map(|(m, k, _)| (m, k))
    }

    /// The module of a release whose requests remember their slot in `binding`: a warm
    /// module is reached without the cache's maps (no digest clone, no lock on the map).
    /// `artifact` must be the same on every call with one binding.
    pub(crate) async fn get_bound(
        &self,
        binding: &crate::release_binding::ModuleBinding,
        digest: &Digest,
        artifact: ArtifactKind,
    ) -> Result<(Arc<LoadedModule>, LoadKind), LoadError> {
        if let Some(slot) = binding.get()
            && let Some((m, _)) = slot.cell.get()
        {
            slot.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
            return Ok((m.clone(), LoadKind::Warm));
        }
        let loaded = match artifact {
            ArtifactKind::Snapshot => self.snapshot_slot(digest).await,
            ArtifactKind::Plain => self.get_slot(digest, artifact).await,
        }?;
        binding.set(&loaded.2);
        Ok((loaded.0, loaded.1))
    }

    /// [`Self::get_kind`], with the slot the module is kept in.
    async fn get_slot(
        &self,
        digest: &Digest,
        artifact: ArtifactKind,
    ) -> Result<(Arc<LoadedModule>, LoadKind, Arc<ModuleSlot>), LoadError> {
        let key = (digest.clone(), artifact);
        if let Ok(failed) = self.failed_compiles.lock()
            && let Some(e) = failed.get(&key)
        {
            return Err(e.clone());
        }
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .map_err(|_| LoadError::Io("module cache lock poisoned".into()))?;
            slots
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(ModuleSlot {
                        cell: OnceCell::new(),
                        last_used_ms: AtomicU64::new(0),
                    })
                })
                .clone()
        };
        slot.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        if let Some((m, _)) = slot.cell.get() {
            return Ok((m.clone(), LoadKind::Warm, slot));
        }
        // Cold: load, or wait for the request already loading it (and report its kind).
        let loaded = slot
            .cell
            .get_or_try_init(|| async {
                let (m, k) = self.load(digest, artifact).await?;
                Ok::<_, LoadError>((Arc::new(m), k))
            })
            .await;
        match loaded {
            Ok((m, kind)) => Ok((m.clone(), *kind, slot.clone())),
            Err(e) => {
                // Do not keep a slot for a module that failed; a later request retries.
                if let Ok(mut slots) = self.slots.lock()
                    && slots
                        .get(&key)
                        .is_some_and(|s| Arc::ptr_eq(s, &slot) && s.cell.get().is_none())
                {
                    slots.remove(&key);
                }
                Err(e)
            }
        }
    }

    /// Makes sure an artifact exists on disk for `digest` (compiling it if needed) without
    /// keeping the module in memory. Used ahead of traffic so no request waits for Cranelift.
    pub async fn precompile(&self, digest: &Digest) -> Result<AbiInfo, LoadError> {
        let artifact = self.artifact_path(digest);
        let wasm = self
            .source
            .module_path(digest)
            .await
            .map_err(|e| LoadError::Unavailable(e.0))?;
        let bytes = read_file(&wasm).await?;
        let info = abi::detect(&bytes)?;
        if !artifact.exists() {
            self.compile_once(digest, ArtifactKind::Plain, &bytes, &artifact)
                .await?;
        }
        Ok(info)
    }

    /// Makes sure the artifact for `digest` is on local disk, fetching it from the source
    /// when the source has one; does not load it into memory or compile. Runs when a new
    /// release appears, so its first request maps a local file.
    pub async fn prefetch(&self, digest: &Digest) -> Result<bool, LoadError> {
        let artifact = self.artifact_path(digest);
        if artifact.exists() {
            return Ok(true);
        }
        self.source
            .fetch_artifact(
                digest,
                &ArtifactKind::Plain.flavor(&self.fingerprint),
                &artifact,
            )
            .await
            .map_err(|e| LoadError::Unavailable(e.0))
    }

    /// Makes sure the per-request snapshot of `digest` exists on local disk: fetched from
    /// the source, else made now (and loaded, so a request arriving meanwhile waits for
    /// this one attempt instead of starting its own). Runs when a release appears, never
    /// in a request's path unless the request beats it.
    pub async fn prepare_snapshot(&self, digest: &Digest) -> Result<(), LoadError> {
        let artifact = self.artifact_path_of(digest, ArtifactKind::Snapshot);
        if artifact.exists() {
            return Ok(());
        }
        self.get_snapshot(digest).await.map(|_| ())
    }

    async fn load(
        &self,
        digest: &Digest,
        artifact_kind: ArtifactKind,
    ) -> Result<(LoadedModule, LoadKind), LoadError> {
        let mut artifact = self.artifact_path_of(digest, artifact_kind);
        let mut kind = LoadKind::Artifact;
        let info;
        if artifact.exists() {
            // The artifact was made by this host from validated bytes; the ABI was checked
            // then, and the module's exports tell it again below.
            info = None;
        } else {
            let fetched = self
                .source
                .fetch_artifact(digest, &artifact_kind.flavor(&self.fingerprint), &artifact)
                .await
                .map_err(|e| LoadError::Unavailable(e.0))?;
            let wasm = self
                .source
                .module_path(digest)
                .await
                .map_err(|e| LoadError::Unavailable(e.0))?;
            let bytes = read_file(&wasm).await?;
            let detected = abi::detect(&bytes)?;
            if !fetched {
                let compiled_here = match artifact_kind {
                    // A component needs no snapshot: `per-request` (its default) is a
                    // fresh instance of the component itself. Its snapshot slot maps the
                    // plain artifact: fetched (the worker made it at upload) or compiled
                    // once here, never compiled a second time under another name.
                    ArtifactKind::Snapshot if detected.kind == AbiKind::Component => {
                        let plain = self.artifact_path_of(digest, ArtifactKind::Plain);
                        let have = plain.exists()
                            || self
                                .source
                                .fetch_artifact(
                                    digest,
                                    &ArtifactKind::Plain.flavor(&self.fingerprint),
                                    &plain,
                                )
                                .await
                                .map_err(|e| LoadError::Unavailable(e.0))?;
                        if !have {
                            self.compile_once(digest, ArtifactKind::Plain, &bytes, &plain)
                                .await?;
                        }
                        artifact = plain;
                        !have
                    }
                    ArtifactKind::Plain => {
                        self.compile_once(digest, artifact_kind, &bytes, &artifact)
                            .await?;
                        true
                    }
                    ArtifactKind::Snapshot => {
                        if detected.kind != AbiKind::Sdk {
                            return Err(LoadError::Snapshot(
                                "per-request isolation needs a Platform SDK module; this is a WAGI module (WAGI already runs a fresh instance per request)".into(),
                            ));
                        }
                        self.snapshots.fetch_add(1, Ordering::Relaxed);
                        let started = Instant::now();
                        let snap = crate::sdk::snapshot::make(&self.engine, &self.linker, bytes)
                            .await
                            .map_err(|e| LoadError::Snapshot(e.0))?;
                        tracing::info!(module = ?digest, ms = started.elapsed().as_millis() as u64, "per-request snapshot made");
                        self.compile_once(digest, artifact_kind, &snap, &artifact)
                            .await?;
                        true
                    }
                };
                if compiled_here {
                    kind = LoadKind::Compiled;
                }
            }
            info = Some(detected);
        }
        let engine = self.engine.clone();
        let path = artifact.clone();
        let compiled = tokio::task::spawn_blocking(move || map_artifact(&engine, &path))
            .await
            .map_err(|e| LoadError::Compile(e.to_string()))?
            .map_err(|e| {
                // A stale or foreign artifact: remove it so the next attempt recompiles.
                let _ = std::fs::remove_file(&artifact);
                LoadError::Compile(format!("{e:#}"))
            })?;
        let (info, code) = match compiled {
            Mapped::Module(module) => {
                let info = match info {
                    Some(i) => i,
                    None => info_from_module(&module)?,
                };
                let pre = self
                    .linker
                    .instantiate_pre(&module)
                    .map_err(|e| LoadError::Link(format!("{e:#}")))?;
                (info, Code::Core(pre))
            }
            Mapped::Component(component) => {
                let pre = self
                    .component_linker
                    .instantiate_pre(&component)
                    .and_then(ComponentPre::new)
                    .map_err(|e| LoadError::Link(format!("{e:#}")))?;
                let info = AbiInfo {
                    kind: AbiKind::Component,
                    has_initialize: false,
                    has_warmup: false,
                };
                (info, Code::Component(pre))
            }
        };
        Ok((
            LoadedModule {
                digest: digest.clone(),
                abi: info,
                code,
                is_snapshot: artifact_kind == ArtifactKind::Snapshot,
            },
            kind,
        ))
    }

    /// Compiles `bytes` into `artifact`, unless Cranelift already refused this module:
    /// a refusal is remembered for the cache's lifetime (it is deterministic).
    async fn compile_once(
        &self,
        digest: &Digest,
        kind: ArtifactKind,
        bytes: &[u8],
        artifact: &Path,
    ) -> Result<(), LoadError> {
        let key = (digest.clone(), kind);
        if let Ok(failed) = self.failed_compiles.lock()
            && let Some(e) = failed.get(&key)
        {
            return Err(e.clone());
        }
        let result = self.compile_to(bytes, artifact).await;
        if let Err(e @ LoadError::Compile(_)) = &result
            && let Ok(mut failed) = self.failed_compiles.lock()
        {
            tracing::warn!(module = ?digest, error = %e, "module failed to compile; not retrying");
            failed.insert(key, e.clone());
        }
        result
    }

    async fn compile_to(&self, bytes: &[u8], artifact: &Path) -> Result<(), LoadError> {
        self.compiles.fetch_add(1, Ordering::Relaxed);
        let engine = self.engine.clone();
        let bytes = bytes.to_vec();
        let dir = self.artifact_dir.clone();
        let artifact = artifact.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<(), LoadError> {
            let compiled = crate::engine::precompile(&engine, &bytes)
                .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
            let mut tmp =
                tempfile::NamedTempFile::new_in(&dir).map_err(|e| LoadError::Io(e.to_string()))?;
            std::io::Write::write_all(&mut tmp, &compiled)
                .map_err(|e| LoadError::Io(e.to_string()))?;
            tmp.persist(&artifact)
                .map_err(|e| LoadError::Io(e.error.to_string()))?;
            Ok(())
        })
        .await
        .map_err(|e| LoadError::Compile(e.to_string()))?
    }

    /// Drops modules idle for longer than the idle timeout. Returns how many went.
    pub fn evict_idle(&self) -> usize {
        let now = self.now_ms();
        let idle = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let Ok(mut slots) = self.slots.lock() else {
            return 0;
        };
        let before = slots.len();
        slots.retain(|_, s| {
            s.cell.get().is_none()
                || now.saturating_sub(s.last_used_ms.load(Ordering::Relaxed)) < idle
        });
        before - slots.len()
    }

    /// Drops every module from memory now (artifacts stay on disk). For benchmarks of cold
    /// starts and for operators freeing memory.
    pub fn evict_all(&self) -> usize {
        let Ok(mut slots) = self.slots.lock() else {
            return 0;
        };
        let n = slots.len();
        slots.clear();
        n
    }

    /// Runs [`Self::evict_idle`] periodically until the cache is dropped.
    pub fn spawn_evictor(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let period =
            (self.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(cache) = weak.upgrade() else { break };
                let n = cache.evict_idle();
                if n > 0 {
                    tracing::debug!(evicted = n, "idle modules dropped from memory");
                }
            }
        })
    }
}

/// A mapped artifact: a core module or a component.
enum Mapped {
    Module(Module),
    Component(Component),
}

/// Maps the artifact at `path`, as a module or a component according to its header.
fn map_artifact(engine: &Engine, path: &Path) -> wasmtime::Result<Mapped> {
    let kind = Engine::detect_precompiled_file(path)?;
    #[expect(
        unsafe_code,
        reason = "deserialize_file trusts the file; artifacts are written only by this host's compiler (or fetched from our own control plane) into a private directory"
    )]
    // SAFETY: see the reason above; the file is never modified after its atomic rename.
    unsafe {
        match kind {
            Some(Precompiled::Component) => {
                Component::deserialize_file(engine, path).map(Mapped::Component)
            }
            _ => Module::deserialize_file(engine, path).map(Mapped::Module),
        }
    }
}

fn info_from_module(module: &Module) -> Result<AbiInfo, LoadError> {
    let mut info = AbiInfo {
        kind: AbiKind::Wagi,
        has_initialize: false,
        has_warmup: false,
    };
    let mut start = false;
    let mut handle = false;
    for e in module.exports() {
        match e.name() {
            "_start" => start = true,
            "_initialize" => info.has_initialize = true,
            "platform_warmup" => info.has_warmup = true,
            n if n == crate::sdk::abi::SDK_EXPORT_HANDLE => handle = true,
            _ => {}
        }
    }
    info.kind = if handle {
        AbiKind::Sdk
    } else if start {
        AbiKind::Wagi
    } else {
        return Err(LoadError::Abi(AbiError::NoEntryPoint));
    };
    Ok(info)
}

async fn read_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    tokio::fs::read(path)
        .await
        .map_err(|e| LoadError::Unavailable(format!("{}: {e}", path.display())))
}
