//! NodePort Services: a TCP listener on `node_port_ip:nodePort` for every
//! TCP port of every NodePort (or LoadBalancer) Service, forwarding each
//! connection's bytes to a ready endpoint, whatever protocol they carry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::gateway::{Client, Gateway, NoCandidate};
use crate::route::{PortRef, Route};

/// One listener's job: which Service port it forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Forward {
    namespace: String,
    service: String,
    port: i32,
}

/// What should be listening, from the cached Services.
fn wanted(gateway: &Gateway) -> HashMap<u16, Forward> {
    let mut wanted = HashMap::new();
    for service in gateway.caches.services.state() {
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        if !matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer")) {
            continue;
        }
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            wanted.insert(
                node_port,
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

/// Keep the listeners in line with the Services until `cancel` fires.
pub async fn run(gateway: Arc<Gateway>, tasks: TaskTracker, cancel: CancellationToken) {
    let mut changes = gateway.caches.changes();
    let mut listening: HashMap<u16, (Forward, CancellationToken)> = HashMap::new();
    tracing::debug!("node port listeners: waiting for the caches");
    if !gateway.caches.ready().await {
        return;
    }
    loop {
        let wanted = wanted(&gateway);
        tracing::debug!(
            node_ports = wanted.len(),
            listening = listening.len(),
            "node port listeners"
        );
        listening.retain(|port, (forward, stop)| {
            let keep = wanted.get(port) == Some(forward);
            if !keep {
                tracing::info!(node_port = port, "closing node port");
                stop.cancel();
            }
            keep
        });
        for (port, forward) in wanted {
            if listening.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::new(gateway.config.node_port_ip, port);
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(%addr, service = %format!("{}/{}", forward.namespace, forward.service), "listening on node port");
                    let stop = cancel.child_token();
                    tasks.spawn(accept(
                        Arc::clone(&gateway),
                        listener,
                        forward.clone(),
                        stop.clone(),
                    ));
                    listening.insert(port, (forward, stop));
                }
                // Tried again on the next change.
                Err(err) => tracing::warn!(%addr, %err, "cannot listen on node port"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

async fn accept(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    forward: Forward,
    stop: CancellationToken,
) {
    let route = Route {
        label: format!(
            "nodeport/{}/{}/{}",
            forward.namespace, forward.service, forward.port
        ),
        namespace: forward.namespace,
        service: forward.service,
        port: PortRef::Number(forward.port),
    };
    loop {
        let (client, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => { tracing::warn!(%err, "node port accept failed"); continue; }
            },
        };
        let gateway = Arc::clone(&gateway);
        let route = route.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let caller = Client::from_ip(peer.ip());
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = relay(&gateway, &route, client, &caller) => {}
            }
        });
    }
}

/// Relay one TCP connection for `route` to a ready endpoint, holding it
/// while a Deployment that scales to zero starts (as the HTTP path does).
pub(crate) async fn relay(
    gateway: &Gateway,
    route: &Route,
    mut client: TcpStream,
    caller: &Client,
) {
    let target = gateway.scaler.target(&route.namespace, &route.service);
    let mut in_flight = target.as_deref().map(|t| gateway.scaler.start(t));
    let candidates = match gateway.candidates(route, caller, false) {
        Ok(candidates) => Ok(candidates),
        Err(NoCandidate::Unavailable(reason)) => match (target.as_deref(), in_flight.as_mut()) {
            (Some(target), Some(guard)) if target.policy.holds() => {
                gateway.hold(route, target, guard, caller).await
            }
            _ => Err(NoCandidate::Unavailable(reason)),
        },
        Err(refused) => Err(refused),
    };
    let candidates = match candidates {
        Ok(candidates) => candidates,
        Err(reason) => {
            tracing::info!(route = route.label, client = %caller.ip, %reason, "connection refused");
            return;
        }
    };
    let (chosen, mut backend) = match gateway.connect(&candidates).await {
        Ok(connected) => connected,
        Err(reason) => {
            tracing::info!(route = route.label, client = %caller.ip, reason, "backend unreachable");
            return;
        }
    };
    drop(in_flight);
    gateway
        .balancer
        .served(&route.label, caller.ip, &candidates[chosen].0);
    if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        tracing::debug!(route = route.label, %err, "relayed connection ended");
    }
}
