//! Randomized fault runs; CI runs these seeds on every `cargo test`.

use super::run_seed_blocking;

fn run_seeds(seeds: std::ops::Range<u64>) {
    let mut failures = Vec::new();
    for seed in seeds {
        let report = run_seed_blocking(seed);
        if report.violations > 0 || report.lost_writes > 0 {
            failures.push(report);
        }
    }
    assert!(failures.is_empty(), "failing seeds: {failures:#?}");
}

#[test]
fn fault_seeds_0_to_100() {
    run_seeds(0..100);
}

#[test]
fn fault_seeds_100_to_200() {
    run_seeds(100..200);
}

mod cluster {
    use std::time::Duration;

    use crate::sim::{Cluster, Faults};
    use crate::{Op, ReadConsistency, Store, StoreConfig, StoreError, Txn};

    fn config(log_compaction_entries: u64) -> StoreConfig {
        StoreConfig {
            tick_interval: Duration::from_millis(10),
            request_timeout: Duration::from_secs(3),
            log_compaction_entries,
            ..StoreConfig::default()
        }
    }

    async fn put(store: &Store, key: &str, value: &str) -> i64 {
        let ops = vec![Op::put(key, value)];
        store.txn(Txn::ops(ops)).await.unwrap().revision
    }

    #[tokio::test(start_paused = true)]
    async fn writes_on_followers_are_forwarded_and_reads_see_them_everywhere() {
        let cluster = Cluster::start(3, 7, Faults::none(), config(1000))
            .await
            .unwrap();
        let mut revisions = Vec::new();
        for id in &cluster.ids {
            let store = cluster.store(*id).unwrap();
            revisions.push(put(&store, &format!("/f/{id}"), "v").await);
        }
        assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
        let leader = cluster.store(1).unwrap().leader().unwrap();
        assert!(cluster.ids.iter().any(|id| *id != leader));
        for id in &cluster.ids {
            let store = cluster.store(*id).unwrap();
            let range = store.range("/f/").await.unwrap();
            assert_eq!(range.kvs.len(), 3, "member {id}");
            assert!(range.revision >= revisions[2]);
        }
        cluster.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_behind_the_compacted_log_catches_up_from_a_snapshot() {
        let cluster = Cluster::start(3, 11, Faults::none(), config(4))
            .await
            .unwrap();
        cluster.crash(3).await;
        let writer = cluster.store(1).unwrap();
        let mut last = 0;
        for i in 0..30 {
            last = put(&writer, &format!("/s/{}", i % 5), &i.to_string()).await;
        }
        writer.compact(last - 3).await.unwrap();
        let expected = writer.range("/s/").await.unwrap();
        cluster.restart(3).await.unwrap();
        let lagging = cluster.store(3).unwrap();
        // Linearizable: waits until member 3 has applied what the leader committed.
        assert_eq!(lagging.range("/s/").await.unwrap().kvs, expected.kvs);
        assert_eq!(lagging.compacted_revision(), last - 3);
        let shared = lagging.inner_shared();
        let marker = shared.trees.raft_log.first().unwrap().unwrap().0;
        assert!(u64::from_be_bytes(marker.as_ref().try_into().unwrap()) > 0);
        // After a restart the snapshot is the starting point, not a replay from 1.
        drop((shared, lagging));
        cluster.crash(3).await;
        cluster.restart(3).await.unwrap();
        let reopened = cluster.store(3).unwrap();
        let local = reopened
            .range_with("/s/", ReadConsistency::Serializable)
            .await
            .unwrap();
        assert_eq!(local.kvs, expected.kvs);
        cluster.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_quorum_writes_and_reads_time_out() {
        let cluster = Cluster::start(3, 5, Faults::none(), config(1000))
            .await
            .unwrap();
        put(&cluster.store(2).unwrap(), "/q/a", "1").await;
        cluster.crash(1).await;
        cluster.crash(3).await;
        let alone = cluster.store(2).unwrap();
        let write = alone.txn(Txn::ops(vec![Op::put("/q/a", "2")])).await;
        assert!(
            matches!(write, Err(StoreError::Timeout { .. })),
            "{write:?}"
        );
        let read = alone.get("/q/a").await;
        assert!(matches!(read, Err(StoreError::Timeout { .. })), "{read:?}");
        let stale = alone
            .get_with("/q/a", ReadConsistency::Serializable)
            .await
            .unwrap();
        assert_eq!(stale.unwrap().value, b"1");
        cluster.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_moves_on_request() {
        let cluster = Cluster::start(3, 3, Faults::none(), config(1000))
            .await
            .unwrap();
        let any = cluster.store(1).unwrap();
        put(&any, "/l/a", "1").await;
        let leader = any.leader().unwrap();
        let target = cluster
            .ids
            .iter()
            .copied()
            .find(|id| *id != leader)
            .unwrap();
        cluster
            .store(leader)
            .unwrap()
            .transfer_leader(target)
            .await
            .unwrap();
        let moved = cluster.store(target).unwrap();
        for _ in 0..100 {
            if moved.leader() == Some(target) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(moved.leader(), Some(target));
        put(&moved, "/l/a", "2").await;
        cluster.shutdown().await;
    }

    /// A follower's forwarded proposal (`MsgPropose`) that the network delivers twice
    /// is appended twice by the leader (Raft does not tell them apart); applied twice,
    /// one acknowledged write would take effect again later, over writes acknowledged
    /// in between (each put here would count twice in the key's version). Each write
    /// must take effect once, however often it arrives.
    #[tokio::test(start_paused = true)]
    async fn a_proposal_the_network_delivers_twice_is_applied_once() {
        let every_batch_twice = Faults {
            drop: 0.0,
            duplicate: 1.0,
            max_delay: Duration::from_millis(30),
        };
        let cluster = Cluster::start(3, 17, every_batch_twice, config(1000))
            .await
            .unwrap();
        let first = cluster.store(1).unwrap();
        put(&first, "/d/warm-up", "0").await;
        let leader = first.leader().unwrap();
        let follower = cluster
            .ids
            .iter()
            .copied()
            .find(|id| *id != leader)
            .unwrap();
        let (leader, follower) = (
            cluster.store(leader).unwrap(),
            cluster.store(follower).unwrap(),
        );
        let start = leader.revision();
        for i in 0..5 {
            put(&follower, "/d/k", &format!("from the follower {i}")).await;
            put(&leader, "/d/k", &format!("from the leader {i}")).await;
        }
        // Long enough for every late copy to arrive and be committed.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for store in [&leader, &follower] {
            let kv = store.get("/d/k").await.unwrap().unwrap();
            assert_eq!(kv.value, b"from the leader 4", "member {}", store.id());
            assert_eq!(kv.version, 10, "member {}: puts counted", store.id());
            assert_eq!(store.revision(), start + 10, "member {}", store.id());
        }
        cluster.shutdown().await;
    }

    #[tokio::test]
    async fn open_refuses_other_members_without_a_transport() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            members: vec![1, 2, 3],
            ..StoreConfig::new(dir.path())
        };
        let error = Store::open(config).await.unwrap_err().to_string();
        assert!(error.contains("transport"), "{error}");
    }
}

mod membership {
    use std::time::Duration;

