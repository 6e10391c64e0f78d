//! The node's Wasm runtime: one engine, the compile caches, and running programs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use wasmtime::Engine;

use crate::artifact::{self, Compiled, DiskCache};
use crate::config::RuntimeConfig;
use crate::epoch::EpochTicker;
use crate::error::{PrepareError, RunError, RuntimeError};
use crate::fetch::{self, Location, Source};
use crate::http::{self, HttpService, ServeTarget};
use crate::meter::{Meter, MeterBook};
use crate::oci::{Prepared, PullOptions, PullPolicy, Registry};
use crate::program::{Linkers, Pre, Program, ProgramKind};
use crate::run::{self, Exit, InputStream, Process, RunLimits};

/// One node's Wasm runtime. Cheap to clone: clones share the engine and caches.
#[derive(Clone)]
pub struct WasmRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: RuntimeConfig,
    engine: Engine,
    linkers: Linkers,
    disk: DiskCache,
    http: reqwest::Client,
    /// Programs by digest. The cell makes concurrent prepares of one artifact
    /// compile it once; a failed preparation leaves the cell empty for a retry.
    programs: Mutex<HashMap<String, Arc<OnceCell<Program>>>>,
    /// Digest last fetched for each `https://` reference, so a cached program does
    /// not cost a download (Kubernetes' `IfNotPresent`).
    remote_digests: Mutex<HashMap<String, String>>,
    /// Digest of each `file://` artifact and what its file looked like when it
    /// was read, so an unchanged file is not read and hashed again at every start.
    file_digests: Mutex<HashMap<PathBuf, (FileStamp, String)>>,
    /// Registry pulls and what they resolved to, kept on disk.
    registry: Registry,
    stats: Counters,
    meters: MeterBook,
    _ticker: EpochTicker,
}

/// What a file looked like: if none of this changed, neither did its content
/// (an editor or `cp` that rewrites it changes the mtime, a rename the inode).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
}

