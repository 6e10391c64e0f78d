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
