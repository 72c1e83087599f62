//! The controller loop: the only writer of scheduling decisions.
//!
//! It holds the `controller` lease (trivially on SQLite; against other servers on PostgreSQL),
//! rebuilds an [`Engine`] from a store snapshot whenever it becomes leader or the fleet changes,
//! and then, on every tick, applies the store's event stream (submissions, cancellations, ended
//! attempts) to the engine, runs a scheduling pass, and persists the decisions. A start is
//! acknowledged to no one until `start_attempts` has committed it under the current lease epoch;
//! a deposed leader's commit fails, so no attempt starts twice.

use crate::accounting::{self, AccountingPolicy};
use crate::clock::{SharedClock, SystemClock};
use crate::metrics::Metrics;
use haneul_model::{
    Block, BlockId, Dependency, DependencyKind, Fleet, Job, JobId, MemMib, MilliCpu, Node, NodeId,
    OrgClass, OrgId, Organisation, Pool, PoolId, Project, ProjectId, Tenants, Time,
};
use haneul_sched::{Decisions, Engine, Policy, SchedError};
use haneul_store::{
    Actor, EventKind, JobFilter, JobRecord, JobState, NewAttempt, Snapshot, StopReason, Store,
    StoreError,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Timing of the loop, from the server's configuration.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Identity in the lease table (host, pid and a random suffix).
    pub holder: String,
    pub lease_ttl: Duration,
    /// Longest sleep between passes when nothing wakes the loop.
    pub tick: Duration,
    /// A node whose last heartbeat is older than this is lost.
    pub node_timeout: Duration,
    pub policy: Policy,
}

/// Shared between the controller and the HTTP side.
#[derive(Debug)]
pub struct Signals {
    /// Woken by submissions, cancellations and agent reports so a pass runs at once.
    pub wake: Notify,
    /// Bumped when any node's assignments may have changed (nodes lost, time limits,
    /// preemptions, cancellations), for agents' long polls.
    pub assignments: watch::Sender<u64>,
    /// Bumped per node when only some nodes' assignments changed (starts, task exits): with
    /// a long poll per node, one global signal per start would wake every poll in the centre.
    node_assignments: std::sync::Mutex<BTreeMap<i64, watch::Sender<u64>>>,
    pub leader: AtomicBool,
    /// While standing by: the leader's advertised URL, when it advertises one.
    pub leader_url: std::sync::Mutex<Option<String>>,
    pub shutdown: watch::Sender<bool>,
    /// Recent GPU utilisation per job, fed by agents' telemetry, read by the idle policy.
    pub telemetry: crate::telemetry::Live,
    /// Why each queued job waits, from this server's last pass as leader: kept in memory only
    /// (a standby or a freshly started leader shows none until its first publication),
    /// replaced whole after a pass at most once a second. Jobs of held projects get theirs
    /// from the stored hold instead. Kept as the engine's data and worded when read, so
    /// publishing a deep queue's reasons costs no formatting.
    pending: std::sync::RwLock<Published>,
}

/// The pending reasons of one publication, in a form paid per queued job at 16 bytes rather
/// than a `PendingReason`'s 128: in a deep queue nearly every job waits for `Priority`, and
/// what those reasons hold beyond the jobs ahead (the pass's time, the head that holds the
/// queue back, whether the order is fair share) is the same for all of them, so it is kept
/// once. The other reasons (the jobs the pass tried, and the control plane's) are kept whole.
#[derive(Debug, Default)]
struct Published {
    /// The time and fair-share setting of every compact `Priority` reason: the first one's.
    shared: Option<(Time, bool)>,
    /// The job a compact `Priority` reason waits behind, when it names one.
    head: Option<JobId>,
    /// Sorted by job id, one each.
    jobs: Vec<(i64, Slot)>,
    others: Vec<haneul_sched::PendingReason>,
}

/// Whole reasons a new one is compared with before it is kept ([`Published::keep_whole`]):
/// enough for the shapes of one queue's jobs to interleave, few enough to cost nothing.
const REASONS_MATCHED: usize = 8;

#[derive(Debug, Clone, Copy)]
enum Slot {
    /// `Waiting::Priority` at the publication's time and fair-share setting, behind its
    /// `head` or behind none.
    Priority { ahead: u32, behind_head: bool },
    /// Index in `others`.
    Other(u32),
}

impl Published {
    /// Adds `id`'s reason; the caller sorts `jobs` when done.
    fn push(&mut self, id: i64, r: haneul_sched::PendingReason) {
        if let haneul_sched::Waiting::Priority {
            ahead,
            behind,
            fair_share,
        } = r.waiting
            && *self.shared.get_or_insert((r.at, fair_share)) == (r.at, fair_share)
        {
            if behind.is_some() && self.head.is_none() {
                self.head = behind;
            }
            if behind.is_none() || behind == self.head {
                let behind_head = behind.is_some();
                self.jobs.push((id, Slot::Priority { ahead, behind_head }));
                return;
            }
        }
        self.push_other(id, r);
    }

    fn push_other(&mut self, id: i64, r: haneul_sched::PendingReason) {
        let slot = self.keep_whole(r);
        self.jobs.push((id, slot));
    }

    /// Keeps `r` in the side list, once among the last few kept; the slot that names it.
    /// When the fleet is full, every queued job of a closed shape gets a whole reason, and
    /// those of one shape in one queue come one after another with the same reason: kept
    /// once each, a full fleet's deep queue costs 16 bytes a job here too, not 128 and the
    /// side list's growth.
    fn keep_whole(&mut self, r: haneul_sched::PendingReason) -> Slot {
        let recent = self.others.len().saturating_sub(REASONS_MATCHED);
        let i = match self.others[recent..].iter().rposition(|o| *o == r) {
            Some(k) => recent + k,
            None => {
                self.others.push(r);
                self.others.len() - 1
            }
        };
        Slot::Other(u32::try_from(i).expect("fewer than 2^32 queued jobs"))
    }

    fn get(&self, id: i64) -> Option<haneul_sched::PendingReason> {
        let i = self.jobs.binary_search_by_key(&id, |(j, _)| *j).ok()?;
        Some(match self.jobs[i].1 {
            Slot::Priority { ahead, behind_head } => {
                let (at, fair_share) = self.shared.expect("set with the first compact reason");
                haneul_sched::PendingReason {
                    at,
                    waiting: haneul_sched::Waiting::Priority {
                        ahead,
                        behind: self.head.filter(|_| behind_head),
                        fair_share,
                    },
                }
            }
            Slot::Other(k) => self.others[k as usize].clone(),
        })
    }
}

impl Signals {
    pub fn new() -> Arc<Self> {
        Arc::new(Signals {
            wake: Notify::new(),
            assignments: watch::channel(0).0,
            node_assignments: Default::default(),
            leader: AtomicBool::new(false),
            leader_url: std::sync::Mutex::new(None),
            shutdown: watch::channel(false).0,
            telemetry: Default::default(),
            pending: Default::default(),
        })
    }

