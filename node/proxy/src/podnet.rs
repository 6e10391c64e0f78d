//! Service names and addresses inside OCI pods.
//!
//! Each OCI pod has a network namespace of its own (its pause container's).
//! When the OCI driver reports one ([`PodNetworks::attach`]), the node puts
//! three things into it, all served by this process:
//!
//! - a route making the Service range local (`ip route replace local
//!   10.96.0.0/12 dev lo`, run through `nsenter`), so the pod's connections to
//!   a cluster IP stay inside the pod, where
//! - a listener on every Service's `clusterIP:port` relays each connection to
//!   a ready endpoint, as the NodePort listeners do (any protocol over TCP;
//!   NetworkPolicy judged with the pod as the caller; a Deployment scaled to
//!   zero is woken and the connection held);
//! - a DNS responder on [`DNS_ADDRESS`] answers the cluster's names
//!   ([`crate::dns`]) and relays other questions to the node's own resolver.
//!   The OCI driver names it as the pod's nameserver, with the Kubernetes
//!   search path.
//!
//! The sockets are created inside the pod's namespace by a short-lived thread
//! that enters it (`setns`); a socket stays in the namespace it was made in,
//! so the node's ordinary tasks serve them. Nothing is shared between pods:
//! two nodes (or two `skiff up` on one host) never compete for an address.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dns::{self, Answer, ServiceRecord};
use crate::gateway::{Client, Gateway};
use crate::route::{PortRef, Route};

/// Where a pod's DNS questions go, inside its own namespace.
pub const DNS_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10)), 53);

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// How long a relayed question waits for the node's resolver.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// The pod whose namespace is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub ip: Option<IpAddr>,
}

/// The pods' network namespaces this node serves.
pub struct PodNetworks {
    gateway: Arc<Gateway>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// The node's resolver, for names outside the cluster.
    upstream: Option<SocketAddr>,
    pods: Mutex<HashMap<String, CancellationToken>>,
}

impl PodNetworks {
    pub(crate) fn new(
        gateway: Arc<Gateway>,
        tasks: TaskTracker,
        cancel: CancellationToken,
    ) -> PodNetworks {
        let upstream = std::fs::read_to_string("/etc/resolv.conf")
            .ok()
            .and_then(|text| first_nameserver(&text));
        PodNetworks {
            gateway,
            tasks,
            cancel,
            upstream,
            pods: Mutex::default(),
        }
    }

    /// Serve Service names and addresses in `pod`'s network namespace
    /// `netns` (`/proc/<pid>/ns/net`) until [`PodNetworks::detach`]. A pod
    /// attached again (its sandbox was made anew) starts afresh.
    pub fn attach(&self, pod: PodRef, netns: PathBuf) {
        let stop = self.cancel.child_token();
        if let Some(old) = self
            .pods
            .lock()
            .expect("pods")
            .insert(pod.uid.clone(), stop.clone())
        {
            old.cancel();
        }
        self.tasks.spawn(serve_pod(
            Arc::clone(&self.gateway),
            pod,
            netns,
            self.upstream,
            self.tasks.clone(),
            stop,
        ));
    }

    /// Stop serving the pod (its sandbox is gone).
    pub fn detach(&self, uid: &str) {
        if let Some(stop) = self.pods.lock().expect("pods").remove(uid) {
            stop.cancel();
        }
    }
}

fn first_nameserver(resolv_conf: &str) -> Option<SocketAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse::<IpAddr>().ok())
            .flatten()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// Runs `make` on a fresh thread inside the network namespace `netns`:
/// sockets it creates belong to that namespace.
fn in_netns<T: Send + 'static>(
    netns: &Path,
    make: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(netns)?;
    std::thread::spawn(move || {
        // SAFETY: setns only changes this thread's network namespace; the
        // thread is ours and ends after `make`, so no other code runs in it.
        let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if entered != 0 {
            return Err(io::Error::last_os_error());
        }
        make()
    })
    .join()
    .map_err(|_| io::Error::other("the thread entering the pod's network namespace panicked"))?
}

