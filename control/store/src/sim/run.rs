//! One randomized run: a cluster of 3 or 5 members, a few clients writing, reading and
//! compare-and-swapping a few keys through random members, and a nemesis that
//! partitions, crashes, restarts and moves leadership; then recovery, final reads on
//! every member, and the checker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::history::Value;
use super::{Cluster, FailPoint, Faults, History, Kind, Operation, Rng, check};
use crate::{Compare, CompareTarget, Op, Store, StoreConfig, StoreError, Txn};

const PREFIX: &str = "/t/";

/// What one seed found.
#[derive(Clone, Debug, Default)]
pub struct SeedReport {
    pub seed: u64,
    pub members: u64,
    pub operations: usize,
    /// Operations whose outcome is unknown (errors and timeouts).
    pub unknown: usize,
    /// Keys without a linearization, plus 1 if the members did not converge.
    pub violations: usize,
    pub lost_writes: usize,
    /// Crashes at failpoints inside disk-write steps.
    pub failpoint_crashes: usize,
    /// Applications of a request skipped because its id had been applied already (a
    /// proposal the network delivered twice), counted on every member. Counted per
    /// process: exact when seeds run one at a time, as in `fault-seeds`.
    pub duplicates_skipped: u64,
    pub details: Vec<String>,
    /// Every operation of the run, and the nemesis's actions as `(logical time, what)`
    /// on the same clock, for explaining a violation.
    pub history: Vec<Operation>,
    pub nemesis: Vec<(u64, String)>,
}

impl SeedReport {
    /// A digest of the run's history and nemesis actions: equal on two runs of a seed
    /// when the seed replays.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut hasher = DefaultHasher::new();
        for op in &self.history {
            (&op.key, format!("{:?}", op.kind), op.call, op.ret).hash(&mut hasher);
        }
        self.nemesis.hash(&mut hasher);
        (self.failpoint_crashes, self.violations, self.lost_writes).hash(&mut hasher);
        hasher.finish()
    }
}

/// Runs `run_seed` on a fresh current-thread runtime with a paused clock.
pub fn run_seed_blocking(seed: u64) -> SeedReport {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("building a tokio runtime");
    runtime.block_on(run_seed(seed))
}

pub async fn run_seed(seed: u64) -> SeedReport {
    let duplicates_at_start = crate::apply::duplicates_skipped();
    let mut rng = Rng::new(seed);
    let members = if rng.chance(0.3) { 5 } else { 3 };
    let faults = Faults {
        drop: rng.below(15) as f64 / 100.0,
        duplicate: rng.below(10) as f64 / 100.0,
        max_delay: Duration::from_millis(1 + rng.below(40)),
    };
    let base = StoreConfig {
        tick_interval: Duration::from_millis(10),
        request_timeout: Duration::from_secs(2),
        // Small, so snapshots and log compaction happen in every run.
        log_compaction_entries: 8 + rng.below(16),
        ..StoreConfig::default()
    };
    let mut report = SeedReport {
        seed,
        members,
        ..SeedReport::default()
    };
    let cluster = match Cluster::start(members, rng.next_u64(), faults, base).await {
        Ok(cluster) => Arc::new(cluster),
        Err(error) => {
            report.violations = 1;
            report
                .details
                .push(format!("starting the cluster: {error}"));
            return report;
        }
    };
    let history = Arc::new(History::default());
    let keys: Vec<String> = (0..3).map(|k| format!("{PREFIX}k{k}")).collect();

    let mut clients = Vec::new();
    for client in 0..3u64 {
        let (cluster, history, keys) = (cluster.clone(), history.clone(), keys.clone());
        let mut rng = Rng::new(rng.next_u64());
        clients.push(tokio::spawn(async move {
            for n in 0..12u64 {
                let value = (client << 32) | (n + 1);
                client_op(&cluster, &history, &keys, &mut rng, value).await;
                tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
            }
        }));
    }
    let actions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let nemesis = tokio::spawn(nemesis(
        cluster.clone(),
        Rng::new(rng.next_u64()),
        history.clone(),
        actions.clone(),
    ));
    for client in clients {
        let _ = client.await;
    }
    nemesis.abort();
    let _ = nemesis.await;

    if let Err(error) = cluster.recover().await {
        report.violations += 1;
        report.details.push(format!("restarting members: {error}"));
    }
    // Batches sent before the network healed may still be on their way (each copy is
    // delayed up to `max_delay`, and a forwarded proposal may take two hops): a write
    // whose caller already gave up may still commit. Let them land first, or a member
    // read before one lands looks like a member that did not converge.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let finals = final_reads(&cluster, &history, &keys, &mut report).await;
    let operations = history.operations();
    report.operations = operations.len();
    report.unknown = operations.iter().filter(|op| !op.acknowledged()).count();
    report.failpoint_crashes = cluster.failpoints.values().map(|f| f.fired().len()).sum();
    report.duplicates_skipped = crate::apply::duplicates_skipped() - duplicates_at_start;

    let verdict = check(&operations, &finals);
    report.violations += verdict.violations.len();
    report.lost_writes = verdict.lost_writes;
    for key in &verdict.violations {
        report.details.push(format!("no linearization for {key}"));
    }
    report.history = operations;
    report.nemesis = std::mem::take(&mut *actions.lock().unwrap_or_else(|e| e.into_inner()));
    cluster.shutdown().await;
    report
}

