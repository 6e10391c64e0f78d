//! `skiff control`: one member of a replicated control plane. Each member runs a store
//! member (Raft over the TCP peer transport) and the Kubernetes API on its own address;
//! the scheduler and the controllers run only on the member that leads the Raft group.
//!
//! Membership is managed through `/skiff/v1/members` on any member's API address
//! (see `docs/store.md`): `--join API_URL` posts there, and operators list, remove and
//! transfer leadership there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use skiff_store::{Member, Store, StoreConfig, StoreError, TcpTransport};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::up;

#[derive(clap::Args)]
pub struct ControlArgs {
    /// This member's name, unique in the group.
    #[arg(long)]
    pub name: String,
    /// Where this member keeps its state (store, kubeconfig, member id).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The Kubernetes API's listen address.
    #[arg(long)]
    pub api_addr: SocketAddr,
    /// The address other members reach this one's peer transport at (also where it
    /// listens).
    #[arg(long)]
    pub peer_addr: String,
    /// Every member of a new group as NAME=HOST:PORT (peer addresses), comma separated;
    /// all members get the same list. Member ids follow its order (1, 2, ...).
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "join",
        required_unless_present = "join"
    )]
    pub initial_cluster: Vec<String>,
    /// Join the running group that serves the Kubernetes API at this URL.
    #[arg(long)]
    pub join: Option<String>,
}

/// How often the leadership supervisor looks at who leads.
const LEADERSHIP_POLL: Duration = Duration::from_millis(250);
/// The file in the data directory that fixes this member's id across restarts.
const MEMBER_FILE: &str = "member.json";

/// This member's identity, written once and read on every restart.
#[derive(Serialize, Deserialize)]
struct Identity {
    id: u64,
    name: String,
}

/// Body of `POST /skiff/v1/members`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinRequest {
    name: String,
    peer_addr: String,
}

/// Answer of the membership endpoint.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberList {
    /// The member added (for a join) or asked (for a listing).
    id: u64,
    /// The leader as the answering member knows it (0: none).
    leader: u64,
    members: Vec<MemberEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberEntry {
    id: u64,
    name: String,
    peer_addr: String,
}

impl From<&Member> for MemberEntry {
    fn from(m: &Member) -> Self {
        MemberEntry {
            id: m.id,
            name: m.name.clone(),
            peer_addr: m.peer_addr.clone(),
        }
    }
}

impl From<MemberEntry> for Member {
    fn from(m: MemberEntry) -> Self {
        Member {
            id: m.id,
            name: m.name,
            peer_addr: m.peer_addr,
        }
    }
}

pub async fn run(args: ControlArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let peer_listener = tokio::net::TcpListener::bind(&args.peer_addr)
        .await
        .with_context(|| format!("listening for peers on {}", args.peer_addr))?;

    let (identity, config_members, member_info, known) = identify(&args, &data_dir).await?;
    let transport = TcpTransport::new(identity.id);
    transport.set_members(&known);
    let config = StoreConfig {
        id: identity.id,
        members: config_members,
        member_info,
        ..StoreConfig::new(data_dir.join("store"))
    };
    let store = Store::open_member(config, transport.clone())
        .await
        .context("opening the store")?;
    // Only now: a crash before the store holds the group must not leave an id that
    // a restart would take for an existing member (a join is asked again instead).
    let identity_file = data_dir.join(MEMBER_FILE);
    if !identity_file.exists() {
        std::fs::write(&identity_file, serde_json::to_vec(&identity)?)
            .with_context(|| format!("writing {}", identity_file.display()))?;
    }

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(skiff_store::serve_peers(
        peer_listener,
        store.clone(),
        cancel.child_token(),
    ));
    let removed = CancellationToken::new();
    tasks.spawn(follow_members(
        store.clone(),
        transport,
        cancel.child_token(),
        removed.clone(),
    ));

    let api = skiff_apiserver::ApiServer::new(store.clone(), cancel.child_token());
    let (server_url, kubeconfig) = up::serve_api(
        api,
        args.api_addr,
        &data_dir,
        membership_routes(store.clone()),
        &tasks,
    )
    .await?;
    tasks.spawn(bootstrap(
        skiff_apiserver::ApiServer::new(store.clone(), cancel.child_token()),
        cancel.child_token(),
    ));
    tasks.spawn(lead_control_loops(
        store.clone(),
        server_url.clone(),
        cancel.child_token(),
    ));
    tasks.close();

    println!(
        "Skiff control member {} (id {}) is up: the Kubernetes API is at {server_url}",
        identity.name, identity.id
    );
    println!("export KUBECONFIG={}", kubeconfig.display());

    tokio::select! {
        _ = up::shutdown_signal() => tracing::info!("shutting down"),
        _ = removed.cancelled() => {
            tracing::warn!("this member was removed from the group; stopping");
        }
    }
    cancel.cancel();
    if tokio::time::timeout(up::SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            still_running = tasks.len(),
            "parts did not stop within {:?}; closing the store anyway",
            up::SHUTDOWN_GRACE
        );
    }
    store.close().await;
    Ok(())
}