async fn in_netns_async<T: Send + 'static>(
    netns: &Path,
    make: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let netns = netns.to_path_buf();
    tokio::task::spawn_blocking(move || in_netns(&netns, make))
        .await
        .map_err(io::Error::other)?
}

async fn serve_pod(
    gateway: Arc<Gateway>,
    pod: PodRef,
    netns: PathBuf,
    upstream: Option<SocketAddr>,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    let key = format!("{}/{}", pod.namespace, pod.name);
    let routed = tokio::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["ip", "route", "replace", "local"])
        .arg(&gateway.config.service_cidr)
        .args(["dev", "lo"])
        .status()
        .await;
    match routed {
        Ok(status) if status.success() => {}
        Ok(status) => {
            tracing::warn!(pod = key, %status, "cannot route the Service range inside the pod")
        }
        Err(err) => {
            tracing::warn!(pod = key, %err, "cannot run nsenter to route the Service range inside the pod")
        }
    }
    match in_netns_async(&netns, || {
        let socket = std::net::UdpSocket::bind(DNS_ADDRESS)?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    })
    .await
    .and_then(UdpSocket::from_std)
    {
        Ok(socket) => {
            tracing::info!(pod = key, address = %DNS_ADDRESS, "serving DNS inside the pod");
            tasks.spawn(serve_dns(
                Arc::clone(&gateway),
                Arc::new(socket),
                upstream,
                stop.clone(),
            ));
        }
        Err(err) => tracing::warn!(pod = key, %err, "cannot serve DNS inside the pod"),
    }
    serve_cluster_ips(gateway, pod, netns, tasks, stop).await;
}

/// A Service port a pod can connect to at the Service's cluster IP.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Forward {
    namespace: String,
    service: String,
    port: i32,
}

fn wanted(gateway: &Gateway) -> HashMap<SocketAddr, Forward> {
    let mut wanted = HashMap::new();
    for service in gateway.caches.services.state() {
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
        else {
            continue;
        };
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            wanted.insert(
                SocketAddr::new(ip, number),
                Forward {
                    namespace: service.metadata.namespace.clone().unwrap_or_default(),
                    service: service.metadata.name.clone().unwrap_or_default(),
                    port: port.port,
                },
            );
        }
    }
    wanted
}

