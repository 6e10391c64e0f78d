//! The stages of a pod on this node, as one enum and one transition function.
//! The worker performs each stage's entry action (start containers, stop them,
//! delete the pod) when [`advance`] moves it there.
//!
//! ```text
//! Initializing(0) ─ok─▶ Initializing(1) ─ok─▶ … ─▶ Running ─all finished─▶ Completed
//!        └─failed for good─▶ Completed
//! any of those ─deleted / vanished / shutdown─▶ Stopping(why) ─containers gone─▶ Stopped(why)
//! ```

use crate::container::runner::Slot;

/// Why the pod's containers are being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The pod got a deletionTimestamp: finish the graceful delete.
    Deleted,
    /// The pod is gone from the store (or from this node).
    Vanished,
    /// The agent is shutting down; the pod stays as it is in the store.
    Shutdown,
    /// The pod used more than a limit the node enforces by eviction (an
    /// emptyDir over its `sizeLimit`): it ends `Failed`, reason `Evicted`, and
    /// stays in the store for its owner to replace.
    Evicted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Init container `n` runs; the ones before it succeeded.
    Initializing(usize),
    /// The regular containers run.
    Running,
    /// Nothing runs or will run again; the pod waits to be deleted.
    Completed,
    /// Containers are being stopped.
    Stopping(StopReason),
    /// All containers are stopped; the worker ends.
    Stopped(StopReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageEvent {
    /// A container will never run again.
    ContainerFinished {
        slot: Slot,
        success: bool,
    },
    StopRequested(StopReason),
    /// Every container task has ended.
    ContainersStopped,
}

/// The pod's shape, which the transitions depend on.
#[derive(Debug, Clone, Copy)]
pub struct PodShape {
    pub init_containers: usize,
    /// True once every regular container has finished for good.
    pub all_main_finished: bool,
}

/// Where a new pod starts.
pub fn initial(shape: PodShape) -> Stage {
    if shape.init_containers > 0 {
        Stage::Initializing(0)
    } else {
        Stage::Running
    }
}

/// The one transition function; events that do not apply leave the stage as it is.
pub fn advance(stage: Stage, event: StageEvent, shape: PodShape) -> Stage {
    use StageEvent::*;
    match (stage, event) {
        (
            Stage::Initializing(n),
            ContainerFinished {
                slot: Slot::Init(i),
                success,
            },
        ) if i == n => match (success, n + 1 < shape.init_containers) {
            (false, _) => Stage::Completed,
            (true, true) => Stage::Initializing(n + 1),
            (true, false) => Stage::Running,
        },
        (
            Stage::Running,
            ContainerFinished {
                slot: Slot::Main(_),
                ..
            },
        ) if shape.all_main_finished => Stage::Completed,
        (Stage::Initializing(_) | Stage::Running | Stage::Completed, StopRequested(reason)) => {
            Stage::Stopping(reason)
        }
        // Once the pod is gone from the store there is nothing left to delete.
        (Stage::Stopping(StopReason::Deleted), StopRequested(StopReason::Vanished)) => {
            Stage::Stopping(StopReason::Vanished)
        }
        (Stage::Stopping(reason), ContainersStopped) => Stage::Stopped(reason),
        (stage, _) => stage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(init_containers: usize, all_main_finished: bool) -> PodShape {
        PodShape {
            init_containers,
            all_main_finished,
        }
    }

    fn finished(slot: Slot, success: bool) -> StageEvent {
        StageEvent::ContainerFinished { slot, success }
    }

    #[test]
    fn init_containers_run_in_order() {
        let s = shape(2, false);
        assert_eq!(initial(s), Stage::Initializing(0));
        assert_eq!(initial(shape(0, false)), Stage::Running);
        let stage = advance(Stage::Initializing(0), finished(Slot::Init(0), true), s);
        assert_eq!(stage, Stage::Initializing(1));
        assert_eq!(
            advance(stage, finished(Slot::Init(1), true), s),
            Stage::Running
        );
        assert_eq!(
            advance(stage, finished(Slot::Init(1), false), s),
            Stage::Completed
        );
        assert_eq!(
            advance(stage, finished(Slot::Init(0), true), s),
            stage,
            "stale report"
        );
    }

    #[test]
    fn running_completes_when_every_container_finished() {
        let event = finished(Slot::Main(0), true);
        assert_eq!(
            advance(Stage::Running, event, shape(0, false)),
            Stage::Running
        );
        assert_eq!(
            advance(Stage::Running, event, shape(0, true)),
            Stage::Completed
        );
    }

    #[test]
    fn stopping_ends_when_the_containers_are_gone() {
        let s = shape(0, false);
        let deleting = advance(
            Stage::Running,
            StageEvent::StopRequested(StopReason::Deleted),
            s,
        );
        assert_eq!(deleting, Stage::Stopping(StopReason::Deleted));
        let shutdown = StageEvent::StopRequested(StopReason::Shutdown);
        assert_eq!(advance(deleting, shutdown, s), deleting);
        let vanished = advance(deleting, StageEvent::StopRequested(StopReason::Vanished), s);
        assert_eq!(vanished, Stage::Stopping(StopReason::Vanished));
        assert_eq!(
            advance(deleting, StageEvent::ContainersStopped, s),
            Stage::Stopped(StopReason::Deleted)
        );
        let completed = advance(
            Stage::Completed,
            StageEvent::StopRequested(StopReason::Deleted),
            s,
        );
        assert_eq!(completed, Stage::Stopping(StopReason::Deleted));
    }
}