    use crate::sim::{Cluster, Faults};
    use crate::{Member, Op, Store, StoreConfig, StoreError, Txn};

    fn config() -> StoreConfig {
        StoreConfig {
            tick_interval: Duration::from_millis(10),
            request_timeout: Duration::from_secs(3),
            log_compaction_entries: 6,
            ..StoreConfig::default()
        }
    }

    fn member(id: u64) -> Member {
        Member {
            id,
            name: format!("n{id}"),
            peer_addr: String::new(),
        }
    }

    /// Retries `op` through `store` until it succeeds (timeouts are expected while
    /// leadership moves or messages are lost).
    async fn put(store: &Store, key: &str, value: &str) {
        for _ in 0..50 {
            if store.txn(Txn::ops(vec![Op::put(key, value)])).await.is_ok() {
                return;
            }
        }
        panic!("no write of {key} succeeded through member {}", store.id());
    }

    async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
        for _ in 0..500 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// A change whose answer was lost may have been applied: asking again then says
    /// so, which counts as done.
    async fn change(
        store: &Store,
        done: impl Fn(&[Member]) -> bool,
        mut ask: impl AsyncFnMut() -> Result<Vec<Member>, StoreError>,
    ) {
        for _ in 0..50 {
            match ask().await {
                Ok(members) if done(&members) => return,
                _ if done(&store.members()) => return,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("membership change never took effect on {}", store.id());
    }

    async fn keys(store: &Store) -> Option<Vec<(String, Vec<u8>)>> {
        let range = store.range("/m/").await.ok()?;
        Some(range.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect())
    }

    /// Under message loss, duplication and delay: a member joins and catches up from a
    /// snapshot, survives a crash, the leader removes itself, and every remaining
    /// member converges on the same keys and member list.
    async fn join_crash_and_remove_the_leader(seed: u64) {
        let faults = Faults {
            drop: 0.05,
            duplicate: 0.05,
            max_delay: Duration::from_millis(15),
        };
        let mut cluster = Cluster::start(3, seed, faults, config()).await.unwrap();
        let first = cluster.store(1).unwrap();
        for i in 0..20 {
            put(&first, &format!("/m/{}", i % 4), &i.to_string()).await;
        }

        change(
            &first,
            |m| m.len() == 4,
            async || first.add_member(member(4)).await,
        )
        .await;
        cluster.join(4).await.unwrap();
        let fourth = cluster.store(4).unwrap();
        put(&fourth, "/m/from-4", "x").await;
        let expected = keys(&first).await;
        wait_until("the new member to catch up", async || {
            keys(&fourth).await == expected
        })
        .await;
        assert_eq!(fourth.members().len(), 4);

        // Its membership survives a crash: it comes back from its own directory.
        drop(fourth);
        cluster.crash(4).await;
        put(&first, "/m/while-4-down", "y").await;
        cluster.restart(4).await.unwrap();
        let fourth = cluster.store(4).unwrap();
        assert_eq!(fourth.members().len(), 4);

        // The leader removes itself; the other three go on.
        let mut leader = 0;
        wait_until("a leader", async || {
            leader = first.leader().unwrap_or(0);
            leader != 0
        })
        .await;
        let removing = cluster.store(leader).unwrap();
        change(
            &removing,
            |m| !m.iter().any(|m| m.id == leader),
            async || removing.remove_member(leader).await,
        )
        .await;
        drop(removing);
        cluster.crash(leader).await;
        let rest: Vec<u64> = cluster
            .ids
            .iter()
            .copied()
            .filter(|id| *id != leader)
            .collect();
        let writer = cluster.store(rest[0]).unwrap();
        put(&writer, "/m/after-removal", "z").await;
        cluster.network.heal();
        cluster.network.set_faults(Faults::none());
        let expected = keys(&writer).await.expect("a read after recovery");
        for id in &rest {
            let store = cluster.store(*id).unwrap();
            wait_until("members to converge", async || {
                keys(&store).await.as_ref() == Some(&expected)
                    && store.members().iter().map(|m| m.id).collect::<Vec<_>>() == rest
            })
            .await;
        }
        cluster.shutdown().await;
    }

    /// A member removed while it was down hears of it when it comes back (the group
    /// answers its first message with a notice) and stops serving; its data directory
    /// refuses to serve again, and its id is never given out again.
    #[tokio::test(start_paused = true)]
    async fn a_member_removed_while_down_stops_when_it_comes_back() {
        let cluster = Cluster::start(3, 21, Faults::none(), config())
            .await
            .unwrap();
        let first = cluster.store(1).unwrap();
        put(&first, "/m/a", "1").await;
        let leader = first.leader().unwrap();
        drop(first);
        let away = cluster
            .ids
            .iter()
            .copied()
            .find(|id| *id != leader)
            .unwrap();
        cluster.crash(away).await;
        let leading = cluster.store(leader).unwrap();
        change(
            &leading,
            |m| !m.iter().any(|m| m.id == away),
            async || leading.remove_member(away).await,
        )
        .await;
        assert_eq!(leading.removed_members().unwrap(), vec![away]);

        cluster.restart(away).await.unwrap();
        let back = cluster.store(away).unwrap();
        wait_until("the removed member to stop", async || back.is_stopped()).await;
        assert!(
            !back.members().iter().any(|m| m.id == away),
            "{:?}",
            back.members()
        );
        assert!(matches!(back.get("/m/a").await, Err(StoreError::Stopped)));
        drop(back);
        let refused = cluster.restart(away).await.unwrap_err().to_string();
        assert!(refused.contains("was removed from its group"), "{refused}");

        put(&leading, "/m/b", "2").await;
        let reused = leading.add_member(member(away)).await.unwrap_err();
        assert!(
            reused.to_string().contains("not given out again"),
            "{reused}"
        );
        drop(leading);
        cluster.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn membership_changes_under_faults_seed_1() {
        join_crash_and_remove_the_leader(1).await;
    }

    #[tokio::test(start_paused = true)]
    async fn membership_changes_under_faults_seed_2() {
        join_crash_and_remove_the_leader(2).await;
    }

    #[tokio::test(start_paused = true)]
    async fn membership_changes_under_faults_seed_3() {
        join_crash_and_remove_the_leader(3).await;
    }
}

mod failpoints {
    use std::time::Duration;

    use crate::sim::{Cluster, FailPoint, Faults};
    use crate::{Member, Op, Store, StoreConfig, Txn};

    fn config() -> StoreConfig {
        StoreConfig {
            tick_interval: Duration::from_millis(10),
            request_timeout: Duration::from_secs(3),
            log_compaction_entries: 5,
            ..StoreConfig::default()
        }
    }

    async fn put(store: &Store, key: &str, value: &str) {
        for _ in 0..50 {
            if store.txn(Txn::ops(vec![Op::put(key, value)])).await.is_ok() {
                return;
            }
        }
        panic!("no write of {key} succeeded through member {}", store.id());
    }

    async fn state(store: &Store) -> Option<Vec<(String, i64)>> {
        let range = store.range("/f/").await.ok()?;
        Some(
            range
                .kvs
                .into_iter()
                .map(|kv| (kv.key, kv.mod_revision))
                .collect(),
        )
    }

    /// Waits until member `id` has crashed at its armed failpoint, restarts it, and
    /// waits until it holds what member `reference` holds.
    async fn crashed_then_recovers(cluster: &Cluster, id: u64, reference: u64, point: FailPoint) {
        for _ in 0..500 {
            if cluster.failpoints[&id].fired().contains(&point) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            cluster.failpoints[&id].fired().contains(&point),
            "{point:?} never fired on member {id}"
        );
        assert!(cluster.store(id).is_none(), "member {id} still runs");
        cluster.restart(id).await.unwrap();
        let reference = cluster.store(reference).unwrap();
        put(&reference, "/f/after", &format!("{point:?}")).await;
        let expected = state(&reference).await;
        let store = cluster.store(id).unwrap();
        for _ in 0..500 {
            if state(&store).await == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("member {id} did not catch up after crashing at {point:?}");
    }

    /// A crash at each disk-write step loses nothing: the member restarts from its
    /// directory alone and converges with the group.
    #[tokio::test(start_paused = true)]
    async fn a_crash_at_each_disk_write_step_is_recovered() {
        let mut cluster = Cluster::start(3, 9, Faults::none(), config())
            .await
            .unwrap();
        let first = cluster.store(1).unwrap();
        put(&first, "/f/a", "1").await;
        let leader = first.leader().unwrap();
        // Holding a handle would keep the data directory locked across restarts.
        drop(first);
        let follower = cluster
            .ids
            .iter()
            .copied()
            .find(|id| *id != leader)
            .unwrap();

        for point in [FailPoint::BetweenEntriesAndHardState, FailPoint::AfterApply] {
            cluster.failpoints[&follower].arm(point, 2);
            for i in 0..4 {
                put(&cluster.store(leader).unwrap(), &format!("/f/{i}"), "x").await;
            }
            crashed_then_recovers(&cluster, follower, leader, point).await;
        }

        // Behind the compacted log, the follower gets a snapshot and crashes installing it.
        cluster.crash(follower).await;
        for i in 0..20 {
            put(
                &cluster.store(leader).unwrap(),
                &format!("/f/s{}", i % 4),
                &i.to_string(),
            )
            .await;
        }
        cluster.failpoints[&follower].arm(FailPoint::MidSnapshotInstall, 1);
        cluster.restart(follower).await.unwrap();
        crashed_then_recovers(&cluster, follower, leader, FailPoint::MidSnapshotInstall).await;

        // A member crashes right after applying a membership change.
        cluster.failpoints[&follower].arm(FailPoint::AfterMembershipChange, 1);
        let added = Member {
            id: 4,
            name: "n4".into(),
            peer_addr: String::new(),
        };
        let leader_store = cluster.store(leader).unwrap();
        leader_store.add_member(added).await.unwrap();
        cluster.join(4).await.unwrap();
        crashed_then_recovers(&cluster, follower, leader, FailPoint::AfterMembershipChange).await;
        assert_eq!(cluster.store(follower).unwrap().members().len(), 4);
        drop(leader_store);
        cluster.shutdown().await;
    }
}

/// Watches across leader changes: every committed change reaches every watcher once,
/// in revision order, from its start revision, while leadership moves (transfers and
/// an isolated leader) over a lossy, duplicating, reordering network, with log
/// compaction so an isolated member may catch up from a snapshot.
mod watches {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures::StreamExt;

    use crate::sim::{Cluster, Faults};
    use crate::{Op, Revision, Store, StoreConfig, Txn};

    fn config() -> StoreConfig {
        StoreConfig {
            tick_interval: Duration::from_millis(10),
            request_timeout: Duration::from_secs(2),
            log_compaction_entries: 12,
            ..StoreConfig::default()
        }
    }

    /// What one watcher received: (revision, key, value), or the error that ended it.
    type Seen = Arc<Mutex<Vec<Result<(Revision, String, Vec<u8>), String>>>>;

    fn spawn_watcher(store: &Store, after: Revision) -> Seen {
        let seen: Seen = Arc::default();
        let mut watch = store.watch("/w/", after).expect("opening a watch");
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Some(event) = watch.next().await {
                let entry = event
                    .map(|e| (e.kv.mod_revision, e.kv.key, e.kv.value))
                    .map_err(|e| e.to_string());
                sink.lock().unwrap().push(entry);
            }
        });
        seen
    }

    fn last_revision(seen: &Seen) -> Revision {
        match seen.lock().unwrap().last() {
            Some(Ok((revision, _, _))) => *revision,
            _ => 0,
        }
    }

    async fn scenario(seed: u64) {
        let faults = Faults {
            drop: 0.05,
            duplicate: 0.05,
            max_delay: Duration::from_millis(20),
        };
        let cluster = Cluster::start(3, seed, faults, config()).await.unwrap();
        let all = cluster.ids.clone();
        let start = cluster.store(1).unwrap().revision();
        let mut watchers: Vec<(String, Revision, Seen)> = all
            .iter()
            .map(|id| {
                let store = cluster.store(*id).unwrap();
                (
                    format!("member {id} from {start}"),
                    start,
                    spawn_watcher(&store, start),
                )
            })
            .collect();
        let mut acked: Vec<(Revision, String, Vec<u8>)> = Vec::new();
        let mut leaders = HashSet::new();
        for i in 0..80u64 {
            let id = all[(i % 3) as usize];
            let store = cluster.store(id).unwrap();
            if let Some(leader) = store.leader() {
                leaders.insert(leader);
                match i % 20 {
                    // Hand leadership to the next member.
                    5 => {
                        let to = all[(all.iter().position(|m| *m == leader).unwrap() + 1) % 3];
                        let _ = cluster.store(leader).unwrap().transfer_leader(to).await;
                    }
                    // Cut the leader off; the others elect another.
                    12 => cluster.network.partition(&[leader], &all),
                    16 => cluster.network.heal(),
                    _ => {}
                }
            }
            if i == 40 {
                // A watcher that starts in the middle replays from history.
                let from = acked.last().map_or(start, |a| a.0);
                let store = cluster.store(2).unwrap();
                watchers.push((
                    format!("member 2 from {from}"),
                    from,
                    spawn_watcher(&store, from),
                ));
            }
            let key = format!("/w/{}", i % 5);
            let value = format!("v{i}").into_bytes();
            // An error leaves the outcome unknown: it may or may not be committed.
            if let Ok(response) = store
                .txn(Txn::ops(vec![Op::put(key.clone(), value.clone())]))
                .await
            {
                acked.push((response.revision, key, value));
            }
        }
        cluster.network.heal();
        cluster.network.set_faults(Faults::none());
        // The final revision, agreed by a linearizable read on every member.
        let mut last = 0;
        for id in &all {
            let store = cluster.store(*id).unwrap();
            let mut tries = 0;
            while store.get("/w/0").await.is_err() {
                tries += 1;
                assert!(
                    tries < 20,
                    "member {id} never answered a read after healing"
                );
            }
            last = last.max(store.revision());
        }
        assert!(
            leaders.len() >= 2,
            "seed {seed}: leadership never moved ({leaders:?}); the test proves nothing"
        );
        assert!(
            acked.len() >= 15,
            "seed {seed}: only {} writes acknowledged",
            acked.len()
        );
        for (name, from, seen) in &watchers {
            let mut waited = 0;
            while last_revision(seen) < last && waited < 3000 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                waited += 1;
            }
            let seen = seen.lock().unwrap().clone();
            let mut revisions = Vec::new();
            for entry in &seen {
                match entry {
                    Ok((revision, _, _)) => revisions.push(*revision),
                    Err(error) => panic!("seed {seed}: watcher on {name} failed: {error}"),
                }
            }
            // Every put changes something, so revisions are dense: each one after the
            // start, once, in order.
            let want: Vec<Revision> = (from + 1..=last).collect();
            assert_eq!(revisions, want, "seed {seed}: watcher on {name}");
            for (revision, key, value) in acked.iter().filter(|a| a.0 > *from) {
                let event = &seen[(revision - from - 1) as usize];
                assert_eq!(
                    event.as_ref().unwrap(),
                    &(*revision, key.clone(), value.clone()),
                    "seed {seed}: watcher on {name}, acknowledged write at {revision}"
                );
            }
        }
        cluster.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn every_change_reaches_every_watcher_once_in_order_across_leader_changes() {
        for seed in [1, 2, 3, 4] {
            scenario(seed).await;
        }
    }
}