/// Who this member is: from `DATA_DIR/member.json` on a restart, else from
/// `--initial-cluster` or by joining through `--join`. Returns the identity, the voter
/// ids and member records for a new group (empty when joining or restarting), and the
/// members known so far (for the transport until the store's own list is loaded).
async fn identify(
    args: &ControlArgs,
    data_dir: &Path,
) -> Result<(Identity, Vec<u64>, Vec<Member>, Vec<Member>)> {
    let path = data_dir.join(MEMBER_FILE);
    if path.exists() {
        let identity: Identity = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{} is corrupt", path.display()))?;
        if identity.name != args.name {
            bail!(
                "{} belongs to member {:?}, not {:?}",
                data_dir.display(),
                identity.name,
                args.name
            );
        }
        return Ok((identity, Vec::new(), Vec::new(), Vec::new()));
    }
    let (identity, ids, info, known) = match &args.join {
        Some(url) => {
            let list = join(url, &args.name, &args.peer_addr).await?;
            let known: Vec<Member> = list.members.into_iter().map(Member::from).collect();
            let identity = Identity {
                id: list.id,
                name: args.name.clone(),
            };
            (identity, Vec::new(), Vec::new(), known)
        }
        None => {
            let members = parse_initial_cluster(&args.initial_cluster)?;
            let Some(me) = members.iter().find(|m| m.name == args.name) else {
                bail!(
                    "--initial-cluster does not name this member ({}): {}",
                    args.name,
                    args.initial_cluster.join(",")
                );
            };
            if me.peer_addr != args.peer_addr {
                bail!(
                    "--initial-cluster gives {} the peer address {}, but --peer-addr is {}",
                    me.name,
                    me.peer_addr,
                    args.peer_addr
                );
            }
            let identity = Identity {
                id: me.id,
                name: me.name.clone(),
            };
            let ids = members.iter().map(|m| m.id).collect();
            (identity, ids, members.clone(), members)
        }
    };
    Ok((identity, ids, info, known))
}

/// `n1=HOST:PORT,n2=...` into members with ids 1, 2, ... in the order given.
fn parse_initial_cluster(entries: &[String]) -> Result<Vec<Member>> {
    let mut members: Vec<Member> = Vec::new();
    for (at, entry) in entries.iter().enumerate() {
        let Some((name, addr)) = entry.split_once('=') else {
            bail!("--initial-cluster entry {entry:?} is not NAME=HOST:PORT");
        };
        if name.is_empty() || addr.is_empty() {
            bail!("--initial-cluster entry {entry:?} is not NAME=HOST:PORT");
        }
        if members.iter().any(|m| m.name == name) {
            bail!("--initial-cluster names {name} twice");
        }
        members.push(Member {
            id: at as u64 + 1,
            name: name.to_owned(),
            peer_addr: addr.to_owned(),
        });
    }
    if members.is_empty() {
        bail!("--initial-cluster is empty");
    }
    Ok(members)
}

