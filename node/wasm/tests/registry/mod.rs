//! A real registry on loopback for the tests: Debian's `docker-registry` started on
//! a free 127.0.0.1 port with a temporary storage directory, and a small push
//! client over the registry HTTP API (blob uploads, then the manifest).
//!
//! std only (plus `sha256sum`), so the end-to-end tests in the repository root can
//! include this file with `#[path]` without extra dependencies.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = "docker-registry";

/// The Wasm OCI artifact layout (`application/vnd.wasm.content.layer.v1+wasm`).
pub const WASM_CONTENT_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// The CNCF layout's layer (`wkg`, `oras`), under a `vnd.wasm.config.v0+json` config.
pub const WASM_LAYER: &str = "application/wasm";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Which of the two Wasm artifact layouts to push.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    WasmContent,
    Cncf,
}

/// A pushed manifest: its digest and size, for references and index entries.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub digest: String,
    pub size: usize,
}

pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Registry {
    /// Starts a registry, or returns `None` (after saying why) when the binary is
    /// missing outside CI. In CI (`CI` set) a missing binary fails the test.
    pub fn start(dir: &Path) -> Option<Registry> {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {BINARY}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "{BINARY} is required in CI (apt-get install -y docker-registry)"
            );
            eprintln!("SKIPPED: {BINARY} is not installed (apt-get install -y docker-registry)");
            return None;
        }
        std::fs::create_dir_all(dir).expect("create the registry directory");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        let mut registry = Registry {
            child: None,
            port,
            dir: dir.to_owned(),
        };
        registry.restart();
        Some(registry)
    }

    /// `127.0.0.1:<port>`, the registry part of references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the registry process (again, after [`Registry::stop`]) on the same
    /// port and storage, and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let storage = self.dir.join("storage");
        let config = self.dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n",
                storage.display(),
                self.port
            ),
        )
        .expect("write registry config");
        let log = std::fs::File::create(self.dir.join("registry.log")).expect("registry log");
        let child = Command::new(BINARY)
            .args(["serve".as_ref(), config.as_os_str()])
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self
                .request("GET", "/v2/", &[], b"")
                .is_ok_and(|r| r.status == 200)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "registry never answered; log:\n{}",
                std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the registry process (its storage stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Uploads a blob (POST for an upload URL, then a monolithic PUT) and returns its digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let start = self
            .request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"")
            .expect("start upload");
        assert_eq!(start.status, 202, "start upload: {start:?}");
        let location = start.header("location").expect("upload location");
        let path = location
            .strip_prefix(&format!("http://{}", self.host()))
            .unwrap_or(&location);
        let separator = if path.contains('?') { '&' } else { '?' };
        let put = self
            .request(
                "PUT",
                &format!("{path}{separator}digest={digest}"),
                &[("Content-Type", "application/octet-stream")],
                bytes,
            )
            .expect("upload blob");
        assert_eq!(put.status, 201, "upload blob: {put:?}");
        digest
    }

    /// Puts a manifest or index document under `reference` (a tag or digest).
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Pushed {
        let response = self
            .request(
                "PUT",
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("Content-Type", media_type)],
                body,
            )
            .expect("put manifest");
        assert_eq!(response.status, 201, "put manifest: {response:?}");
        Pushed {
            digest: sha256(body),
            size: body.len(),
        }
    }

    /// Pushes a Wasm artifact in `layout` as `repo:tag`.
    pub fn push_wasm(&self, repo: &str, tag: &str, wasm: &[u8], layout: Layout) -> Pushed {
        let layer = self.push_blob(repo, wasm);
        let (config_type, config, layer_type): (&str, String, &str) = match layout {
            Layout::WasmContent => (
                "application/vnd.wasm.config.v1+json",
                "{}".into(),
                WASM_CONTENT_LAYER,
            ),
            Layout::Cncf => (
                "application/vnd.wasm.config.v0+json",
                format!(r#"{{"architecture":"wasm","os":"wasip2","layerDigests":["{layer}"]}}"#),
                WASM_LAYER,
            ),
        };
        let config_digest = self.push_blob(repo, config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{config_type}","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{layer_type}","digest":"{layer}","size":{}}}]}}"#,
            config.len(),
            wasm.len()
        );
        self.put_manifest(repo, tag, OCI_MANIFEST, manifest.as_bytes())
    }

    /// Pushes an image index as `repo:tag` with one entry per `(manifest, os, architecture)`.
    pub fn push_index(&self, repo: &str, tag: &str, entries: &[(&Pushed, &str, &str)]) -> Pushed {
        let manifests: Vec<String> = entries
            .iter()
            .map(|(m, os, arch)| {
                format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"os":"{os}","architecture":"{arch}"}}}}"#,
                    m.digest, m.size
                )
            })
            .collect();
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            manifests.join(",")
        );
        self.put_manifest(repo, tag, OCI_INDEX, index.as_bytes())
    }

    /// Where the registry keeps a blob's bytes (its filesystem driver's layout),
    /// for tests that damage them.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host(),
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok(Response { status, headers })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Response {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// `sha256:<hex>` through coreutils, so this file needs no hashing crate.
pub fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("feed sha256sum");
    let output = child.wait_with_output().expect("sha256sum output");
    let text = String::from_utf8(output.stdout).expect("sha256sum prints hex");
    format!(
        "sha256:{}",
        text.split_whitespace().next().expect("a digest")
    )
}