    /// Why queued job `job` waits, as the API shows it: a held project's stored reason first,
    /// then the last pass's. `None` when it is not queued or no pass has looked at it yet.
    pub fn pending_reason(&self, job: &haneul_api::Job) -> Option<haneul_api::PendingReason> {
        if job.state != "queued" {
            return None;
        }
        if let Some(text) = &job.reason
            && let Some(hold) = haneul_api::i18n::Reason::of(text)
        {
            return Some(haneul_api::PendingReason {
                code: hold.code().into(),
                message: text.clone(),
                hint: None,
            });
        }
        // A server that is not (or no longer) leader has no current pass to speak for.
        if !self.leader.load(Ordering::SeqCst) {
            return None;
        }
        let r = self.pending.read().unwrap().get(job.id)?;
        Some(haneul_api::PendingReason {
            code: r.code().as_str().into(),
            message: r.message(),
            hint: r.hint(),
        })
    }

    /// `job` with its pending reason filled in.
    pub fn with_reason(&self, mut job: haneul_api::Job) -> haneul_api::Job {
        job.pending_reason = self.pending_reason(&job);
        job
    }

    /// `reasons` must be sorted by job id, one each (see [`pending_reasons`]).
    fn set_pending(&self, reasons: Published) {
        debug_assert!(reasons.jobs.windows(2).all(|w| w[0].0 < w[1].0));
        *self.pending.write().unwrap() = reasons;
    }
    /// This server no longer leads. The long polls it holds are woken, to look again every
    /// second as a standby's do, rather than wait out their whole wait (30 s for an agent) for
    /// a signal only a leader sends.
    pub fn stand_by(&self) {
        if self.leader.swap(false, Ordering::SeqCst) {
            self.assignments_changed();
        }
    }

