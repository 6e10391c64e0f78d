//! `skiff up`: store, API server, scheduler, controllers, one node and its
//! gateway in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where the cluster keeps its state; reusing it brings every object back.
    #[arg(long, env = "SKIFF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The Kubernetes API's listen address.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub api_addr: SocketAddr,
    /// The node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node agent's HTTP address (logs); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub node_addr: SocketAddr,
    /// The node gateway's listen address (Services and Ingress over HTTP).
    /// Default 127.0.0.1:8080, or a free port when that one is taken.
    #[arg(long)]
    pub gateway_addr: Option<SocketAddr>,
    /// Do not run ordinary container images. Without this flag the node runs
    /// them through the Docker engine whenever its socket (DOCKER_HOST, else
    /// /var/run/docker.sock) exists.
    #[arg(long)]
    pub no_oci: bool,
    /// The image of each OCI pod's sandbox (pause) container. The default,
    /// skiff/pause:busybox, is built from /bin/busybox (Debian's busybox-static)
    /// when the engine lacks it; any other image is pulled.
    #[arg(long, default_value = skiff_oci::pause::DEFAULT_PAUSE_IMAGE)]
    pub oci_pause_image: String,
}

/// Where the gateway listens unless told otherwise.
const DEFAULT_GATEWAY_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);

/// How long shutdown waits for the API server, scheduler and node to stop.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// `$XDG_DATA_HOME/skiff`, else `~/.local/share/skiff`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("skiff");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/skiff")
}

pub async fn run(args: UpArgs) -> Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();

    let store = skiff_store::Store::open(skiff_store::StoreConfig::new(data_dir.join("store")))
        .await
        .context("opening the store")?;
    let api = skiff_apiserver::ApiServer::new(store.clone(), cancel.child_token());
    api.bootstrap()
        .await
        .context("creating the system namespaces")?;
    let (server_url, kubeconfig) =
        serve_api(api, args.api_addr, &data_dir, axum::Router::new(), &tasks).await?;
    spawn_control_loops(&server_url, &cancel, &tasks)?;
    let client = api_client(&server_url, "kubelet")?;

    let wasm = crate::node::wasm_runtime(&data_dir)?;
    let agent_config = crate::node::agent_config(&data_dir, args.node_name, args.node_addr)?;
    let agent_cancel = cancel.child_token();
    let oci = if args.no_oci {
        None
    } else {
        let node_id = format!("{}@{}", agent_config.node_name, data_dir.display());
        oci_driver(node_id, args.oci_pause_image, agent_cancel.clone()).await
    };
    create_runtime_classes(&client).await;
    create_storage_class(&client).await;
    let drivers = skiff_agent::Drivers::new(
        Arc::new(wasm.clone()),
        oci.clone()
            .map(|driver| Arc::new(driver) as Arc<dyn skiff_agent::ContainerDriver>),
    );
    let gateway_listener = bind_gateway(args.gateway_addr).await?;
    let gateway_addr = gateway_listener.local_addr()?;
    let gateway_config = skiff_proxy::GatewayConfig {
        node_name: agent_config.node_name.clone(),
        ..skiff_proxy::GatewayConfig::default()
    };
    let agent = skiff_agent::NodeAgent::new(agent_config, client.clone(), drivers);
    let local_ports = Arc::new(AgentPorts(agent.ports()));
    let gateway = skiff_proxy::start(
        gateway_config,
        client,
        local_ports,
        gateway_listener,
        cancel.child_token(),
    )
    .context("starting the gateway")?;
    // Guests reach Services by name through this node's gateway.
    wasm.set_services(Arc::new(GatewayServices(gateway.services())));
    // OCI pods resolve Service names and reach cluster IPs inside their own
    // network namespaces, served by the gateway.
    if let Some(oci) = &oci {
        oci.observe_sandboxes(Arc::new(PodNetworks(gateway.pod_networks())));
    }
    tasks.spawn(gateway.wait());
    tasks.spawn(async move {
        if let Err(err) = agent.run(agent_cancel).await {
            tracing::error!(%err, "node agent stopped");
        }
    });
    tasks.close();

    println!("Skiff is up: the Kubernetes API is at {server_url}");
    println!("Gateway at http://{gateway_addr}");
    println!("export KUBECONFIG={}", kubeconfig.display());

    shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            still_running = tasks.len(),
            "parts did not stop within {SHUTDOWN_GRACE:?}; closing the store anyway"
        );
    }
    store.close().await;
    Ok(())
}