async fn client_op(
    cluster: &Cluster,
    history: &History,
    keys: &[String],
    rng: &mut Rng,
    value: Value,
) {
    let Some(store) = cluster.store(*rng.pick(&cluster.ids)) else {
        return;
    };
    let key = rng.pick(keys).clone();
    let call = history.now();
    let (kind, result) = match rng.below(10) {
        0..=3 => {
            let put = Txn::ops(vec![Op::put(key.clone(), value.to_string())]);
            let result = store.txn(put).await.map(|_| ());
            (Kind::Write(Some(value)), result)
        }
        4 => {
            let delete = Txn::ops(vec![Op::delete(key.clone())]);
            (Kind::Write(None), store.txn(delete).await.map(|_| ()))
        }
        5..=7 => match store.get(&key).await {
            Ok(kv) => (Kind::Read(kv.map(|kv| parse(&kv.value))), Ok(())),
            // A failed read had no effect: leave it out of the history.
            Err(_) => return,
        },
        _ => {
            let expect = (rng.below(3) << 32) | (1 + rng.below(12));
            let cas = Txn {
                compare: vec![Compare {
                    key: key.clone(),
                    target: CompareTarget::Value(expect.to_string().into_bytes()),
                }],
                success: vec![Op::put(key.clone(), value.to_string())],
                failure: vec![],
            };
            match store.txn(cas).await {
                Ok(response) => (
                    Kind::Cas {
                        expect,
                        new: value,
                        succeeded: Some(response.succeeded),
                    },
                    Ok(()),
                ),
                Err(error) => (
                    Kind::Cas {
                        expect,
                        new: value,
                        succeeded: None,
                    },
                    Err(error),
                ),
            }
        }
    };
    let ret = match result {
        Ok(()) => history.now(),
        Err(_) => u64::MAX,
    };
    history.record(Operation {
        key,
        kind,
        call,
        ret,
    });
}

