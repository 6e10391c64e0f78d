//! Three members over the real TCP transport on loopback.

use std::time::Duration;

use anyhow::Result;
use skiff_store::{Member, Op, Store, StoreConfig, TcpTransport, Txn, serve_peers};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Running {
    store: Store,
    cancel: CancellationToken,
}

/// Starts member `id` of a new group of `members`, or (`join`) one added to a running
/// group whose `members` the caller learned from `add_member`.
async fn start(
    id: u64,
    members: &[Member],
    join: bool,
    listener: TcpListener,
    dir: &std::path::Path,
) -> Result<Running> {
    let transport = TcpTransport::new(id);
    transport.set_members(members);
    let config = StoreConfig {
        id,
        members: if join {
            Vec::new()
        } else {
            members.iter().map(|m| m.id).collect()
        },
        member_info: if join { Vec::new() } else { members.to_vec() },
        tick_interval: Duration::from_millis(20),
        ..StoreConfig::new(dir)
    };
    let store = Store::open_member(config, transport.clone()).await?;
    let cancel = CancellationToken::new();
    tokio::spawn(serve_peers(listener, store.clone(), cancel.clone()));
    let mut changes = store.watch_members();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let members = changes.borrow_and_update().clone();
            transport.set_members(&members);
        }
    });
    Ok(Running { store, cancel })
}

async fn put_until_ok(store: &Store, key: &str, value: &str) -> Result<i64> {
    for _ in 0..100 {
        match store.txn(Txn::ops(vec![Op::put(key, value)])).await {
            Ok(response) => return Ok(response.revision),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    anyhow::bail!("no write succeeded through member {}", store.id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_replicate_over_tcp_and_a_fourth_joins() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut listeners = Vec::new();
    let mut members = Vec::new();
    for id in 1..=4u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        members.push(Member {
            id,
            name: format!("n{id}"),
            peer_addr: listener.local_addr()?.to_string(),
        });
        listeners.push(listener);
    }
    let fourth = members.pop().unwrap();
    let fourth_listener = listeners.pop().unwrap();
    let mut running = Vec::new();
    for (member, listener) in members.iter().zip(listeners) {
        running.push(
            start(
                member.id,
                &members,
                false,
                listener,
                &dir.path().join(&member.name),
            )
            .await?,
        );
    }

    // Written through every member, read through another: forwarding and ReadIndex
    // cross the network.
    for (i, member) in running.iter().enumerate() {
        put_until_ok(&member.store, &format!("/k/{i}"), "v").await?;
    }
    let read = running[2].store.range("/k/").await?;
    assert_eq!(read.kvs.len(), 3);

    // A fourth member joins with an empty member list and catches up by snapshot.
    let listed = running[0].store.add_member(fourth.clone()).await?;
    assert_eq!(listed.len(), 4);
    let joined = start(4, &listed, true, fourth_listener, &dir.path().join("n4")).await?;
    let mut caught_up = false;
    for _ in 0..200 {
        if let Ok(range) = joined.store.range("/k/").await
            && range.kvs.len() == 3
        {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(caught_up, "the joined member never served the group's keys");
    assert_eq!(joined.store.members().len(), 4);
    put_until_ok(&joined.store, "/k/3", "from the new member").await?;
    assert_eq!(running[0].store.range("/k/").await?.kvs.len(), 4);

    // Removing a member shrinks everyone's list.
    let listed = running[0].store.remove_member(4).await?;
    assert_eq!(listed.len(), 3);
    put_until_ok(&running[1].store, "/k/4", "after removal").await?;

    for member in running.into_iter().chain([joined]) {
        member.cancel.cancel();
        member.store.close().await;
    }
    Ok(())
}