/// The node agent's port table, as the gateway asks it where a local pod serves.
struct AgentPorts(Arc<skiff_agent::ports::PortTable>);

impl skiff_proxy::LocalPorts for AgentPorts {
    fn served(&self, namespace: &str, pod: &str, container_port: u16) -> Option<SocketAddr> {
        let entries = self.0.of_pod(namespace, pod)?;
        let entry = entries
            .iter()
            .find(|e| e.container_port == container_port)?;
        Some(SocketAddr::new(
            entry.host_ip.parse().ok()?,
            entry.host_port,
        ))
    }
}

/// Where the OCI driver reports pods' network namespaces.
struct PodNetworks(Arc<skiff_proxy::podnet::PodNetworks>);

impl skiff_oci::SandboxObserver for PodNetworks {
    fn started(
        &self,
        pod: &skiff_agent::driver::PodSandbox,
        ip: Option<std::net::IpAddr>,
        netns: &Path,
    ) {
        self.0.attach(
            skiff_proxy::podnet::PodRef {
                uid: pod.uid.clone(),
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                ip,
            },
            netns.to_path_buf(),
        );
    }

    fn removed(&self, pod_uid: &str) {
        self.0.detach(pod_uid);
    }
}

/// The gateway's view of the Services, as the Wasm runtime asks it.
struct GatewayServices(skiff_proxy::Services);

impl skiff_wasm::ServiceNames for GatewayServices {
    fn exists(&self, namespace: &str, name: &str) -> bool {
        self.0.exists(namespace, name)
    }

    fn gateway(&self) -> SocketAddr {
        self.0.address()
    }

    fn caller_header(&self) -> Option<(http::HeaderName, String)> {
        Some((
            http::HeaderName::from_static(skiff_proxy::gateway::CALLER_HEADER),
            self.0.caller_prefix(),
        ))
    }
}

/// Bind the gateway: an address given on the command line must be free; the
/// default falls back to a free port when another program holds it.
async fn bind_gateway(requested: Option<SocketAddr>) -> Result<tokio::net::TcpListener> {
    if let Some(addr) = requested {
        return tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for the gateway on {addr}"));
    }
    let default = SocketAddr::from(DEFAULT_GATEWAY_ADDR);
    match tokio::net::TcpListener::bind(default).await {
        Ok(listener) => Ok(listener),
        Err(err) => {
            tracing::warn!(%default, %err, "the default gateway address is taken; using a free port");
            let any = SocketAddr::new(default.ip(), 0);
            tokio::net::TcpListener::bind(any)
                .await
                .with_context(|| format!("listening for the gateway on {any}"))
        }
    }
}

/// The OCI driver when the Docker socket exists (the engine may still be down:
/// then the node reports `OCIRuntimeReady=False` and keeps running Wasm pods).
async fn oci_driver(
    node_id: String,
    pause_image: String,
    detach: CancellationToken,
) -> Option<skiff_oci::OciDriver> {
    let socket = match std::env::var("DOCKER_HOST") {
        Ok(host) => host.strip_prefix("unix://").map(str::to_string),
        Err(_) => Some("/var/run/docker.sock".to_string()),
    };
    if let Some(path) = &socket
        && !Path::new(path).exists()
    {
        tracing::info!(socket = %path, "no Docker socket: this node runs Wasm pods only");
        return None;
    }
    let config = skiff_oci::OciConfig {
        socket,
        pause_image,
        // The gateway answers DNS inside each pod (skiff_proxy::podnet).
        cluster_dns: Some(skiff_oci::ClusterDns {
            nameserver: skiff_proxy::podnet::DNS_ADDRESS.ip(),
            domain: skiff_proxy::podnet::CLUSTER_DOMAIN.to_string(),
        }),
        ..skiff_oci::OciConfig::new(node_id)
    };
    match skiff_oci::OciDriver::connect(config, detach) {
        Ok(driver) => {
            if !driver.start_health_checks().await {
                tracing::warn!(
                    "the Docker engine does not answer yet; OCI pods wait until it does"
                );
            }
            Some(driver)
        }
        Err(err) => {
            tracing::warn!(error = %err, "the OCI runtime is unavailable; this node runs Wasm pods only");
            None
        }
    }
}