/// Asks the group at `url` to add this member; retried while the group has no leader.
async fn join(url: &str, name: &str, peer_addr: &str) -> Result<MemberList> {
    let client = reqwest::Client::new();
    let endpoint = format!("{}/skiff/v1/members", url.trim_end_matches('/'));
    let body = serde_json::to_vec(&JoinRequest {
        name: name.to_owned(),
        peer_addr: peer_addr.to_owned(),
    })?;
    let mut last_error = String::new();
    for _ in 0..20 {
        let response = client
            .post(&endpoint)
            .header("content-type", "application/json")
            .body(body.clone())
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => {
                let bytes = response.bytes().await?;
                return serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading the answer of {endpoint}"));
            }
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                bail!("{endpoint} refused to add {name}: {status} {text}");
            }
            Ok(response) => {
                let status = response.status();
                last_error = format!("{status} {}", response.text().await.unwrap_or_default());
            }
            Err(error) => last_error = error.to_string(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("joining through {endpoint} failed: {last_error}")
}

/// Keeps the transport pointed at the group's members, and fires `removed` once this
/// member has been removed from the group.
async fn follow_members(
    store: Store,
    transport: Arc<TcpTransport>,
    cancel: CancellationToken,
    removed: CancellationToken,
) {
    let mut changes = store.watch_members();
    let mut was_member = false;
    loop {
        let members = changes.borrow_and_update().clone();
        // A joining member knows no members until the leader's snapshot arrives; until
        // then it keeps the list the join answered.
        if !members.is_empty() {
            transport.set_members(&members);
        }
        let is_member = members.iter().any(|m| m.id == store.id());
        if was_member && !is_member {
            removed.cancel();
            return;
        }
        was_member |= is_member;
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// Creates the system namespaces once a leader can take the writes.
async fn bootstrap(api: skiff_apiserver::ApiServer, cancel: CancellationToken) {
    loop {
        match api.bootstrap().await {
            Ok(()) => return,
            Err(err) => tracing::info!(%err, "creating the system namespaces; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Runs the scheduler and the controllers while this member leads the Raft group and
/// stops them when it no longer does, so they run on one member at a time (save for
/// the moment a deposed leader takes to notice; their writes are compare-and-swap).
async fn lead_control_loops(store: Store, server_url: String, cancel: CancellationToken) {
    let mut running: Option<(CancellationToken, TaskTracker)> = None;
    loop {
        let leading = store.leader() == Some(store.id());
        match (leading, running.is_some()) {
            (true, false) => {
                tracing::info!("leading the group: starting the scheduler and controllers");
                let loops_cancel = cancel.child_token();
                let loops = TaskTracker::new();
                if let Err(err) = up::spawn_control_loops(&server_url, &loops_cancel, &loops) {
                    tracing::error!(%err, "starting the scheduler and controllers");
                }
                loops.close();
                running = Some((loops_cancel, loops));
            }
            (false, true) => {
                tracing::info!("no longer leading: stopping the scheduler and controllers");
                if let Some((loops_cancel, loops)) = running.take() {
                    loops_cancel.cancel();
                    loops.wait().await;
                }
            }
            _ => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(LEADERSHIP_POLL) => {}
        }
    }
    if let Some((loops_cancel, loops)) = running {
        loops_cancel.cancel();
        loops.wait().await;
    }
}

/// `/skiff/v1/members`: `GET` lists, `POST {name, peerAddr}` adds (answering the new
/// id and the members), `DELETE /{id}` removes (handing leadership away first if `id`
/// leads), `POST /{id}/leader` transfers leadership to `id`.
fn membership_routes(store: Store) -> axum::Router {
    axum::Router::new()
        .route("/skiff/v1/members", get(list_members).post(add_member))
        .route(
            "/skiff/v1/members/{id}",
            axum::routing::delete(remove_member),
        )
        .route("/skiff/v1/members/{id}/leader", post(transfer_leader))
        .with_state(store)
}

fn member_list(store: &Store, id: u64, members: &[Member]) -> MemberList {
    MemberList {
        id,
        leader: store.leader().unwrap_or(0),
        members: members.iter().map(MemberEntry::from).collect(),
    }
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({"message": message.into()}))).into_response()
}

fn store_failure(error: StoreError) -> Response {
    let status = match error {
        StoreError::Membership(_) => StatusCode::CONFLICT,
        StoreError::Timeout { .. } | StoreError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refuse(status, error.to_string())
}

async fn list_members(State(store): State<Store>) -> Response {
    Json(member_list(&store, store.id(), &store.members())).into_response()
}

async fn add_member(State(store): State<Store>, body: axum::body::Bytes) -> Response {
    let request: JoinRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("body must be {{\"name\", \"peerAddr\"}}: {error}"),
            );
        }
    };
    if request.name.is_empty() || request.peer_addr.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "name and peerAddr must not be empty",
        );
    }
    let members = store.members();
    if let Some(existing) = members.iter().find(|m| m.name == request.name) {
        // A member that crashed after being added asks again: same answer.
        if existing.peer_addr == request.peer_addr {
            return Json(member_list(&store, existing.id, &members)).into_response();
        }
        return refuse(
            StatusCode::CONFLICT,
            format!(
                "a member named {} already exists (id {}, peer address {})",
                existing.name, existing.id, existing.peer_addr
            ),
        );
    }
    // Joins are expected one at a time; two racing ones may pick the same id and the
    // second is refused.
    // Never the id of a removed member: the group tells a member with that id it was
    // removed.
    let removed = match store.removed_members() {
        Ok(removed) => removed,
        Err(error) => return store_failure(error),
    };
    let id = members
        .iter()
        .map(|m| m.id)
        .chain(removed)
        .max()
        .unwrap_or(0)
        + 1;
    let member = Member {
        id,
        name: request.name,
        peer_addr: request.peer_addr,
    };
    match store.add_member(member).await {
        Ok(members) => {
            (StatusCode::CREATED, Json(member_list(&store, id, &members))).into_response()
        }
        Err(error) => store_failure(error),
    }
}

async fn remove_member(State(store): State<Store>, UrlPath(id): UrlPath<u64>) -> Response {
    let members = store.members();
    if !members.iter().any(|m| m.id == id) {
        return refuse(StatusCode::NOT_FOUND, format!("no member with id {id}"));
    }
    if store.leader() == Some(id) {
        let Some(next) = members.iter().find(|m| m.id != id) else {
            return refuse(StatusCode::CONFLICT, "cannot remove the only member");
        };
        if let Err(error) = hand_over(&store, id, next.id).await {
            return error;
        }
    }
    match store.remove_member(id).await {
        Ok(members) => Json(member_list(&store, id, &members)).into_response(),
        Err(error) => store_failure(error),
    }
}

async fn transfer_leader(State(store): State<Store>, UrlPath(id): UrlPath<u64>) -> Response {
    if !store.members().iter().any(|m| m.id == id) {
        return refuse(StatusCode::NOT_FOUND, format!("no member with id {id}"));
    }
    let from = store.leader().unwrap_or(0);
    match hand_over(&store, from, id).await {
        Ok(()) => Json(member_list(&store, id, &store.members())).into_response(),
        Err(response) => response,
    }
}

/// Asks for leadership to move to `to` and waits (up to 10 s) until this member sees
/// a leader other than `from`.
async fn hand_over(store: &Store, from: u64, to: u64) -> Result<(), Response> {
    if store.leader() == Some(to) {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if let Err(error) = store.transfer_leader(to).await {
            return Err(store_failure(error));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(leader) = store.leader()
            && leader != from
        {
            return Ok(());
        }
    }
    Err(refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("leadership did not move from {from} to {to} within 10s"),
    ))
}