/// Keep a listener on every Service port's cluster IP inside the pod.
async fn serve_cluster_ips(
    gateway: Arc<Gateway>,
    pod: PodRef,
    netns: PathBuf,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    let mut changes = gateway.caches.changes();
    if !gateway.caches.ready().await {
        return;
    }
    let caller = Client {
        ip: pod.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        pod: Some((pod.namespace.clone(), pod.name.clone())),
    };
    let mut listening: HashMap<SocketAddr, (Forward, CancellationToken)> = HashMap::new();
    loop {
        let wanted = wanted(&gateway);
        listening.retain(|addr, (forward, close)| {
            let keep = wanted.get(addr) == Some(forward);
            if !keep {
                close.cancel();
            }
            keep
        });
        let new: Vec<SocketAddr> = wanted
            .keys()
            .filter(|addr| !listening.contains_key(addr))
            .copied()
            .collect();
        if !new.is_empty() {
            let bound = in_netns_async(&netns, move || {
                Ok(new
                    .into_iter()
                    .map(|addr| {
                        let bound = std::net::TcpListener::bind(addr).and_then(|l| {
                            l.set_nonblocking(true)?;
                            Ok(l)
                        });
                        (addr, bound)
                    })
                    .collect::<Vec<_>>())
            })
            .await;
            match bound {
                Ok(bound) => {
                    for (addr, listener) in bound {
                        match listener.and_then(TcpListener::from_std) {
                            Ok(listener) => {
                                let forward = wanted[&addr].clone();
                                let close = stop.child_token();
                                tasks.spawn(accept(
                                    Arc::clone(&gateway),
                                    listener,
                                    forward.clone(),
                                    caller.clone(),
                                    close.clone(),
                                ));
                                listening.insert(addr, (forward, close));
                            }
                            // Tried again on the next change.
                            Err(err) => {
                                tracing::warn!(%addr, %err, "cannot listen on a cluster IP inside a pod")
                            }
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, "cannot enter the pod's network namespace; it is gone?");
                    return;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

async fn accept(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    forward: Forward,
    caller: Client,
    close: CancellationToken,
) {
    let route = Route {
        label: format!("service/{}/{}", forward.namespace, forward.service),
        namespace: forward.namespace,
        service: forward.service,
        port: PortRef::Number(forward.port),
    };
    loop {
        let stream = tokio::select! {
            _ = close.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => { tracing::debug!(%err, "cluster IP accept failed"); continue; }
            },
        };
        let _ = stream.set_nodelay(true);
        let gateway = Arc::clone(&gateway);
        let route = route.clone();
        let caller = caller.clone();
        let close = close.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = close.cancelled() => {}
                _ = crate::nodeport::relay(&gateway, &route, stream, &caller) => {}
            }
        });
    }
}

/// The DNS view of Service `namespace/name`.
fn record(gateway: &Gateway, namespace: &str, name: &str) -> Option<ServiceRecord> {
    let service = gateway.caches.service(namespace, name)?;
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return Some(ServiceRecord::External(
            spec.external_name.clone().unwrap_or_default(),
        ));
    }
    if let Some(Ok(ip)) = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| *ip != "None")
        .map(str::parse::<Ipv4Addr>)
    {
        return Some(ServiceRecord::ClusterIp(ip));
    }
    // Headless: every ready endpoint's address.
    let mut ips: Vec<Ipv4Addr> = gateway
        .caches
        .slices_of(namespace, name)
        .iter()
        .flat_map(|slice| slice.endpoints.iter())
        .filter(|e| {
            let conditions = e.conditions.as_ref();
            conditions.and_then(|c| c.ready) != Some(false)
                && conditions.and_then(|c| c.terminating) != Some(true)
        })
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| a.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    Some(ServiceRecord::Headless(ips))
}

async fn serve_dns(
    gateway: Arc<Gateway>,
    socket: Arc<UdpSocket>,
    upstream: Option<SocketAddr>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, from) = tokio::select! {
            _ = stop.cancelled() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(err) => { tracing::debug!(%err, "pod DNS receive failed"); continue; }
            },
        };
        let packet = &buf[..len];
        let query = match dns::parse(packet) {
            Ok(query) => query,
            Err(err) => {
                tracing::debug!(%err, "pod DNS: refusing a message");
                if let Some(answer) = dns::format_error(packet) {
                    let _ = socket.send_to(&answer, from).await;
                }
                continue;
            }
        };
        let answer = dns::lookup(&query.name, CLUSTER_DOMAIN, |ns, name| {
            record(&gateway, ns, name)
        });
        match (answer, upstream) {
            (Answer::Forward, Some(upstream)) => {
                let socket = Arc::clone(&socket);
                let packet = packet.to_vec();
                tokio::spawn(async move {
                    match relay_question(&packet, upstream).await {
                        Ok(answer) => {
                            let _ = socket.send_to(&answer, from).await;
                        }
                        Err(err) => {
                            tracing::debug!(%err, %upstream, "pod DNS: the node's resolver did not answer")
                        }
                    }
                });
            }
            (answer, _) => {
                let _ = socket.send_to(&dns::respond(&query, &answer), from).await;
            }
        }
    }
}

/// Ask the node's resolver, from the node's own network.
async fn relay_question(packet: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(packet).await?;
    let mut buf = vec![0u8; 4096];
    let len = tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv(&mut buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))??;
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_nameserver_is_the_upstream() {
        let conf = "# comment\nsearch example\nnameserver 10.0.0.53\nnameserver 1.1.1.1\n";
        assert_eq!(
            first_nameserver(conf),
            Some("10.0.0.53:53".parse().unwrap())
        );
        assert_eq!(first_nameserver("search x\n"), None);
    }
}