    pub fn assignments_changed(&self) {
        self.assignments.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver bumped when `node`'s assignments change.
    pub fn node_assignments(&self, node: i64) -> watch::Receiver<u64> {
        let mut map = self.node_assignments.lock().unwrap();
        map.entry(node)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub fn nodes_changed(&self, nodes: impl IntoIterator<Item = i64>) {
        let map = self.node_assignments.lock().unwrap();
        for n in nodes {
            if let Some(tx) = map.get(&n) {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }
}

/// The API's reasons for every queued job the leader knows, sorted by job id: the engine's,
/// after the pass that just ran, and a dependency reason for each job kept out of the engine
/// until its parents end. Taken from the engine one at a time, so that what is held at once
/// is the published form's, not the engine's whole list as well.
fn pending_reasons(st: &Leading) -> Published {
    let mut out = Published::default();
    out.jobs.reserve_exact(st.engine.queued_len());
    st.engine
        .each_pending_reason(|j, r| out.push(j.0 as i64, r));
    out.jobs.sort_unstable_by_key(|(id, _)| *id);
    // Jobs kept out of the engine: few, and a later reason replaces an earlier one.
    let mut kept: BTreeMap<i64, haneul_sched::PendingReason> = BTreeMap::new();
    for (&id, job) in &st.adm.held {
        let on = job.spec.dependencies.iter().map(|d| d.job).collect();
        let r = haneul_sched::PendingReason {
            at: Time::ZERO,
            waiting: haneul_sched::Waiting::Dependency { on },
        };
        kept.insert(id, r);
    }
    // An array's own row waits while its `%N` tasks are made; its tasks carry their own.
    for (&id, w) in &st.adm.arrays {
        if let (true, Some(limit)) = (w.ready, w.limit) {
            let r = haneul_sched::PendingReason {
                at: Time::ZERO,
                waiting: haneul_sched::Waiting::ArrayThrottle { limit },
            };
            kept.insert(id, r);
        }
    }
    let before = out.jobs.len();
    for (id, r) in kept {
        match out.jobs[..before].binary_search_by_key(&id, |(j, _)| *j) {
            Ok(i) => out.jobs[i].1 = out.keep_whole(r),
            Err(_) => out.push_other(id, r),
        }
    }
    if out.jobs.len() > before {
        out.jobs.sort_unstable_by_key(|(id, _)| *id);
    }
    out
}

/// Least time between two publications of the pending reasons.
const REASONS_EVERY: Duration = Duration::from_secs(1);

/// Most attempts started in one transaction.
const START_CHUNK: usize = 128;

/// Most events applied from one read of the store's log.
const EVENTS_PAGE: i64 = 5_000;

/// When a periodic duty last ran, on both clocks. It is due again once its period has passed
/// on either: the work keeps its real-time cadence, and a clock that moved (a test's manual
/// clock, or the system time set forward) is acted on at the next step rather than a period
/// later.
#[derive(Debug, Clone, Copy)]
struct Ran {
    at: Instant,
    at_ms: i64,
}

impl Ran {
    fn now(now_ms: i64) -> Option<Ran> {
        Some(Ran {
            at: Instant::now(),
            at_ms: now_ms,
        })
    }
}

fn due(last: Option<Ran>, every: Duration, now_ms: i64) -> bool {
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    last.is_none_or(|r| r.at.elapsed() >= every || now_ms.saturating_sub(r.at_ms) >= every_ms)
}

fn id32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Most tasks of one array waiting in the queue at once: a 10,000-task array without `%N`
/// becomes jobs this many at a time, as earlier ones start, so the engine and the store hold
/// a window of it rather than all of it.
pub const ARRAY_WINDOW: i64 = 256;

/// A queued array the controller makes tasks of.
#[derive(Debug, Clone, Copy)]
struct ArrayWatch {
    project: i64,
    /// Its dependencies have all been met (or it has none).
    ready: bool,
    /// Its `%N`: most tasks queued or running at once.
    limit: Option<u32>,
}

/// Live attempts the engine holds, to find what to stop and to report allocation.
#[derive(Debug, Clone)]
struct Live {
    attempt: i64,
}

struct Leading {
    epoch: i64,
    engine: Engine,
    cursor: i64,
    live: HashMap<i64, Live>,
    /// Pool and GPU model of each node, for the allocation metrics.
    node_pool: HashMap<u32, (i64, String)>,
    /// Preemptions already asked for: victim job -> kill time.
    stopping: HashMap<i64, i64>,
    /// Queued jobs kept out of the engine: waiting on dependencies, and arrays.
    adm: Admission,
    /// Projects that may not start jobs now, with the reason their queued jobs show. Their
    /// queued jobs are kept out of the engine until the hold lifts.
    holds: BTreeMap<i64, String>,
    /// Something that changes balances or standing happened (an attempt ended, an award or
    /// an organisation changed): refresh the holds before the next pass.
    standing_due: bool,
    /// GPU time was charged since the compute estimate was last checked.
    compute_due: bool,
    /// GPU-milliseconds charged per (project, GPU model), and the last ledger row counted:
    /// kept as running totals because summing every attempt once a second grows with the
    /// centre's whole history.
    usage: BTreeMap<(i64, String), i64>,
    usage_cursor: i64,
    /// Notices known to be raised already: (kind, project, award).
    raised: BTreeSet<(String, i64, i64)>,
}

/// Queued jobs the engine does not get yet: those waiting on dependencies, and arrays, whose
/// own rows never reach it (their tasks do, once made into jobs).
#[derive(Default)]
struct Admission {
    /// Queued jobs whose dependencies have not all ended, kept out of the engine; in id order
    /// so that jobs released together reach the engine in submission order.
    held: BTreeMap<i64, Job>,
    /// Set when a job ended or was held since the last look at `held`.
    recheck_held: bool,
    /// Queued arrays: the controller makes their tasks into jobs (`materialise_arrays`).
    arrays: BTreeMap<i64, ArrayWatch>,
    /// The array of each task job not yet ended, to know which array to look at again.
    array_of: HashMap<i64, i64>,
    /// Arrays to look at on the next step: a task of theirs started or ended, or they are new.
    arrays_due: BTreeSet<i64>,
}

impl Admission {
    /// Takes in a queued job that is not held by its project: an array is watched (and waits
    /// for its dependencies like any job); anything else goes to `held` or the engine. Returns
    /// the job when the engine should get it.
    fn admit(&mut self, job: &JobRecord) -> Option<Job> {
        if let Some(array) = job.array_job_id {
            self.array_of.insert(job.id, array);
        }
        let j = Job {
            id: JobId(job.id as u64),
            spec: job.spec.clone(),
            submitted_at: Time(job.submitted_at),
        };
        let waits = !j.spec.dependencies.is_empty();
        if job.array.is_some() {
            self.arrays.insert(
                job.id,
                ArrayWatch {
                    project: job.project_id,
                    ready: !waits,
                    limit: job
                        .array
                        .as_deref()
                        .and_then(|a| haneul_model::ArraySpec::parse(a).ok())
                        .and_then(|a| a.max_running()),
                },
            );
            self.arrays_due.insert(job.id);
        }
        if waits {
            self.held.insert(job.id, j);
            self.recheck_held = true;
            return None;
        }
        (job.array.is_none()).then_some(j)
    }
}

pub struct Controller {
    store: Arc<dyn Store>,
    cfg: ControllerConfig,
    signals: Arc<Signals>,
    metrics: Arc<Metrics>,
    state: Option<Leading>,
    last_renew: Option<Ran>,
    last_lost_check: Option<Ran>,
    last_metrics: Option<Ran>,
    accounting: Arc<AccountingPolicy>,
    last_standing: Option<Ran>,
    last_compute: Option<Ran>,
    /// When the pending reasons were last published.
    last_reasons: Option<Instant>,
    clock: SharedClock,
    idle: Arc<crate::telemetry::IdlePolicy>,
    last_idle: Option<Ran>,
    last_prune: Option<Ran>,
    /// Jobs told their GPUs sit idle: job -> when (ms) the grace after the notice ends and
    /// the job is stopped if still idle.
    idle_noticed: BTreeMap<i64, i64>,
    /// New inventory arrived while rebuilds were being spaced out (see `may_rebuild`).
    inventory_due: bool,
    /// When the last rebuild ended and how long it took, both on the clock's monotonic scale:
    /// a test's manual clock then sees rebuilds take no time and never spaces them, so a
    /// stepped test does not depend on how fast the machine is.
    last_rebuild: Option<(Duration, Duration)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("engine: {0}")]
    Engine(#[from] SchedError),
}

impl Controller {
    pub fn new(
        store: Arc<dyn Store>,
        cfg: ControllerConfig,
        signals: Arc<Signals>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Controller {
            store,
            cfg,
            signals,
            metrics,
            state: None,
            last_renew: None,
            last_lost_check: None,
            last_metrics: None,
            accounting: Arc::default(),
            last_standing: None,
            last_compute: None,
            last_reasons: None,
            clock: Arc::new(SystemClock),
            idle: Arc::default(),
            last_idle: None,
            last_prune: None,
            idle_noticed: BTreeMap::new(),
            inventory_due: false,
            last_rebuild: None,
        }
    }

    /// The same controller under an idle policy (the default is off).
    pub fn with_idle(mut self, policy: Arc<crate::telemetry::IdlePolicy>) -> Self {
        self.idle = policy;
        self
    }

    /// The same controller on another clock than the system's (a test's manual one).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The same controller under other accounting rules than the defaults.
    pub fn with_accounting(mut self, policy: Arc<AccountingPolicy>) -> Self {
        self.accounting = policy;
        self
    }

    /// Runs until shutdown is signalled, then gives the lease up.
    pub async fn run(mut self) {
        let mut shutdown = self.signals.shutdown.subscribe();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(e) = self.step().await {
                tracing::warn!(error = %e, "controller step failed; rebuilding from the store");
                self.state = None;
                self.signals.stand_by();
            }
            let sleep = if self.state.is_some() {
                self.cfg.tick
            } else {
                self.cfg.lease_ttl / 4
            };
            tokio::select! {
                _ = self.signals.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
        if self.state.is_some() {
            let _ = self
                .store
                .release_lease("controller", &self.cfg.holder)
                .await;
        }
        self.signals.stand_by();
    }

    /// One round: keep (or take) the lease, catch the engine up, schedule, persist.
    pub async fn step(&mut self) -> Result<(), ControllerError> {
        let renew_every = self.cfg.lease_ttl / 3;
        let now = self.clock.now_ms();
        if self.state.is_none() || due(self.last_renew, renew_every, now) {
            let ttl = self.cfg.lease_ttl.as_millis() as i64;
            let epoch = self
                .store
                .acquire_lease("controller", &self.cfg.holder, ttl, now)
                .await?;
            self.last_renew = Ran::now(now);
            match epoch {
                None => {
                    if self.state.take().is_some() {
                        tracing::warn!("lost the controller lease; standing by");
                    }
                    self.signals.stand_by();
                    // The holder is `ID URL` when the leader advertises a URL (see
                    // `haneul_server::start`): clients of this standby are sent there.
                    let holder = self.store.lease_holder("controller", now).await?;
                    let url = holder.and_then(|h| Some(h.split_once(' ')?.1.to_string()));
                    *self.signals.leader_url.lock().expect("not poisoned") = url;
                    return Ok(());
                }
                Some(e) if self.state.as_ref().is_some_and(|s| s.epoch == e) => {}
                Some(e) => {
                    *self.signals.leader_url.lock().expect("not poisoned") = None;
                    tracing::info!(epoch = e, holder = %self.cfg.holder, "leading the controller");
                    self.rebuild(e).await?;
                    self.signals.leader.store(true, Ordering::SeqCst);
                }
            }
        }
        if due(self.last_lost_check, Duration::from_millis(500), now) {
            self.last_lost_check = Ran::now(now);
            let cutoff = now - self.cfg.node_timeout.as_millis() as i64;
            let lost = self.store.mark_lost_nodes(cutoff, now).await?;
            if !lost.is_empty() {
                tracing::warn!(
                    ?lost,
                    "nodes stopped heartbeating; their attempts are requeued"
                );
                self.signals.assignments_changed();
            }
            self.enforce_time_limits().await?;
        }
        self.materialise_arrays().await?;
        self.catch_up().await?;
        if self.inventory_due {
            return Ok(());
        }
        self.refresh_standing().await?;
        self.release_held().await?;
        self.schedule().await?;
        if self
            .state
            .as_ref()
            .is_some_and(|st| !st.adm.arrays_due.is_empty())
        {
            // Tasks to make on the next step: do not wait a tick for it.
            self.signals.wake.notify_one();
        }
        if due(self.last_idle, Duration::from_secs(1), now) {
            self.last_idle = Ran::now(now);
            self.enforce_idle().await?;
        }
        if due(self.last_prune, Duration::from_secs(600), now) {
            self.last_prune = Ran::now(now);
            let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            let done = self
                .store
                .downsample_gpu_minutes(
                    now.saturating_sub(ms(self.idle.series_retention)),
                    now.saturating_sub(ms(self.idle.hourly_retention)),
                )
                .await?;
            if done.minutes > 0 || done.hours_dropped > 0 {
                tracing::debug!(
                    minutes = done.minutes,
                    hours_dropped = done.hours_dropped,
                    "GPU series past retention: minutes folded into hours, old hours dropped"
                );
            }
        }
        if due(self.last_metrics, Duration::from_secs(2), now) {
            self.last_metrics = Ran::now(now);
            self.publish_metrics().await?;
        }
        Ok(())
    }

    /// Builds a fresh engine from a consistent snapshot: fleet, tenants, running work on its
    /// recorded placement, and the queue in submission order.
    async fn rebuild(&mut self, epoch: i64) -> Result<(), ControllerError> {
        let started = Instant::now();
        let started_mono = self.clock.monotonic();
        self.inventory_due = false;
        let snap = self.store.snapshot().await?;
        let now = self.clock.now_ms();
        let view = accounting::View::load(self.store.as_ref()).await?;
        let holds = view.holds(&self.accounting, now);
        let (fleet, tenants) = model_of(&snap, &view.award_quotas(now))?;
        let mut engine = Engine::new(&fleet, &tenants, Policy::clone(&self.cfg.policy))?;
        let mut live = HashMap::new();
        for (job, attempt) in &snap.running {
            let j = Job {
                id: JobId(job.id as u64),
                spec: job.spec.clone(),
                submitted_at: Time(job.submitted_at),
            };
            let since = Time(attempt.started_at.unwrap_or(attempt.created_at));
            match engine.restore_running(j, &attempt.placement, attempt.borrowing, since, Time(now))
            {
                Ok(()) => {
                    live.insert(
                        job.id,
                        Live {
                            attempt: attempt.id,
                        },
                    );
                }
                // Cannot happen unless the store holds overlapping placements; the attempt
                // still runs and its agents will report, but the engine does not count it.
                Err(e) => tracing::error!(job = job.id, error = %e, "cannot restore attempt"),
            }
        }
        let mut rejected = Vec::new();
        let mut admitting = Admission::default();
        for (job, _) in &snap.running {
            if let Some(array) = job.array_job_id {
                admitting.array_of.insert(job.id, array);
            }
        }
        let mut project_held: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for job in &snap.queued {
            if let Some(reason) = holds.get(&job.project_id) {
                if job.reason.as_deref() != Some(reason.as_str()) {
                    project_held
                        .entry(reason.as_str())
                        .or_default()
                        .push(job.id);
                }
                continue;
            }
            let Some(j) = admitting.admit(job) else {
                continue;
            };
            if let Err(e) = engine.submit(j, Time(now)) {
                rejected.push((job.id, e.to_string()));
            }
        }
        for (id, reason) in rejected {
            self.store.reject_job(id, &reason, now).await?;
        }
        for (reason, ids) in &project_held {
            self.store.hold_jobs(ids, Some(reason), now).await?;
        }
        let raised = self
            .store
            .list_notices()
            .await?
            .into_iter()
            .map(|n| (n.kind, n.project_id, n.award_id))
            .collect();
        let node_pool = snap
            .nodes
            .iter()
            .map(|n| (id32(n.id), (n.pool_id, n.gpu_model.to_string())))
            .collect();
        tracing::info!(
            nodes = snap.nodes.len(),
            queued = engine.queued_len(),
            running = engine.running_len(),
            ms = started.elapsed().as_millis() as u64,
            "engine rebuilt from the store"
        );
        self.state = Some(Leading {
            epoch,
            engine,
            cursor: snap.cursor,
            live,
            node_pool,
            stopping: HashMap::new(),
            adm: Admission {
                recheck_held: !admitting.held.is_empty(),
                ..admitting
            },
            holds,
            standing_due: false,
            compute_due: true,
            usage: BTreeMap::new(),
            usage_cursor: 0,
            raised,
        });
        let ended_mono = self.clock.monotonic();
        self.last_rebuild = Some((ended_mono, ended_mono.saturating_sub(started_mono)));
        Ok(())
    }

    /// Moves held jobs whose parents have all ended into the engine, and fails those with an
    /// `afterok` parent that ended other than succeeded (which emits their own `Dequeued`, so
    /// their dependants are looked at next).
    async fn release_held(&mut self) -> Result<(), ControllerError> {
        let Some(st) = self.state.as_mut() else {
            return Ok(());
        };
        if !st.adm.recheck_held {
            return Ok(());
        }
        st.adm.recheck_held = false;
        let parents: BTreeSet<i64> = st
            .adm
            .held
            .values()
            .flat_map(|j| j.spec.dependencies.iter().map(|d| d.job.0 as i64))
            .collect();
        if parents.is_empty() {
            return Ok(());
        }
        let parents: Vec<i64> = parents.into_iter().collect();
        let states: HashMap<i64, JobState> = self
            .store
            .get_jobs(&parents)
            .await?
            .into_iter()
            .map(|j| (j.id, j.state))
            .collect();
        let now = self.clock.now_ms();
        let mut release = Vec::new();
        let mut fail = Vec::new();
        for (&id, job) in &st.adm.held {
            match dependency_verdict(&job.spec.dependencies, &states) {
                Verdict::Wait => {}
                Verdict::Ready => release.push(id),
                Verdict::Never(reason) => fail.push((id, reason)),
            }
        }
        for (id, reason) in fail {
            st.adm.held.remove(&id);
            st.adm.arrays.remove(&id);
            self.store.reject_job(id, &reason, now).await?;
        }
        for id in release {
            let Some(job) = st.adm.held.remove(&id) else {
                continue;
            };
            // A held project's queued jobs come back through `refresh_standing` when the hold
            // lifts, and their dependencies are looked at again then.
            if st.holds.contains_key(&(job.spec.project.0 as i64)) {
                continue;
            }
            if let Some(w) = st.adm.arrays.get_mut(&id) {
                w.ready = true;
                st.adm.arrays_due.insert(id);
                continue;
            }
            match st.engine.submit(job, Time(now)) {
                Ok(()) | Err(SchedError::DuplicateJob(_)) => {}
                Err(e) => self.store.reject_job(id, &e.to_string(), now).await?,
            }
        }
        Ok(())
    }

    /// Whether a rebuild for new inventory may run now. A rebuild reads the whole fleet and
    /// queue, so while nodes keep registering (12,500 of them coming up together) rebuilding
    /// for each would leave the controller doing nothing else; rebuilds are spaced to at
    /// least four times the last one's length (at most 5 s), which keeps them under a fifth
    /// of its time. A rebuild after a quiet spell runs at once. While one waits, the controller
    /// takes no events and makes no decisions: an engine that does not know the new nodes
    /// would refuse a job that only they can hold as one that can never fit.
    fn may_rebuild(&self) -> bool {
        let now = self.clock.monotonic();
        self.last_rebuild.is_none_or(|(ended, took)| {
            now.saturating_sub(ended) >= (took * 4).min(Duration::from_secs(5))
        })
    }

    /// Applies every event after the cursor. A fleet change rebuilds the engine instead.
    async fn catch_up(&mut self) -> Result<(), ControllerError> {
        if self.inventory_due {
            if !self.may_rebuild() {
                return Ok(());
            }
            if let Some(epoch) = self.state.as_ref().map(|st| st.epoch) {
                self.rebuild(epoch).await?;
            }
        }
        loop {
            let Some(st) = self.state.as_mut() else {
                return Ok(());
            };
            let events = self.store.events_after(st.cursor, EVENTS_PAGE).await?;
            if events.is_empty() {
                return Ok(());
            }
            // A page shorter than asked for reached the end of the log: reading again would
            // find only what committed meanwhile, which the next step reads anyway (its writer
            // wakes the controller, or the tick comes). That read was a trip to the store per
            // step, two per submitted job.
            let last_page = (events.len() as i64) < EVENTS_PAGE;
            let now = Time(self.clock.now_ms());
            let mut rebuild = false;
            let mut stopping_nodes = BTreeSet::new();
            let mut submitted = Vec::new();
            let mut projects = Vec::new();
            for ev in &events {
                st.cursor = ev.seq;
                let job = ev.job_id.map(|j| JobId(j as u64));
                let ignore_gone = |r: Result<(), SchedError>| match r {
                    Ok(()) | Err(SchedError::UnknownJob(_)) => Ok(()),
                    Err(e) => Err(e),
                };
                match (ev.kind, job) {
                    (EventKind::Submitted, Some(_)) => submitted.push(ev.job_id.unwrap_or(0)),
                    (EventKind::Dequeued, Some(j)) => {
                        ignore_gone(st.engine.cancel(j, now))?;
                        st.live.remove(&(j.0 as i64));
                        st.adm.held.remove(&(j.0 as i64));
                        st.adm.recheck_held |= !st.adm.held.is_empty();
                        st.adm.arrays.remove(&(j.0 as i64));
                        if let Some(array) = st.adm.array_of.remove(&(j.0 as i64)) {
                            st.adm.arrays_due.insert(array);
                        }
                    }
                    (EventKind::Finished, Some(j)) => {
                        st.standing_due = true;
                        st.compute_due = true;
                        ignore_gone(st.engine.finish(j, now).or_else(|e| match e {
                            // Cancelled before the engine saw it start.
                            SchedError::WrongState { .. } => st.engine.cancel(j, now),
                            e => Err(e),
                        }))?;
                        st.live.remove(&(j.0 as i64));
                        st.stopping.remove(&(j.0 as i64));
                        st.adm.recheck_held |= !st.adm.held.is_empty();
                        st.adm.arrays.remove(&(j.0 as i64));
                        if let Some(array) = st.adm.array_of.remove(&(j.0 as i64)) {
                            st.adm.arrays_due.insert(array);
                        }
                    }
                    // A stop asked anywhere (a cancel at any server, this controller's own
                    // preemptions and limits): only the job's nodes look again.
                    (EventKind::StopRequested, Some(j)) => {
                        if let Some(p) = st.engine.placement(j) {
                            stopping_nodes.extend(p.nodes().map(|n| n.0 as i64));
                        }
                    }
                    (EventKind::Requeued, Some(j)) => {
                        st.standing_due = true;
                        st.compute_due = true;
                        ignore_gone(st.engine.requeue(j, now))?;
                        st.live.remove(&(j.0 as i64));
                        st.stopping.remove(&(j.0 as i64));
                    }
                    // A node's state changes in place; only new inventory needs a rebuild, which
                    // reads the whole queue and so is kept for rare events.
                    (EventKind::FleetChanged, _) => {
                        let state = match ev.detail.as_str() {
                            "lost" => Some(haneul_model::NodeState::Down),
                            "back" | "up" => Some(haneul_model::NodeState::Up),
                            "draining" => Some(haneul_model::NodeState::Draining),
                            _ => None,
                        };
                        match (ev.node_id, state) {
                            (Some(n), Some(state)) => {
                                if st
                                    .engine
                                    .set_node_state(NodeId(id32(n)), state, now)
                                    .is_err()
                                {
                                    rebuild = true;
                                }
                            }
                            _ => rebuild = true,
                        }
                    }
                    (EventKind::ProjectChanged, _) => {
                        st.standing_due = true;
                        projects.push(ev.detail.clone());
                    }
                    _ => {}
                }
            }
            let epoch = st.epoch;
            self.signals.nodes_changed(stopping_nodes);
            if rebuild {
                if self.may_rebuild() {
                    self.rebuild(epoch).await?;
                    continue;
                }
                // The rest of these events waits for the rebuild's snapshot, which holds it.
                self.inventory_due = true;
                return Ok(());
            }
            let Some(st) = self.state.as_mut() else {
                return Ok(());
            };
            for id in projects {
                let Ok(id) = id.parse::<i64>() else { continue };
                let p = self.store.get_project(id).await?;
                let awarded =
                    accounting::award_quotas(&self.store.award_balances(Some(id)).await?, now.0);
                let project = Project {
                    id: ProjectId(id32(p.id)),
                    org: OrgId(id32(p.org_id)),
                    name: p.name,
                    quotas: known_quotas(
                        with_award_quotas(p.quotas, awarded.get(&id)),
                        st.engine.gpu_models(),
                    ),
                    weight: p.weight.clamp(1, u32::MAX as i64) as u32,
                };
                st.engine.upsert_project(&project)?;
            }
            // Submissions are read back in one query: the event carries only the id.
            if submitted.is_empty() {
                if last_page {
                    return Ok(());
                }
                continue;
            }
            let mut held: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for job in self.store.get_jobs(&submitted).await? {
                if job.state != JobState::Queued {
                    continue;
                }
                if let Some(reason) = st.holds.get(&job.project_id) {
                    held.entry(reason.clone()).or_default().push(job.id);
                    continue;
                }
                let id = job.id;
                let Some(j) = st.adm.admit(&job) else {
                    continue;
                };
                match st.engine.submit(j, now) {
                    Ok(()) | Err(SchedError::DuplicateJob(_)) => {}
                    Err(e) => {
                        let reason = e.to_string();
                        self.store.reject_job(id, &reason, now.0).await?;
                    }
                }
            }
            for (reason, ids) in &held {
                self.store.hold_jobs(ids, Some(reason), now.0).await?;
            }
            if last_page {
                return Ok(());
            }
        }
    }

    /// Recomputes which projects are held (unverified or screened-out organisation, award
    /// spent, expired or not yet valid) after anything that can change it, and at least once a
    /// second since awards expire with time. A project that becomes held has its queued jobs
    /// taken out of the engine and marked with the reason; one released has them put back.
    /// Each change, and each new warning or compute notice, lands in the audit log.
    async fn refresh_standing(&mut self) -> Result<(), ControllerError> {
        let Some(st) = self.state.as_mut() else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let periodic = due(self.last_standing, Duration::from_secs(1), now);
        if !st.standing_due && !periodic {
            return Ok(());
        }
        st.standing_due = false;
        self.last_standing = Ran::now(now);
        let store = self.store.as_ref();
        let view = accounting::View::load(store).await?;
        let new = view.holds(&self.accounting, now);
        let mut notices = accounting::award_notices(&view, &self.accounting, now)
            .into_iter()
            .map(|(k, p, a, d)| (k.to_string(), p, a, d))
            .collect::<Vec<_>>();
        // The compute estimate aggregates every attempt, so it runs at most once a second.
        if st.compute_due && due(self.last_compute, Duration::from_secs(1), now) {
            st.compute_due = false;
            self.last_compute = Ran::now(now);
            let (charged, last) = store.usage_after(st.usage_cursor).await?;
            st.usage_cursor = last;
            for u in charged {
                *st.usage.entry((u.project_id, u.gpu_model)).or_default() += u.gpu_ms;
            }
            let usage: Vec<haneul_store::UsageRecord> = st
                .usage
                .iter()
                .map(
                    |((project_id, gpu_model), &gpu_ms)| haneul_store::UsageRecord {
                        project_id: *project_id,
                        gpu_model: gpu_model.clone(),
                        gpu_ms,
                    },
                )
                .collect();
            let threshold = self.accounting.compute_threshold;
            for (p, ops) in accounting::compute_estimates(&usage, &self.accounting) {
                if ops >= threshold {
                    let detail = serde_json::json!({
                        "operations": ops,
                        "threshold": threshold,
                        "utilisation": self.accounting.utilisation,
                    })
                    .to_string();
                    notices.push(("compute.threshold".into(), p, 0, detail));
                }
            }
        }
        for (kind, p, a, detail) in notices {
            let key = (kind, p, a);
            if st.raised.contains(&key) {
                continue;
            }
            if store.raise_notice(&key.0, p, a, &detail, now).await? {
                tracing::warn!(kind = %key.0, project = p, award = a, %detail, "notice raised");
            }
            st.raised.insert(key);
        }
        let controller = Actor::system("controller");
        for (&p, reason) in &new {
            if st.holds.get(&p) == Some(reason) {
                continue;
            }
            let queued = queued_jobs(store, p).await?;
            for j in &queued {
                let _ = st.engine.cancel(JobId(j.id as u64), Time(now));
            }
            // Its arrays make no tasks while it is held; they are taken in again on release.
            st.adm.arrays.retain(|_, w| w.project != p);
            let ids: Vec<i64> = queued.iter().map(|j| j.id).collect();
            store.hold_jobs(&ids, Some(reason), now).await?;
            let detail = serde_json::json!({"reason": reason, "queued_jobs": ids.len()});
            store
                .record_decision(
                    &controller,
                    "project.hold",
                    &format!("project/{p}"),
                    &detail.to_string(),
                    now,
                )
                .await?;
        }
        let released: Vec<i64> = st
            .holds
            .keys()
            .filter(|p| !new.contains_key(p))
            .copied()
            .collect();
        for p in released {
            let mut queued = queued_jobs(store, p).await?;
            queued.sort_by_key(|j| j.id);
            let ids: Vec<i64> = queued.iter().map(|j| j.id).collect();
            store.hold_jobs(&ids, None, now).await?;
            for job in queued {
                let id = job.id;
                let Some(j) = st.adm.admit(&job) else {
                    continue;
                };
                match st.engine.submit(j, Time(now)) {
                    Ok(()) | Err(SchedError::DuplicateJob(_)) => {}
                    Err(e) => store.reject_job(id, &e.to_string(), now).await?,
                }
            }
            let detail = serde_json::json!({"queued_jobs": ids.len()});
            store
                .record_decision(
                    &controller,
                    "project.release",
                    &format!("project/{p}"),
                    &detail.to_string(),
                    now,
                )
                .await?;
        }
        st.holds = new;
        Ok(())
    }

    /// Makes the next tasks of each array that is due into queued jobs, as its `%N` and
    /// [`ARRAY_WINDOW`] allow; they reach the engine through their `Submitted` events. An array
    /// whose every task has ended is ended by the store, and is no longer watched.
    async fn materialise_arrays(&mut self) -> Result<(), ControllerError> {
        let Some(st) = self.state.as_mut() else {
            return Ok(());
        };
        if st.adm.arrays_due.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        for id in std::mem::take(&mut st.adm.arrays_due) {
            let Some(w) = st.adm.arrays.get(&id).copied() else {
                continue;
            };
            if !w.ready || st.holds.contains_key(&w.project) {
                continue;
            }
            let got = self.store.materialise_array(id, ARRAY_WINDOW, now).await?;
            for t in &got.created {
                st.adm.array_of.insert(t.id, id);
            }
            if got.done {
                st.adm.arrays.remove(&id);
                st.adm.recheck_held |= !st.adm.held.is_empty();
            }
        }
        Ok(())
    }

    async fn schedule(&mut self) -> Result<(), ControllerError> {
        let Some(st) = self.state.as_mut() else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let t0 = Instant::now();
        let Decisions {
            starts,
            preemptions,
            ..
        } = st.engine.schedule(Time(now));
        self.metrics
            .schedule_pass
            .observe(t0.elapsed().as_secs_f64());
        // Every queued job's reason costs about 1 us (110 ms for 100,000 queued jobs in `haneul
        // bench engine`): published after a pass at most every REASONS_EVERY, so a burst of
        // submissions' passes does not pay for each.
        if self
            .last_reasons
            .is_none_or(|t| t.elapsed() >= REASONS_EVERY)
        {
            self.last_reasons = Some(Instant::now());
            self.signals.set_pending(pending_reasons(st));
        }
        let mut stopped: BTreeSet<i64> = BTreeSet::new();
        if !starts.is_empty() {
            let new: Vec<NewAttempt> = starts
                .iter()
                .map(|s| NewAttempt {
                    job_id: s.job.0 as i64,
                    placement: s.placement.clone(),
                    gpu_model: s.gpu_model.clone(),
                    borrowing: s.borrowing,
                })
                .collect();
            // Written in chunks so that a pass starting thousands of jobs does not hold the
            // single writer (and every submission behind it) for its whole length.
            let mut started = Vec::with_capacity(new.len());
            let mut skipped = Vec::new();
            for chunk in new.chunks(START_CHUNK) {
                match self
                    .store
                    .start_attempts(&self.cfg.holder, st.epoch, chunk.to_vec(), now)
                    .await
                {
                    Ok((a, s)) => {
                        started.extend(a);
                        skipped.extend(s);
                    }
                    Err(StoreError::NotLeader) => {
                        tracing::warn!("lease lost before the decisions were written; standing by");
                        self.state = None;
                        self.signals.stand_by();
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            for a in &started {
                st.live.insert(a.job_id, Live { attempt: a.id });
                // A task that starts leaves the queue: its array may put the next one there.
                if let Some(&array) = st.adm.array_of.get(&a.job_id) {
                    st.adm.arrays_due.insert(array);
                }
            }
            // Cancelled between the event we read and the commit: release what the engine took.
            for j in skipped {
                let _ = st.engine.cancel(JobId(j as u64), Time(now));
            }
            self.metrics.attempts_started.inc_by(started.len() as u64);
            self.signals.nodes_changed(
                started
                    .iter()
                    .flat_map(|a| a.placement.nodes())
                    .map(|n| n.0 as i64),
            );
        }
        for p in preemptions {
            let victim = p.victim.0 as i64;
            if st.stopping.contains_key(&victim) {
                continue;
            }
            let Some(live) = st.live.get(&victim) else {
                continue;
            };
            self.store
                .request_stop(live.attempt, StopReason::Preempt, p.kill_at.0, now)
                .await?;
            st.stopping.insert(victim, p.kill_at.0);
            if let Some(p) = st.engine.placement(p.victim) {
                stopped.extend(p.nodes().map(|n| n.0 as i64));
            }
        }
        // Only the victims' nodes look again: a stop woke every node's long poll once.
        self.signals.nodes_changed(stopped);
        Ok(())
    }

    async fn enforce_time_limits(&mut self) -> Result<(), ControllerError> {
        if self.state.is_none() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let overdue = self.store.overdue_attempts(now).await?;
        for a in &overdue {
            let grace = match self.store.get_job(a.job_id).await {
                Ok(j) => j.spec.grace.millis(),
                Err(_) => 0,
            };
            self.store
                .request_stop(a.id, StopReason::TimeLimit, now + grace, now)
                .await?;
        }
        self.signals.nodes_changed(
            overdue
                .iter()
                .flat_map(|a| a.placement.nodes())
                .map(|n| n.0 as i64),
        );
        Ok(())
    }

    /// The idle policy: a running job whose GPUs averaged under its class's threshold over
    /// its window gets a notice (once), and once the grace has passed with its GPUs still idle
    /// it is stopped with reason `idle`: the checkpoint signal first and the job's own grace
    /// before the kill, as for a preemption.
    async fn enforce_idle(&mut self) -> Result<(), ControllerError> {
        let result = self.idle_spells().await;
        // Owners read when their idle jobs will be stopped (API, portal, `haneul usage`).
        self.signals.telemetry.set_stops(self.idle_noticed.clone());
        result
    }

    async fn idle_spells(&mut self) -> Result<(), ControllerError> {
        let Some(st) = self.state.as_ref() else {
            // Not the leader: no stops to promise.
            self.idle_noticed.clear();
            return Ok(());
        };
        let live: BTreeSet<i64> = st.live.keys().copied().collect();
        self.signals.telemetry.retain(&live);
        self.idle_noticed.retain(|j, _| live.contains(j));
        if !self.idle.enabled {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let mut stopped: BTreeSet<i64> = BTreeSet::new();
        for job in self.signals.telemetry.jobs() {
            let Some(attempt) = st.live.get(&job).map(|l| l.attempt) else {
                continue;
            };
            if st.stopping.contains_key(&job) {
                continue;
            }
            let j = match self.store.get_job(job).await {
                Ok(j) => j,
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            if j.state != JobState::Running {
                continue;
            }
            let p = self.store.get_project(j.project_id).await?;
            let class = self.store.get_org(p.org_id).await?.class;
            let Some(limits) = self.idle.limits(&class, j.interactive) else {
                continue;
            };
            if !self.signals.telemetry.idle(job, now, &limits) {
                self.idle_noticed.remove(&job);
                continue;
            }
            match self.idle_noticed.get(&job) {
                None => {
                    let detail = format!(
                        "job {job}: its GPUs averaged under {}% for {} minutes; it will be \
                         stopped (reason idle) in {} minutes unless they get busy",
                        limits.threshold_pct,
                        limits.window.as_secs_f64() / 60.0,
                        limits.grace.as_secs_f64() / 60.0
                    );
                    self.store
                        .raise_notice(
                            &crate::telemetry::idle_notice_kind(job),
                            j.project_id,
                            0,
                            &detail,
                            now,
                        )
                        .await?;
                    tracing::info!(job, "idle GPUs: owner notified");
                    let grace = i64::try_from(limits.grace.as_millis()).unwrap_or(i64::MAX);
                    self.idle_noticed.insert(job, now.saturating_add(grace));
                }
                Some(&stop_at) => {
                    if now < stop_at {
                        continue;
                    }
                    tracing::info!(job, "idle GPUs past the notice's grace: stopping");
                    self.store
                        .request_stop(attempt, StopReason::Idle, now + j.spec.grace.millis(), now)
                        .await?;
                    if let Some(p) = st.engine.placement(JobId(job as u64)) {
                        stopped.extend(p.nodes().map(|n| n.0 as i64));
                    }
                }
            }
        }
        self.signals.nodes_changed(stopped);
        Ok(())
    }

    async fn publish_metrics(&mut self) -> Result<(), ControllerError> {
        let Some(st) = self.state.as_ref() else {
            return Ok(());
        };
        let queues = self.store.queue_lengths().await?;
        self.metrics.set_queue_lengths(&queues);
        let mut by_model_pool: BTreeMap<(String, i64), u64> = BTreeMap::new();
        for &job in st.live.keys() {
            let j = JobId(job as u64);
            let Some(placement) = st.engine.placement(j) else {
                continue;
            };
            for t in &placement.tasks {
                let Some((pool, model)) = st.node_pool.get(&t.node.0) else {
                    continue;
                };
                *by_model_pool.entry((model.clone(), *pool)).or_default() +=
                    t.gpus.len() as u64 * t.milli_per_gpu.get();
            }
        }
        self.metrics.set_allocation(&by_model_pool);
        Ok(())
    }
}

/// A project's quotas for the GPU models the fleet has. A quota may name a model before its
/// nodes arrive; the engine, which knows only present models, gets it at the rebuild that
/// follows their registration.
fn known_quotas(
    quotas: BTreeMap<haneul_model::GpuModel, haneul_model::Quota>,
    models: &[haneul_model::GpuModel],
) -> BTreeMap<haneul_model::GpuModel, haneul_model::Quota> {
    quotas
        .into_iter()
        .filter(|(m, _)| models.contains(m))
        .collect()
}

/// Queued jobs of one project, newest first, read in pages so that a deep queue is whole.
async fn queued_jobs(store: &dyn Store, project: i64) -> Result<Vec<JobRecord>, StoreError> {
    const PAGE: i64 = 10_000;
    let mut out: Vec<JobRecord> = Vec::new();
    loop {
        let page = store
            .list_jobs(&JobFilter {
                projects: Some(vec![project]),
                state: Some(JobState::Queued),
                before: out.last().map(|j| j.id),
                limit: PAGE,
            })
            .await?;
        let full = page.len() as i64 == PAGE;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// A project's quotas with the guarantees of its valid awards: an award's GPU quota raises the
/// guarantee on its model to at least that many GPUs.
fn with_award_quotas(
    mut quotas: BTreeMap<haneul_model::GpuModel, haneul_model::Quota>,
    awarded: Option<&BTreeMap<haneul_model::GpuModel, u64>>,
) -> BTreeMap<haneul_model::GpuModel, haneul_model::Quota> {
    for (model, &milli) in awarded.into_iter().flatten() {
        let q = quotas.entry(model.clone()).or_insert(haneul_model::Quota {
            guaranteed: haneul_model::MilliGpu(0),
            borrow_limit: None,
        });
        q.guaranteed = haneul_model::MilliGpu(q.guaranteed.get().max(milli));
    }
    quotas
}

/// The engine's view of a snapshot: fleet and tenants with model ids, projects' quotas raised
/// by their awards.
fn model_of(
    snap: &Snapshot,
    awarded: &BTreeMap<i64, BTreeMap<haneul_model::GpuModel, u64>>,
) -> Result<(Fleet, Tenants), ControllerError> {
    let pools = snap
        .pools
        .iter()
        .map(|p| Pool {
            id: PoolId(id32(p.id)),
            name: p.name.clone(),
            owner: p.owner.map(|o| OrgId(id32(o))),
            lending: p.lending,
        })
        .collect();
    let mut blocks: BTreeMap<i64, Block> = BTreeMap::new();
    let mut nodes = Vec::with_capacity(snap.nodes.len());
    for n in &snap.nodes {
        blocks.entry(n.block_id).or_insert_with(|| Block {
            id: BlockId(id32(n.block_id)),
            name: n.block.clone(),
            pool: PoolId(id32(n.pool_id)),
        });
        nodes.push(Node {
            id: NodeId(id32(n.id)),
            name: n.name.clone(),
            block: BlockId(id32(n.block_id)),
            gpu_model: n.gpu_model.clone(),
            gpus: n.gpus as u32,
            gpu_memory: MemMib(n.gpu_memory_mib.max(0) as u64),
            nvlink_domain: n.nvlink_domain as u32,
            cpu: MilliCpu(n.cpu_milli.max(0) as u64),
            memory: MemMib(n.memory_mib.max(0) as u64),
            labels: BTreeMap::new(),
            state: match n.state {
                haneul_store::NodeState::Up => haneul_model::NodeState::Up,
                haneul_store::NodeState::Draining => haneul_model::NodeState::Draining,
                haneul_store::NodeState::Down => haneul_model::NodeState::Down,
            },
        });
    }
    let fleet =
        Fleet::new(pools, blocks.into_values().collect(), nodes).map_err(SchedError::from)?;
    let models = fleet.gpu_models();
    let orgs = snap
        .orgs
        .iter()
        .map(|o| Organisation {
            id: OrgId(id32(o.id)),
            name: o.name.clone(),
            class: OrgClass::ALL
                .into_iter()
                .find(|c| c.as_str() == o.class)
                .unwrap_or_default(),
            country: o.country.clone(),
            parent: o.parent.map(|p| OrgId(id32(p))),
        })
        .collect();
    let projects = snap
        .projects
        .iter()
        .map(|p| Project {
            id: ProjectId(id32(p.id)),
            org: OrgId(id32(p.org_id)),
            name: p.name.clone(),
            quotas: known_quotas(
                with_award_quotas(p.quotas.clone(), awarded.get(&p.id)),
                &models,
            ),
            weight: p.weight.clamp(1, u32::MAX as i64) as u32,
        })
        .collect();
    let tenants = Tenants::new(orgs, projects).map_err(SchedError::from)?;
    Ok((fleet, tenants))
}

enum Verdict {
    Wait,
    Ready,
    /// Can never start: the reason it fails with.
    Never(String),
}

/// Whether a held job may start, given its parents' current states.
fn dependency_verdict(deps: &[Dependency], states: &HashMap<i64, JobState>) -> Verdict {
    let mut ready = true;
    for d in deps {
        let parent = d.job.0 as i64;
        let Some(&state) = states.get(&parent) else {
            return Verdict::Never(format!(
                "dependency {}:{parent}: no such job",
                d.kind.as_str()
            ));
        };
        if !state.is_terminal() {
            ready = false;
            continue;
        }
        if d.kind == DependencyKind::AfterOk && state != JobState::Succeeded {
            return Verdict::Never(format!(
                "dependency afterok:{parent} can never be met: job {parent} ended {state}"
            ));
        }
    }
    if ready { Verdict::Ready } else { Verdict::Wait }
}

#[cfg(test)]
mod dependency_tests {
    use super::*;

    fn dep(kind: DependencyKind, job: u64) -> Dependency {
        Dependency {
            kind,
            job: JobId(job),
        }
    }

    #[test]
    fn afterok_waits_then_starts_or_never() {
        let deps = [
            dep(DependencyKind::AfterOk, 1),
            dep(DependencyKind::AfterAny, 2),
        ];
        let mut states = HashMap::from([(1, JobState::Running), (2, JobState::Queued)]);
        assert!(matches!(dependency_verdict(&deps, &states), Verdict::Wait));
        states.insert(1, JobState::Succeeded);
        assert!(matches!(dependency_verdict(&deps, &states), Verdict::Wait));
        states.insert(2, JobState::Failed);
        assert!(matches!(dependency_verdict(&deps, &states), Verdict::Ready));
        states.insert(1, JobState::Cancelled);
        match dependency_verdict(&deps, &states) {
            Verdict::Never(r) => assert_eq!(
                r,
                "dependency afterok:1 can never be met: job 1 ended cancelled"
            ),
            _ => panic!("an afterok parent that was cancelled must fail the child"),
        }
        assert!(matches!(
            dependency_verdict(&deps, &HashMap::new()),
            Verdict::Never(_)
        ));
    }
}

#[cfg(test)]
mod published_tests {
    use super::*;
    use haneul_sched::{PendingReason, Waiting};

    fn priority(at: i64, ahead: u32, behind: Option<u64>, fair_share: bool) -> PendingReason {
        PendingReason {
            at: Time(at),
            waiting: Waiting::Priority {
                ahead,
                behind: behind.map(JobId),
                fair_share,
            },
        }
    }

    #[test]
    fn every_reason_reads_back_as_it_was_published() {
        let reasons = vec![
            // The head itself waits behind none; the jobs after it behind the head.
            (9, priority(5, 0, None, true)),
            (4, priority(5, 1, Some(9), true)),
            (
                7,
                PendingReason {
                    at: Time(5),
                    waiting: Waiting::Reclaiming { victims: 2 },
                },
            ),
            (2, priority(5, 2, Some(9), true)),
            // Unlike the rest in its time, its head or its order: kept whole.
            (11, priority(6, 3, Some(9), true)),
            (12, priority(5, 4, Some(8), true)),
            (13, priority(5, 5, Some(9), false)),
            (
                3,
                PendingReason {
                    at: Time::ZERO,
                    waiting: Waiting::Dependency { on: vec![JobId(1)] },
                },
            ),
        ];
        let mut p = Published::default();
        for (id, r) in reasons.clone() {
            p.push(id, r);
        }
        p.jobs.sort_unstable_by_key(|(id, _)| *id);
        for (id, r) in &reasons {
            assert_eq!(p.get(*id).as_ref(), Some(r), "job {id}");
        }
        assert_eq!(p.get(1), None);
        assert_eq!(p.get(8), None);
        // The three that share the first one's time, head and order are the compact ones.
        assert_eq!(p.others.len(), reasons.len() - 3);
    }

    #[test]
    fn jobs_waiting_for_the_same_whole_reason_share_it() {
        let full = |tasks_fit| PendingReason {
            at: Time(5),
            waiting: Waiting::Reclaiming { victims: tasks_fit },
        };
        let mut p = Published::default();
        // Two shapes interleaved, then a third, then the first again past the window.
        for id in 0..1000 {
            p.push(id, full(id as u32 % 2));
        }
        p.push(1000, full(7));
        for id in 1001..1001 + REASONS_MATCHED as i64 {
            p.push(id, full(100 + id as u32));
        }
        p.push(2000, full(0));
        p.jobs.sort_unstable_by_key(|(id, _)| *id);
        for id in 0..1000 {
            assert_eq!(p.get(id), Some(full(id as u32 % 2)), "job {id}");
        }
        assert_eq!(p.get(1000), Some(full(7)));
        assert_eq!(p.get(2000), Some(full(0)));
        // Two, one, the window's eight, and the first shape's again, too far back to be found.
        assert_eq!(p.others.len(), 2 + 1 + REASONS_MATCHED + 1);
    }

    #[test]
    fn a_compact_reason_costs_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<(i64, Slot)>(), 16);
    }
}
