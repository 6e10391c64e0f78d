//! Three real `skiff control` processes on loopback form one group: objects written
//! through one member are read through another, the group keeps taking writes when
//! its leader's process is killed, the restarted member catches up, and a fourth
//! member joins with `--join` and serves reads.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A free loopback port (bound and released; the member binds it again).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Member {
    name: String,
    data_dir: PathBuf,
    api_addr: String,
    peer_addr: String,
    /// `--initial-cluster` or `--join` and its value.
    group_args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    kube_cache: PathBuf,
}

impl Member {
    fn new(root: &Path, name: &str, group_args: Vec<String>) -> Result<Member> {
        Ok(Member {
            name: name.to_owned(),
            data_dir: root.join(name),
            api_addr: format!("127.0.0.1:{}", free_port()?),
            peer_addr: format!("127.0.0.1:{}", free_port()?),
            group_args,
            log: root.join(format!("{name}.log")),
            child: None,
            kube_cache: root.join(format!("{name}-kube-cache")),
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Starts the process and waits until it has written its kubeconfig.
    fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["control", "--name", &self.name, "--data-dir"])
            .arg(&self.data_dir)
            .args(["--api-addr", &self.api_addr, "--peer-addr", &self.peer_addr])
            .args(&self.group_args)
            .env("RUST_LOG", "info,raft=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting skiff control")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut ready = false;
        for line in lines.by_ref() {
            if line?.starts_with("export KUBECONFIG=") {
                ready = true;
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
        if !ready {
            bail!(
                "{} exited before serving; see {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }

    /// SIGKILL: a crash, nothing flushed on the way out.
    fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    fn kubectl(&self, args: &[&str]) -> Result<Output> {
        Command::new("kubectl")
            .args(args)
            .arg("--request-timeout=20s")
            .env("KUBECONFIG", self.data_dir.join("kubeconfig"))
            .env("KUBECACHEDIR", &self.kube_cache)
            .stdin(Stdio::null())
            .output()
            .context("running kubectl")
    }

    /// stdout of a kubectl command that succeeded, else `None`.
    fn kubectl_out(&self, args: &[&str]) -> Result<Option<String>> {
        let out = self.kubectl(args)?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    fn members(&self) -> Result<Option<serde_json::Value>> {
        match self.kubectl_out(&["get", "--raw", "/skiff/v1/members"])? {
            Some(text) => Ok(Some(serde_json::from_str(&text)?)),
            None => Ok(None),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Polls `check` until it holds; the timeout is only a safety net.
fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    loop {
        if check()? {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const WAIT: Duration = Duration::from_secs(60);

/// Creates ConfigMap `name` (data `owner: name`) through `member`; true if acknowledged.
/// `kubectl create configmap` would send protobuf, so it goes as a JSON manifest.
fn create_configmap(member: &Member, name: &str) -> Result<bool> {
    let manifest = member.data_dir.with_file_name(format!("{name}.json"));
    let object = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"owner": name},
    });
    std::fs::write(&manifest, object.to_string())?;
    let file = manifest.to_string_lossy();
    let out = member.kubectl(&["create", "-f", &file])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A retry of a create whose first answer was lost finds the object already there.
    Ok(out.status.success()
        || stderr.contains("AlreadyExists")
        || stderr.contains("already exists"))
}

fn configmap_value(member: &Member, name: &str) -> Result<Option<String>> {
    member.kubectl_out(&["get", "configmap", name, "-o", "jsonpath={.data.owner}"])
}

/// Every object in `names` reads back through `member` with its own value.
fn holds_all(member: &Member, names: &[String]) -> Result<bool> {
    for name in names {
        if configmap_value(member, name)?.as_deref() != Some(name.as_str()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Three members on loopback, not started yet.
fn new_group(root: &Path) -> Result<Vec<Member>> {
    let mut members = Vec::new();
    let names = ["n1", "n2", "n3"];
    let peers: Vec<(String, u16)> = names
        .iter()
        .map(|n| Ok((n.to_string(), free_port()?)))
        .collect::<Result<_>>()?;
    let initial = peers
        .iter()
        .map(|(n, p)| format!("{n}=127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    for (name, port) in &peers {
        let mut member = Member::new(
            root,
            name,
            vec!["--initial-cluster".into(), initial.clone()],
        )?;
        member.peer_addr = format!("127.0.0.1:{port}");
        members.push(member);
    }
    Ok(members)
}

fn print_logs(members: &[Member]) {
    for member in members {
        eprintln!(
            "--- {} ({}):\n{}",
            member.name,
            member.log.display(),
            member.log_tail()
        );
    }
}

#[test]
fn three_members_survive_a_leader_crash_and_a_fourth_joins() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut members = new_group(root.path())?;
    let result = scenario(root.path(), &mut members);
    if result.is_err() {
        print_logs(&members);
    }
    result
}

/// An object above the store's value limit is refused with 413 and not stored; with
/// two of three members killed, a write through the survivor is answered by the
/// server with 504 Timeout (the store's request timeout), never left hanging.
#[test]
fn oversized_writes_get_413_and_writes_without_quorum_get_504() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut members = new_group(root.path())?;
    let result = no_quorum_scenario(&mut members);
    if result.is_err() {
        print_logs(&members);
    }
    result
}

fn no_quorum_scenario(members: &mut [Member]) -> Result<()> {
    for member in members.iter_mut() {
        member.start()?;
    }
    wait_for("a write through n1", WAIT, || {
        create_configmap(&members[0], "first")
    })?;

    // A pod with a 1.6 MiB argument: above the store's 1.5 MiB value limit, below the
    // API's body limit (a ConfigMap's data stops at 1 MiB in validation already).
    let manifest = members[0].data_dir.with_file_name("big.json");
    let object = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "big"},
        "spec": {"containers": [{
            "name": "c",
            "image": "file:///x.wasm",
            "args": ["x".repeat(1600 * 1024)],
        }]},
    });
    std::fs::write(&manifest, object.to_string())?;
    let out = members[0].kubectl(&["create", "-f", &manifest.to_string_lossy()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an oversized object was stored");
    assert!(
        stderr.contains("Request entity too large") && stderr.contains("above the limit"),
        "{stderr}"
    );
    let out = members[1].kubectl(&["get", "pod", "big"])?;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound"),
        "the refused object is readable: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    members[1].kill()?;
    members[2].kill()?;
    // kubectl's own timeout (20 s) would say "context deadline exceeded" or similar;
    // the server must answer first, with the store's timeout as a 504.
    let manifest = members[0].data_dir.with_file_name("lonely.json");
    let object = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "lonely"},
        "data": {"owner": "lonely"},
    });
    std::fs::write(&manifest, object.to_string())?;
    let out = members[0].kubectl(&["create", "-f", &manifest.to_string_lossy()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a write without quorum succeeded");
    assert!(
        stderr.contains("Error from server (Timeout)") && stderr.contains("timed out"),
        "{stderr}"
    );
    Ok(())
}

fn scenario(root: &Path, members: &mut [Member]) -> Result<()> {
    for member in members.iter_mut() {
        member.start()?;
    }
    wait_for("the default namespace", WAIT, || {
        Ok(members[0]
            .kubectl_out(&["get", "namespace", "default"])?
            .is_some())
    })?;

    // Written through member 1, read through member 3.
    let mut acked: Vec<String> = Vec::new();
    for i in 0..3 {
        let name = format!("before-{i}");
        wait_for("a write through n1", WAIT, || {
            create_configmap(&members[0], &name)
        })?;
        acked.push(name);
    }
    assert!(
        holds_all(&members[2], &acked)?,
        "n3 does not read what n1 wrote"
    );

    // Crash the leader's process; writes go on through the others.
    let leader = members[0].members()?.context("listing members")?["leader"]
        .as_u64()
        .context("no leader reported")?;
    let leader_at = members
        .iter()
        .position(|m| m.name == format!("n{leader}"))
        .context("leader id names no member")?;
    members[leader_at].kill()?;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader_at).collect();
    for (round, at) in survivors.iter().cycle().take(4).enumerate() {
        let name = format!("after-{round}");
        wait_for("a write after the crash", WAIT, || {
            create_configmap(&members[*at], &name)
        })?;
        acked.push(name);
    }
    for at in &survivors {
        assert!(
            holds_all(&members[*at], &acked)?,
            "{} lost an acknowledged object",
            members[*at].name
        );
    }

    // The crashed member comes back from its data directory and catches up.
    members[leader_at].start()?;
    wait_for("the restarted member to catch up", WAIT, || {
        holds_all(&members[leader_at], &acked)
    })?;

    // A fourth member joins through member 1's API and serves reads.
    let mut fourth = Member::new(root, "n4", vec!["--join".into(), members[0].url()])?;
    fourth.start()?;
    wait_for("the joined member to catch up", WAIT, || {
        holds_all(&fourth, &acked)
    })?;
    let listed = fourth.members()?.context("listing members through n4")?;
    let listed = listed["members"].as_array().context("members list")?;
    assert_eq!(listed.len(), 4, "{listed:?}");
    wait_for("a write through the joined member", WAIT, || {
        create_configmap(&fourth, "joined")
    })?;
    acked.push("joined".into());
    assert!(holds_all(&members[1], &acked)?);

    // Removing it through another member shrinks the group and stops its process.
    let id = listed
        .iter()
        .find(|m| m["name"] == "n4")
        .and_then(|m| m["id"].as_u64())
        .context("n4 not listed")?;
    let path = format!("/skiff/v1/members/{id}");
    let out = members[1].kubectl(&["delete", "--raw", &path])?;
    assert!(
        out.status.success(),
        "removing n4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let child = fourth.child.as_mut().context("n4 running")?;
    wait_for("the removed member to stop", WAIT, || {
        Ok(child.try_wait()?.is_some())
    })?;
    let after = members[2].members()?.context("listing members")?;
    assert_eq!(
        after["members"].as_array().map(Vec::len),
        Some(3),
        "{after}"
    );
    Ok(())
}