impl FileStamp {
    async fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = tokio::fs::metadata(path).await.ok()?;
        Some(FileStamp {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// What [`WasmRuntime::run_with`] adds to a plain run.
#[derive(Default)]
pub struct RunExtras {
    /// The guest's stdin; `None` is an empty one.
    pub stdin: Option<InputStream>,
    /// Counts the run's memory and CPU time.
    pub meter: Option<Meter>,
}

#[derive(Default)]
struct Counters {
    compiles: AtomicU64,
    disk_cache_loads: AtomicU64,
    memory_cache_hits: AtomicU64,
}

/// How often each cache level answered, since the runtime started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Artifacts compiled from Wasm.
    pub compiles: u64,
    /// Artifacts loaded precompiled from `cache_dir`.
    pub disk_cache_loads: u64,
    /// Prepares answered from memory.
    pub memory_cache_hits: u64,
}

impl WasmRuntime {
    /// Builds the engine, links the WASI host and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<WasmRuntime, RuntimeError> {
        config.validate()?;
        let engine = Engine::new(&config.engine_config())
            .map_err(|e| RuntimeError::Engine { source: e.into() })?;
        let linkers = Linkers::new(&engine)?;
        let disk = DiskCache::open(&config.cache_dir, &engine).map_err(|source| {
            RuntimeError::CacheDir {
                path: config.cache_dir.clone(),
                source,
            }
        })?;
        let registry =
            Registry::open(&config.cache_dir).map_err(|source| RuntimeError::CacheDir {
                path: config.cache_dir.clone(),
                source,
            })?;
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .build()
            .map_err(|source| RuntimeError::HttpClient { source })?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)
            .map_err(|source| RuntimeError::Ticker { source })?;
        tracing::info!(cache = %disk.dir().display(), max_instances = config.max_instances, "wasm runtime ready");
        Ok(WasmRuntime {
            inner: Arc::new(Inner {
                config,
                engine,
                linkers,
                disk,
                http,
                programs: Mutex::default(),
                remote_digests: Mutex::default(),
                file_digests: Mutex::default(),
                registry,
                stats: Counters::default(),
                meters: MeterBook::default(),
                _ticker: ticker,
            }),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> RuntimeStats {
        let c = &self.inner.stats;
        RuntimeStats {
            compiles: c.compiles.load(Ordering::Relaxed),
            disk_cache_loads: c.disk_cache_loads.load(Ordering::Relaxed),
            memory_cache_hits: c.memory_cache_hits.load(Ordering::Relaxed),
        }
    }

    /// Fetch (file://, https:// or a registry reference), check, compile (or load
    /// from the caches), with the default [`PullOptions`]. Cheap when cached.
    pub async fn prepare(&self, image: &str) -> Result<Program, PrepareError> {
        Ok(self
            .prepare_with(image, &PullOptions::default())
            .await?
            .program)
    }

    /// [`WasmRuntime::prepare`] with a pull policy and registry credentials; also
    /// says which image the program came from (a pod's `imageID`).
    #[tracing::instrument(skip(self, options), fields(policy = ?options.policy))]
    pub async fn prepare_with(
        &self,
        image: &str,
        options: &PullOptions,
    ) -> Result<Prepared, PrepareError> {
        let limit = self.inner.config.max_artifact_bytes;
        let (image_id, digest, bytes) = match Source::parse(image)? {
            Source::Oci(reference) => {
                let pulled = self
                    .inner
                    .registry
                    .pull(&self.inner.http, image, &reference, options, limit)
                    .await?;
                (pulled.image_id, pulled.digest, pulled.bytes)
            }
            Source::Url(location) => {
                let stamp = match &location {
                    Location::File(path) => FileStamp::of(path).await,
                    Location::Https(_) => None,
                };
                if let (Location::File(path), Some(stamp)) = (&location, &stamp)
                    && let Some(program) = self.cached_file(path, stamp)
                {
                    let image_id = program.digest().to_string();
                    return Ok(Prepared { program, image_id });
                }
                let remote = matches!(location, Location::Https(_));
                if remote && options.policy != PullPolicy::Always {
                    if let Some(program) = self.cached_remote(image) {
                        let image_id = program.digest().to_string();
                        return Ok(Prepared { program, image_id });
                    }
                    if options.policy == PullPolicy::Never {
                        return Err(PrepareError::NotPresent {
                            image: image.to_owned(),
                        });
                    }
                }
                let bytes = fetch::fetch(&location, &self.inner.http, limit)
                    .await
                    .map_err(|source| PrepareError::Fetch {
                        image: image.to_owned(),
                        source,
                    })?;
                let digest = artifact::digest(&bytes);
                if let (Location::File(path), Some(stamp)) = (&location, stamp) {
                    let mut files = self.inner.file_digests.lock().expect("lock poisoned");
                    files.insert(path.clone(), (stamp, digest.clone()));
                }
                if remote {
                    let mut remote = self.inner.remote_digests.lock().expect("lock poisoned");
                    remote.insert(image.to_owned(), digest.clone());
                }
                (digest.clone(), digest, Some(bytes))
            }
        };
        let program = self.program(image, digest, bytes).await?;
        Ok(Prepared { program, image_id })
    }

    /// The program for an artifact digest: from memory, else compiled (or loaded
    /// precompiled) from `bytes`, or from the image store when no bytes were
    /// downloaded.
    async fn program(
        &self,
        image: &str,
        digest: String,
        bytes: Option<Vec<u8>>,
    ) -> Result<Program, PrepareError> {
        let cell = {
            let mut programs = self.inner.programs.lock().expect("lock poisoned");
            programs.entry(digest.clone()).or_default().clone()
        };
        if let Some(program) = cell.get() {
            self.inner
                .stats
                .memory_cache_hits
                .fetch_add(1, Ordering::Relaxed);
            return Ok(program.clone());
        }
        let result = cell
            .get_or_try_init(|| async {
                let bytes = match bytes {
                    Some(bytes) => bytes,
                    None => self.inner.registry.read_layer(image, &digest)?,
                };
                self.load_or_compile(image, digest.clone(), bytes).await
            })
            .await
            .cloned();
        if result.is_err() {
            let mut programs = self.inner.programs.lock().expect("lock poisoned");
            if programs.get(&digest).is_some_and(|c| c.get().is_none()) {
                programs.remove(&digest);
            }
        }
        result
    }

    /// The program of a `file://` artifact whose file is as it was when read.
    fn cached_file(&self, path: &Path, stamp: &FileStamp) -> Option<Program> {
        let digest = {
            let files = self.inner.file_digests.lock().expect("lock poisoned");
            let (seen, digest) = files.get(path)?;
            (seen == stamp).then(|| digest.clone())?
        };
        self.cached_program(&digest)
    }

    /// The program compiled for `digest`, if it is in memory (a memory cache hit).
    fn cached_program(&self, digest: &str) -> Option<Program> {
        let program = self
            .inner
            .programs
            .lock()
            .expect("lock poisoned")
            .get(digest)?
            .get()?
            .clone();
        self.inner
            .stats
            .memory_cache_hits
            .fetch_add(1, Ordering::Relaxed);
        Some(program)
    }

    fn cached_remote(&self, image: &str) -> Option<Program> {
        let digest = self
            .inner
            .remote_digests
            .lock()
            .expect("lock poisoned")
            .get(image)?
            .clone();
        self.cached_program(&digest)
    }

    /// Compiling takes ~0.1–2 s of CPU: it runs on the blocking pool so the async
    /// workers keep serving other pods.
    async fn load_or_compile(
        &self,
        image: &str,
        digest: String,
        bytes: Vec<u8>,
    ) -> Result<Program, PrepareError> {
        let invalid = |message: String| PrepareError::Invalid {
            image: image.to_owned(),
            message,
        };
        let kind = artifact::detect_kind(&bytes).map_err(invalid)?;
        let inner = self.inner.clone();
        let task = tokio::task::spawn_blocking(move || {
            let compiled = match inner.disk.load(&inner.engine, kind, &digest) {
                Some(compiled) => {
                    inner.stats.disk_cache_loads.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%digest, "loaded precompiled artifact");
                    compiled
                }
                None => {
                    let compiled = Compiled::compile(&inner.engine, kind, &bytes)
                        .map_err(|e| format!("{e:#}"))?;
                    inner.stats.compiles.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%digest, ?kind, "compiled artifact");
                    inner.disk.store(&compiled, &digest);
                    compiled
                }
            };
            let pre = inner.linkers.pre_instantiate(compiled)?;
            Ok::<_, String>(Program::new(digest, pre))
        });
        match task.await {
            Ok(result) => result.map_err(invalid),
            Err(join) => Err(PrepareError::Internal {
                image: image.to_owned(),
                message: format!("compile task failed: {join}"),
            }),
        }
    }

    /// Run the program to completion (or until `cancel` fires → Exit::Killed). stdout/stderr bytes go to the
    /// given writers as the guest writes them (unbuffered pass-through, so `kubectl logs -f` sees lines live).
    #[tracing::instrument(skip_all, fields(program = program.digest()))]
    pub async fn run(
        &self,
        program: &Program,
        process: Process,
        cancel: CancellationToken,
    ) -> Result<Exit, RunError> {
        self.run_with(program, process, RunExtras::default(), cancel)
            .await
    }

    /// [`WasmRuntime::run`] with a stdin for the guest and a meter that counts
    /// its memory and CPU time (an exec'd command, a metered container).
    #[tracing::instrument(skip_all, fields(program = program.digest()))]
    pub async fn run_with(
        &self,
        program: &Program,
        process: Process,
        extras: RunExtras,
        cancel: CancellationToken,
    ) -> Result<Exit, RunError> {
        let RunExtras { stdin, meter } = extras;
        let limits = RunLimits {
            meter,
            ..self.limits()
        };
        let exit = run::run(&self.inner.engine, &limits, program, process, stdin, cancel).await?;
        tracing::debug!(?exit, "program ended");
        Ok(exit)
    }

    /// Serve a [`ProgramKind::HttpProxy`] program on the given listeners until
    /// `cancel` fires, with a fresh instance per request. A trap answers that one
    /// request with 500. On cancellation the listeners close at once and in-flight
    /// requests get `drain_timeout`: `Exit::Code(0)` if they all finished,
    /// `Exit::Killed` if some were cut off.
    #[tracing::instrument(skip_all, fields(program = program.digest()))]
    pub async fn serve(
        &self,
        program: &Program,
        service: HttpService,
        cancel: CancellationToken,
    ) -> Result<Exit, RunError> {
        self.serve_metered(program, service, None, cancel).await
    }

    /// [`WasmRuntime::serve`], counting every request's instance on `meter`.
    pub async fn serve_metered(
        &self,
        program: &Program,
        service: HttpService,
        meter: Option<Meter>,
        cancel: CancellationToken,
    ) -> Result<Exit, RunError> {
        let Pre::Http(pre) = program.pre() else {
            return Err(RunError::WrongKind {
                digest: program.digest().to_owned(),
                kind: program.kind(),
                needed: "a wasi:http/proxy component",
            });
        };
        let target = ServeTarget {
            engine: &self.inner.engine,
            pre,
            digest: program.digest(),
            limits: RunLimits {
                meter,
                ..self.limits()
            },
        };
        let exit = http::serve(target, service, cancel).await?;
        tracing::debug!(?exit, kind = ?ProgramKind::HttpProxy, "stopped serving");
        Ok(exit)
    }

    fn limits(&self) -> RunLimits {
        RunLimits {
            max_memory_bytes: usize::try_from(self.inner.config.max_memory_bytes)
                .unwrap_or(usize::MAX),
            meter: None,
            epoch_tick: self.inner.config.epoch_tick,
            cpu: None,
        }
    }

    /// The meters of the containers running on this runtime, by pod and container.
    pub fn meters(&self) -> &MeterBook {
        &self.inner.meters
    }
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