/// The RuntimeClasses pods name to pick a driver (`runtimeClassName: wasm|oci`).
async fn create_runtime_classes(client: &kube::Client) {
    use k8s_openapi::api::node::v1::RuntimeClass;
    let api: kube::Api<RuntimeClass> = kube::Api::all(client.clone());
    for name in [
        skiff_agent::drivers::WASM_CLASS,
        skiff_agent::drivers::OCI_CLASS,
    ] {
        let class = RuntimeClass {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            handler: name.to_string(),
            ..Default::default()
        };
        match api.create(&kube::api::PostParams::default(), &class).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => tracing::warn!(%err, name, "creating the RuntimeClass failed"),
        }
    }
}

/// The default StorageClass `local-path`, whose claims the node a pod lands on
/// provisions under its data directory (`skiff_agent::claims`).
async fn create_storage_class(client: &kube::Client) {
    use k8s_openapi::api::storage::v1::StorageClass;
    let api: kube::Api<StorageClass> = kube::Api::all(client.clone());
    let class = StorageClass {
        metadata: kube::api::ObjectMeta {
            name: Some(skiff_agent::claims::STORAGE_CLASS.to_string()),
            annotations: Some(
                [(
                    "storageclass.kubernetes.io/is-default-class".to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        provisioner: skiff_agent::claims::PROVISIONER.to_string(),
        reclaim_policy: Some("Delete".to_string()),
        volume_binding_mode: Some("WaitForFirstConsumer".to_string()),
        ..Default::default()
    };
    match api.create(&kube::api::PostParams::default(), &class).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => tracing::warn!(%err, "creating the StorageClass local-path failed"),
    }
}

/// Starts `api` on `addr` with `extra` routes merged in (it stops with the token it was
/// created with) and writes `DATA_DIR/kubeconfig` for it. Returns its URL and the
/// kubeconfig's path.
pub async fn serve_api(
    api: skiff_apiserver::ApiServer,
    addr: SocketAddr,
    data_dir: &Path,
    extra: axum::Router,
    tasks: &TaskTracker,
) -> Result<(String, PathBuf)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let server_url = format!("http://{}", listener.local_addr()?);
    let kubeconfig = write_kubeconfig(data_dir, &server_url)?;
    tasks.spawn(async move {
        if let Err(err) = api.serve_with(listener, extra).await {
            tracing::error!(%err, "API server stopped");
        }
    });
    Ok((server_url, kubeconfig))
}

/// A Kubernetes client for the API server at `server_url`. Its User-Agent
/// starts with `component`, which the API server records as the field
/// manager of the client's writes (`kube-scheduler`, `kubelet`, …), as
/// Kubernetes' own components are recorded.
pub fn api_client(server_url: &str, component: &str) -> Result<kube::Client> {
    let mut config = kube::Config::new(server_url.parse()?);
    config.headers.push(user_agent(component)?);
    kube::Client::try_from(config).context("building the API client")
}

/// The User-Agent header of a Skiff component's API client.
pub fn user_agent(component: &str) -> Result<(http::HeaderName, http::HeaderValue)> {
    let agent = format!(
        "{component}/v1.32.0 ({}/{}) skiff/{}",
        std::env::consts::OS,
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION")
    );
    Ok((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&agent).context("the User-Agent header")?,
    ))
}

/// Runs the scheduler and the controllers against the API server at
/// `server_url` until `cancel` fires.
pub fn spawn_control_loops(
    server_url: &str,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<()> {
    let scheduler = skiff_scheduler::Scheduler::new(api_client(server_url, "kube-scheduler")?);
    let client = api_client(server_url, "kube-controller-manager")?;
    let scheduler_cancel = cancel.child_token();
    tasks.spawn(async move {
        if let Err(err) = scheduler.run(scheduler_cancel).await {
            tracing::error!(%err, "scheduler stopped");
        }
    });
    let controllers = skiff_controllers::Controllers::new(client);
    tasks.spawn(controllers.run(cancel.child_token()));
    Ok(())
}

pub fn write_kubeconfig(data_dir: &Path, server_url: &str) -> Result<PathBuf> {
    let path = data_dir.join("kubeconfig");
    std::fs::write(&path, skiff_apiserver::kubeconfig(server_url, "skiff"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