fn parse(bytes: &[u8]) -> Value {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

async fn nemesis(
    cluster: Arc<Cluster>,
    mut rng: Rng,
    history: Arc<History>,
    actions: Arc<std::sync::Mutex<Vec<(u64, String)>>>,
) {
    let ids = cluster.ids.clone();
    let minority = (ids.len() - 1) / 2;
    let note = |what: String| {
        actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((history.now(), what));
    };
    loop {
        tokio::time::sleep(Duration::from_millis(50 + rng.below(300))).await;
        let leaders: Vec<(u64, Option<u64>)> = cluster
            .running()
            .into_iter()
            .map(|id| (id, cluster.store(id).and_then(|s| s.leader())))
            .collect();
        note(format!("members up and the leader each knows: {leaders:?}"));
        match rng.below(6) {
            0 => {
                let size = 1 + rng.below(ids.len() as u64 - 1) as usize;
                let mut side = ids.clone();
                while side.len() > size {
                    side.remove(rng.below(side.len() as u64) as usize);
                }
                cluster.network.partition(&side, &ids);
                note(format!("partition {side:?} from the rest"));
            }
            1 => {
                cluster.network.heal();
                note("heal".into());
            }
            2 => {
                let down = ids.len() - cluster.running().len();
                if down < minority.max(1) {
                    let id = *rng.pick(&ids);
                    if rng.chance(0.5) {
                        note(format!("crash {id}"));
                        cluster.crash(id).await;
                    } else {
                        // Crash inside a disk-write step, a few hits from now.
                        let point = *rng.pick(&FailPoint::ALL);
                        let after = 1 + rng.below(4);
                        note(format!("arm {point:?} on {id} after {after} hits"));
                        cluster.failpoints[&id].arm(point, after);
                    }
                }
            }
            3 | 4 => {
                let id = *rng.pick(&ids);
                let result = cluster.restart(id).await;
                note(format!("restart {id}: {result:?}"));
            }
            _ => {
                let running = cluster.running();
                if let Some(leader) = running
                    .iter()
                    .filter_map(|id| cluster.store(*id))
                    .find(|s| s.leader() == Some(s.id()))
                {
                    let to = *rng.pick(&ids);
                    note(format!("transfer leadership from {} to {to}", leader.id()));
                    let _ = leader.transfer_leader(to).await;
                }
            }
        }
    }
}

/// Reads every key linearizably until it succeeds (on a healed cluster it must), and
/// checks that all members then hold the same keys at the same revisions.
async fn final_reads(
    cluster: &Cluster,
    history: &History,
    keys: &[String],
    report: &mut SeedReport,
) -> BTreeMap<String, Option<Value>> {
    let mut finals = BTreeMap::new();
    for key in keys {
        for attempt in 0.. {
            let id = cluster.ids[attempt % cluster.ids.len()];
            let Some(store) = cluster.store(id) else {
                continue;
            };
            let call = history.now();
            match store.get(key).await {
                Ok(kv) => {
                    let value = kv.map(|kv| parse(&kv.value));
                    history.record(Operation {
                        key: key.clone(),
                        kind: Kind::Read(value),
                        call,
                        ret: history.now(),
                    });
                    finals.insert(key.clone(), value);
                    break;
                }
                Err(error) if attempt >= 20 => {
                    report.violations += 1;
                    report
                        .details
                        .push(format!("healed cluster cannot read {key}: {error}"));
                    break;
                }
                Err(_) => {}
            }
        }
    }
    // Members apply at their own pace: ask again a few times before calling it.
    let mut ranges = Vec::new();
    for _ in 0..5 {
        ranges.clear();
        for id in &cluster.ids {
            let range = match cluster.store(*id) {
                Some(store) => converged_range(&store).await,
                None => Err(StoreError::Stopped),
            };
            ranges.push(range.map_err(|e| e.to_string()));
        }
        if ranges.windows(2).all(|pair| pair[0] == pair[1]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if ranges.windows(2).any(|pair| pair[0] != pair[1]) {
        report.violations += 1;
        report
            .details
            .push(format!("members did not converge: {ranges:?}"));
    }
    finals
}

async fn converged_range(store: &Store) -> Result<Vec<crate::KeyValue>, StoreError> {
    let mut last = Err(StoreError::Stopped);
    for _ in 0..10 {
        last = store.range(PREFIX).await.map(|r| r.kvs);
        if last.is_ok() {
            break;
        }
    }
    last
}
