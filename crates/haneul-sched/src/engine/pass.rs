//! One scheduling pass: holds and reclaimers first, then each queue in fair-share order,
//! with reservations for blocked jobs, backfill behind them and preemption for guarantees.

use super::*;

impl Engine {
    /// Runs one scheduling pass at `now`.
    pub fn schedule(&mut self, now: Time) -> Decisions {
        self.advance(now);
        self.passes += 1;
        self.last_head = None;
        self.expire_holds();
        self.frag.refresh();
        if self.policy.ordering == Ordering::FairShare {
            // Only projects with queued work compete in this pass; the rest catch up when they
            // next start or end a job.
            let busy: Vec<usize> = self.busy_queues.iter().copied().collect();
            for q in busy {
                self.touch_usage(q as u32);
            }
        }
        let mut decisions = Decisions::default();
        let mut stats = PassStats::default();
        let mut reservations: Vec<ReservationPlan> = Vec::new();
        // Exclusions for a job that would still run at the start of the first `i` reservations.
        let mut failures = FailureMemo::default();
        let mut shape_closed = vec![false; self.shapes.keys.len()];
        let mut full_cursor: FxHashMap<usize, OrderKey> = FxHashMap::default();
        let mut shape_cursor: FxHashMap<(usize, u32), OrderKey> = FxHashMap::default();
        let backfill = self.policy.backfill && self.policy.skip_blocked;
        // Planning a preemption looks at every node of a model: bound the work of one pass.
        let mut preemption_plans = 0usize;
        let mut preemption_failed: rustc_hash::FxHashSet<(u32, u8)> = Default::default();
        let depth = if backfill {
            self.policy.reservations
        } else {
            0
        };
        // Jobs whose preemption victims have stopped go first, onto the nodes held for them.
        let ready: Vec<JobId> = self
            .holds
            .keys()
            .filter(|j| {
                matches!(
                    self.jobs.get(j).map(|e| &e.run),
                    Some(Run::Queued { victims: 0 })
                )
            })
            .copied()
            .collect();
        for job in ready {
            stats.visited += 1;
            if let Attempt::Started(start) =
                self.try_start(job, &[], &mut failures, &mut stats, false)
            {
                stats.started += 1;
                decisions.starts.push(start);
            }
        }
        let mut heap: BinaryHeap<Reverse<(Share, usize)>> = self
            .busy_queues
            .iter()
            .map(|&q| Reverse((Share(self.queue_key(q)), q)))
            .collect();

        // The sticky claim, the oldest job's reservation and the express lane go ahead of the
        // fair-share order. While a project is owed its guarantee they stand aside and the pass
        // is the plain one: ahead of the order they could start borrowed work on the capacity the
        // owed project's jobs are about to take, or that its reclaim has just freed, and its jobs
        // would wait for another round of preemptions (or longer) to get it back.
        let jumps = (self.policy.sticky_reservations
            || self.policy.reserve_oldest
            || (self.express.len() > 0 && self.policy.skip_blocked))
            && !self.guarantee_owed();
        let mut first: Vec<JobId> = Vec::new();
        if jumps && self.policy.sticky_reservations {
            for (j, _, _) in &self.last_reservations {
                if !first.contains(j)
                    && matches!(
                        self.jobs.get(j).map(|e| &e.run),
                        Some(Run::Queued { victims: 0 })
                    )
                {
                    first.push(*j);
                }
            }
        }
        if jumps
            && self.policy.reserve_oldest
            && let Some(job) = self.oldest_queued()
            && !first.contains(&job)
        {
            first.push(job);
        }
        for job in first {
            if reservations.len() >= depth {
                break;
            }
            stats.visited += 1;
            let outcome = self.try_start(job, &reservations, &mut failures, &mut stats, false);
            if !matches!(outcome, Attempt::Started(_)) {
                self.mark_tried(job);
            }
            match outcome {
                Attempt::Started(start) => {
                    stats.started += 1;
                    decisions.starts.push(start);
                }
                Attempt::NoRoom { .. }
                    if matches!(self.jobs[&job].run, Run::Queued { victims: 0 }) =>
                {
                    stats.reservation_plans += 1;
                    if let Some(mut plan) = self.plan_reservation(job, &reservations) {
                        plan.guaranteed = self.jobs[&job]
                            .models
                            .iter()
                            .any(|m| self.mode(&self.jobs[&job], m) == Some(Mode::Guaranteed));
                        decisions.reservations.push(self.reservation_of(job, &plan));
                        reservations.push(plan);
                    }
                }
                _ => {}
            }
        }
        if reservations.len() < depth {
            self.longest_first(&mut reservations, &mut failures, &mut stats, &mut decisions);
        }
        // The express lane goes once the reservations are made (capacity is short), so its jobs
        // backfill around them; before that every job tried fits and order matters little.
        let mut express_done = !jumps;
        let mut failed_after_reservations = 0usize;
        while let Some(Reverse((_, q))) = heap.pop() {
            if !express_done && reservations.len() >= depth {
                self.run_express(&reservations, &mut stats, &mut decisions);
                express_done = true;
            }
            if !reservations.is_empty() && failed_after_reservations >= self.policy.backfill_window
            {
                break;
            }
            let full_mode = !self.policy.skip_blocked || reservations.len() < depth;
            let cursor = full_cursor.get(&q).copied();
            let candidate = if full_mode {
                self.queues[q].first_after(cursor)
            } else {
                self.next_fitting(q, cursor, &mut shape_cursor, &mut shape_closed)
            };
            let Some(key) = candidate else {
                continue;
            };
            if full_mode {
                full_cursor.insert(q, key);
            } else {
                let shape = self.jobs[&key.job].shape;
                shape_cursor.insert((q, shape), key);
            }
            stats.visited += 1;
            let job = key.job;
            let outcome = self.try_start(job, &reservations, &mut failures, &mut stats, false);
            match outcome {
                Attempt::Started(start) => {
                    stats.started += 1;
                    decisions.starts.push(start);
                }
                Attempt::QuotaBlocked => {
                    self.mark_tried(job);
                    failed_after_reservations += !reservations.is_empty() as usize
                }
                Attempt::NoRoom { guaranteed_model } => {
                    self.mark_tried(job);
                    failed_after_reservations += !reservations.is_empty() as usize;
                    let waiting =
                        matches!(self.jobs[&job].run, Run::Queued { victims } if victims > 0);
                    let shape = self.jobs[&job].shape;
                    let preempted = if !waiting
                        && self.policy.preemption
                        && preemption_plans < MAX_PREEMPTION_PLANS_PER_PASS
                        && let Some(m) = guaranteed_model
                        && !preemption_failed.contains(&(shape, m))
                    {
                        preemption_plans += 1;
                        stats.preemption_plans += 1;
                        let plan = self.plan_preemption(job, m);
                        if plan.is_none() {
                            preemption_failed.insert((shape, m));
                        }
                        plan
                    } else {
                        None
                    };
                    if let Some(pre) = preempted {
                        decisions.preemptions.extend(pre);
                    } else if !self.policy.skip_blocked {
                        self.last_head = Some(job);
                        break;
                    } else if reservations.len() < depth
                        && !waiting
                        && !decisions.reservations.iter().any(|r| r.job == job)
                        && let Some(mut plan) = {
                            stats.reservation_plans += 1;
                            self.plan_reservation(job, &reservations)
                        }
                    {
                        plan.guaranteed = guaranteed_model.is_some();
                        decisions.reservations.push(self.reservation_of(job, &plan));
                        reservations.push(plan);
                    }
                }
            }
            heap.push(Reverse((Share(self.queue_key(q)), q)));
        }
        if !express_done {
            self.run_express(&reservations, &mut stats, &mut decisions);
        }
        // Projects below a guarantee may have work that no shape check let the loop reach: give
        // each its first waiting job a chance to reclaim, within the pass's preemption budget.
        if self.policy.preemption {
            let owed: Vec<usize> = self
                .busy_queues
                .iter()
                .copied()
                .filter(|&q| {
                    self.policy.ordering == Ordering::FairShare && {
                        let p = &self.projects[q];
                        p.alloc.iter().zip(&p.guarantee).any(|(a, g)| a < g)
                    }
                })
                .collect();
            for q in owed {
                if preemption_plans >= MAX_PREEMPTION_PLANS_PER_PASS {
                    break;
                }
                if self
                    .reclaim_backoff
                    .get(&(q as u32))
                    .is_some_and(|&t| t > self.now)
                {
                    continue;
                }
                // Plan for the project's owed jobs in order until one plan fails.
                let mut after: Option<OrderKey> = None;
                while preemption_plans < MAX_PREEMPTION_PLANS_PER_PASS {
                    let Some((key, job, m)) = self.next_reclaimer(q, after) else {
                        break;
                    };
                    after = Some(key);
                    let shape = self.jobs[&job].shape;
                    if preemption_failed.contains(&(shape, m)) {
                        break;
                    }
                    preemption_plans += 1;
                    stats.preemption_plans += 1;
                    match self.plan_preemption(job, m) {
                        Some(pre) => decisions.preemptions.extend(pre),
                        None => {
                            preemption_failed.insert((shape, m));
                            self.reclaim_backoff
                                .insert(q as u32, self.now + RECLAIM_BACKOFF);
                            break;
                        }
                    }
                }
            }
        }
        self.last_stats = stats;
        self.last_closed = shape_closed;
        self.last_reservation_starts = decisions
            .reservations
            .iter()
            .map(|r| (r.job, r.start_at))
            .collect();
        self.last_reservations = decisions
            .reservations
            .iter()
            .zip(reservations)
            .flat_map(|(d, r)| r.nodes.into_iter().map(move |(n, x)| (d.job, n, x)))
            .collect();
        decisions
    }

    /// `Policy::longest_first_alone`: when one project alone has queued work, fair share has
    /// nothing to decide, and what its order still sets is when that backlog ends. In queue order
    /// its longest job may start last and end about one longest job after the rest (W/G + L for
    /// whole-node work W on G GPUs, longest estimate L); longest first ends near max(L, W/G)
    /// (LPT). The gain is min(W/G, L), so the rule fires once W/G is at least
    /// `longest_first_depth_pct` of L; a shallower backlog starts soon in any order, and its jobs
    /// keep the queue order. The whole-node jobs are tried longest first until one does not fit,
    /// which gets the reservation; the rest of the pass goes on as usual. Stands aside while a
    /// guarantee is owed, as the other rules ahead of the order do.
    fn longest_first(
        &mut self,
        reservations: &mut Vec<ReservationPlan>,
        failures: &mut FailureMemo,
        stats: &mut PassStats,
        decisions: &mut Decisions,
    ) {
        if !self.policy.longest_first_alone
            || self.policy.ordering != Ordering::FairShare
            || self.busy_queues.len() != 1
        {
            return;
        }
        let Some(&q) = self.busy_queues.first() else {
            return;
        };
        let deep = self.queues[q]
            .long
            .first()
            .is_some_and(|&(Reverse(longest), _)| {
                self.queues[q].long_work * 100
                    >= longest as i128
                        * self.fleet_gpus as i128
                        * self.policy.longest_first_depth_pct as i128
            });
        if !deep || self.guarantee_owed() {
            return;
        }
        let depth = self.policy.reservations;
        let mut cursor: Option<(Reverse<i64>, OrderKey)> = None;
        let mut failed = 0usize;
        while reservations.len() < depth && failed < self.policy.backfill_window {
            let long = &self.queues[q].long;
            let next = match cursor {
                None => long.first().copied(),
                Some(c) => long
                    .range((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                    .next()
                    .copied(),
            };
            let Some(entry) = next else {
                break;
            };
            cursor = Some(entry);
            let job = entry.1.job;
            if !matches!(self.jobs[&job].run, Run::Queued { victims: 0 })
                || decisions.reservations.iter().any(|r| r.job == job)
            {
                continue;
            }
            stats.visited += 1;
            match self.try_start(job, reservations, failures, stats, false) {
                Attempt::Started(start) => {
                    stats.started += 1;
                    decisions.starts.push(start);
                }
                Attempt::QuotaBlocked => {
                    self.mark_tried(job);
                    failed += 1;
                }
                Attempt::NoRoom { guaranteed_model } => {
                    self.mark_tried(job);
                    failed += 1;
                    stats.reservation_plans += 1;
                    if let Some(mut plan) = self.plan_reservation(job, reservations) {
                        plan.guaranteed = guaranteed_model.is_some();
                        decisions.reservations.push(self.reservation_of(job, &plan));
                        reservations.push(plan);
                    }
                }
            }
        }
    }

    /// The express lane: its jobs in queue order, across projects, each shape until one of its
    /// jobs finds no room (capacity only shrinks during a pass, so the rest of that shape would
    /// not fit either).
    fn run_express(
        &mut self,
        reservations: &[ReservationPlan],
        stats: &mut PassStats,
        decisions: &mut Decisions,
    ) {
        // In strict order (no skipping of blocked jobs) nothing passes the head, tiny or not.
        if self.express.len() == 0 || !self.policy.skip_blocked {
            return;
        }
        // The lane fills the gaps beside running work: nodes wholly free stay for the fair-share
        // order, where whole-node jobs and gangs compete for them, so tiny jobs never break up a
        // drained node (`keep_whole`). Failures of this phase are remembered apart, since leaving
        // those nodes alone changes what a failure means.
        let mut failures = FailureMemo::default();
        let mut done: BTreeSet<u32> = BTreeSet::new();
        let mut cursor: BTreeMap<u32, OrderKey> = BTreeMap::new();
        let mut failed = 0usize;
        while failed < self.policy.backfill_window {
            let mut best: Option<(OrderKey, u32)> = None;
            for (&shape, set) in &self.express.by_shape {
                if done.contains(&shape) {
                    continue;
                }
                if !self.shape_may_fit(shape) {
                    done.insert(shape);
                    continue;
                }
                if let Some(k) = first_after(set, cursor.get(&shape).copied())
                    && best.is_none_or(|(b, _)| k < b)
                {
                    best = Some((k, shape));
                }
            }
            let Some((key, shape)) = best else {
                break;
            };
            cursor.insert(shape, key);
            stats.visited += 1;
            match self.try_start(key.job, reservations, &mut failures, stats, true) {
                Attempt::Started(start) => {
                    stats.started += 1;
                    decisions.starts.push(start);
                }
                Attempt::QuotaBlocked => failed += 1,
                Attempt::NoRoom { .. } => {
                    failed += 1;
                    done.insert(shape);
                }
            }
        }
    }

    /// Whether a project with queued work is owed part of its guarantee: below it on a model,
    /// with a queued GPU job that would run within it there. Reads each such project's queued
    /// shapes, not its jobs, so it costs the busy projects and their few shapes. It may say yes
    /// for a job that waits for its victims already or that no reclaim can serve; then the pass
    /// is only the plain one.
    fn guarantee_owed(&self) -> bool {
        let below = |p: &ProjectSlot| p.alloc.iter().zip(&p.guarantee).any(|(a, g)| a < g);
        if self.policy.ordering != Ordering::FairShare {
            // One queue for every project: which project's jobs wait is not at hand, so any
            // project below its guarantee counts.
            return self.projects.iter().any(below);
        }
        let fleet_models = match self.cluster.models.len() {
            64.. => u64::MAX,
            n => (1u64 << n) - 1,
        };
        self.busy_queues.iter().any(|&q| {
            let p = &self.projects[q];
            below(p)
                && self.queues[q].by_shape.keys().any(|&shape| {
                    let k = &self.shapes.keys[shape as usize];
                    let total = k.gpus as u64 * k.milli as u64 * k.replicas as u64;
                    let mut models = k.models & fleet_models;
                    while total > 0 && models != 0 {
                        let m = models.trailing_zeros() as usize;
                        models &= models - 1;
                        if p.alloc[m] + total <= p.guarantee[m] {
                            return true;
                        }
                    }
                    false
                })
        })
    }

    /// Notes that this pass tried `job` and left it queued, for its pending reason.
    fn mark_tried(&mut self, job: JobId) {
        if let Some(e) = self.jobs.get_mut(&job) {
            e.tried = self.passes;
        }
    }

    /// The next job of queue `q` after `after`, in queue order, that would run within its
    /// project's guarantee even counting the jobs ahead of it waiting for their preemptions, and
    /// has none in flight; with the model it would reclaim.
    ///
    /// It runs for every project below its guarantee in every pass, so it reads each job's size
    /// and models from its shape, kept next to its queue key: only a job that fits the guarantee
    /// is looked up in the job map (is it waiting for victims?). With a million queued jobs the
    /// map misses the cache on almost every look-up.
    pub(super) fn next_reclaimer(
        &self,
        q: usize,
        after: Option<OrderKey>,
    ) -> Option<(OrderKey, JobId, u8)> {
        let p = &self.projects[q];
        let fleet_models = match self.cluster.models.len() {
            64.. => u64::MAX,
            n => (1u64 << n) - 1,
        };
        let mut pending = vec![0u64; p.alloc.len()];
        for (key, &shape) in self.queues[q].all.iter().take(RECLAIM_SCAN) {
            let k = &self.shapes.keys[shape as usize];
            if k.gpus == 0 {
                // CPU-only work holds no GPU quota: nothing to reclaim.
                continue;
            }
            let total = k.gpus as u64 * k.milli as u64 * k.replicas as u64;
            // The job's models in index order, as `JobEntry::models` lists them.
            let mut models = k.models & fleet_models;
            let mut fits = None;
            while models != 0 {
                let m = models.trailing_zeros() as usize;
                models &= models - 1;
                if p.alloc[m] + pending[m] + total <= p.guarantee[m] {
                    fits = Some(m);
                    break;
                }
            }
            let Some(m) = fits else {
                continue;
            };
            let waiting = matches!(self.jobs[&key.job].run, Run::Queued { victims } if victims > 0)
                || self.holds.contains_key(&key.job);
            pending[m] += total;
            if !waiting && after.is_none_or(|a| *key > a) {
                return Some((*key, key.job, m as u8));
            }
        }
        None
    }

    /// The queued job that has waited longest among those that need whole nodes (a gang, or a
    /// task as large as the largest node): only drained capacity can take them, and fair-share
    /// order alone may never give a heavy user's such job a reservation.
    fn oldest_queued(&self) -> Option<JobId> {
        let node_gpus = self
            .cluster
            .nodes
            .iter()
            .map(|n| n.gpus())
            .max()
            .unwrap_or(0) as u32;
        let mut best: Option<OrderKey> = None;
        for &q in &self.busy_queues {
            for (&shape, set) in &self.queues[q].by_shape {
                let k = self.shapes.keys[shape as usize];
                if k.gpus == 0 || (k.replicas < 2 && k.gpus < node_gpus) {
                    continue;
                }
                // The first in queue order (priority class, then age) stands for the shape.
                if let Some(first) = set.first()
                    && best.is_none_or(|b| (first.submitted, first.job) < (b.submitted, b.job))
                {
                    best = Some(*first);
                }
            }
        }
        best.map(|k| k.job)
    }

    fn reservation_of(&self, job: JobId, plan: &ReservationPlan) -> Reservation {
        Reservation {
            job,
            start_at: plan.start_at,
            nodes: plan
                .nodes
                .iter()
                .map(|(n, _)| self.cluster.nodes[*n as usize].id)
                .collect(),
        }
    }

    /// The next job of queue `q` in a shape that may still fit, in queue order.
    fn next_fitting(
        &self,
        q: usize,
        full_cursor: Option<OrderKey>,
        shape_cursor: &mut FxHashMap<(usize, u32), OrderKey>,
        shape_closed: &mut Vec<bool>,
    ) -> Option<OrderKey> {
        if shape_closed.len() < self.shapes.keys.len() {
            shape_closed.resize(self.shapes.keys.len(), false);
        }
        let mut best: Option<OrderKey> = None;
        for (&shape, set) in &self.queues[q].by_shape {
            if shape_closed[shape as usize] {
                continue;
            }
            if !self.shape_may_fit(shape) {
                // Capacity only shrinks during a pass: this shape is done until the next one.
                shape_closed[shape as usize] = true;
                continue;
            }
            let after = match (full_cursor, shape_cursor.get(&(q, shape)).copied()) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if let Some(k) = first_after(set, after)
                && best.is_none_or(|b| k < b)
            {
                best = Some(k);
            }
        }
        best
    }

    /// Tries to start `job` now, leaving alone the resources of the reservations it would
    /// overlap, and every wholly free node when `keep_whole` (the express lane).
    fn try_start(
        &mut self,
        job: JobId,
        reservations: &[ReservationPlan],
        failures: &mut FailureMemo,
        stats: &mut PassStats,
        keep_whole: bool,
    ) -> Attempt {
        let e = &self.jobs[&job];
        let end_est = self.now + e.estimate();
        // Reservations that start before this job would end: it must leave their resources alone.
        let blocking: u64 = reservations
            .iter()
            .enumerate()
            .filter(|(_, r)| r.start_at < end_est)
            .fold(0, |mask, (i, _)| mask | (1 << i.min(63)));
        let project = &self.projects[e.project as usize];
        let mut guaranteed: Vec<u8> = Vec::new();
        let mut borrowing: Vec<u8> = Vec::new();
        for m in e.models.iter() {
            match self.mode(e, m) {
                Some(Mode::Guaranteed) => guaranteed.push(m),
                Some(Mode::Borrowing) => borrowing.push(m),
                None => {}
            }
        }
        if !e.models.is_empty() && guaranteed.is_empty() && borrowing.is_empty() {
            return Attempt::QuotaBlocked;
        }
        let guaranteed_model = guaranteed.first().copied();
        // Nodes held for this job are out of the capacity counts: a holder skips the quick check.
        let holder = self.holds.contains_key(&job);
        if !holder {
            guaranteed.retain(|&m| self.may_fit_now(&e.req, m));
            borrowing.retain(|&m| self.may_fit_now(&e.req, m));
        }
        let tried = guaranteed
            .iter()
            .chain(&borrowing)
            .fold(0u64, |mask, &m| mask | (1 << m));
        if !e.models.is_empty() && tried == 0 {
            return Attempt::NoRoom { guaranteed_model };
        }
        // A job no easier to place than one that already failed this pass fails too; a job
        // holding nodes from a preemption is the exception, those nodes are its alone.
        let guaranteed_mask = guaranteed.iter().fold(0u64, |mask, &m| mask | (1 << m));
        let memo_key = (e.shape, project.pool_sig, tried, guaranteed_mask);
        let profile = (e.req.cpu, e.req.mem, blocking);
        if !holder && failures.dominated(memo_key, profile) {
            return Attempt::NoRoom { guaranteed_model };
        }
        let exclusions_for = |mode: Mode| -> Option<Exclusions> {
            let mut excl = Exclusions::default();
            for (i, r) in reservations.iter().enumerate() {
                if blocking & (1 << i.min(63)) == 0 || (mode == Mode::Guaranteed && !r.guaranteed) {
                    continue;
                }
                for (node, res) in &r.nodes {
                    let x = excl.entry(*node).or_default();
                    x.gpu_mask |= res.gpu_mask;
                    x.cpu += res.cpu;
                    x.mem += res.mem;
                }
            }
            (!excl.is_empty()).then_some(excl)
        };
        let pools = project.pools.clone();
        let req = e.req;
        // Guaranteed capacity first, then borrowing. CPU-only work holds no GPU class quota and
        // counts as guaranteed.
        let attempts = if e.models.is_empty() {
            vec![(Vec::new(), Mode::Guaranteed)]
        } else {
            vec![(guaranteed, Mode::Guaranteed), (borrowing, Mode::Borrowing)]
        };
        let gpu_job = !e.models.is_empty();
        for (models, mode) in attempts {
            if gpu_job && models.is_empty() {
                continue;
            }
            stats.placement_attempts += 1;
            let excl = exclusions_for(mode);
            let ctx = PlaceCtx {
                max_scored: self.policy.max_scored_nodes,
                job,
                pools: &pools,
                exclusions: excl.as_ref(),
                keep_whole,
                ends: self
                    .policy
                    .align_ends
                    .then_some((self.busy_until.as_slice(), end_est)),
            };
            let placed = place(
                &self.cluster,
                &models,
                &req,
                &ctx,
                self.policy.placement,
                &mut self.frag,
            );
            if let Some((model, tasks)) = placed {
                return Attempt::Started(self.commit(job, model, mode, tasks));
            }
        }
        if !holder {
            failures.record(memo_key, profile);
        }
        Attempt::NoRoom { guaranteed_model }
    }

    pub(super) fn commit(
        &mut self,
        job: JobId,
        model: Option<u8>,
        mode: Mode,
        tasks: Vec<TaskSlot>,
    ) -> Start {
        // One look-up for all it reads: each costs a miss in a table of 100,000 jobs.
        let e = &self.jobs[&job];
        let (cpu, mem, total, project, key, shape) = (
            e.req.cpu,
            e.req.mem,
            e.total_milli(),
            e.project,
            e.key,
            e.shape,
        );
        let (express, long, preemptible) = (e.express, e.long(), e.preemptible);
        let end_est = self.now + e.estimate();
        for t in &tasks {
            self.cluster.allocate(t.node, &t.gpus, t.milli, cpu, mem);
            let on_node = &mut self.node_jobs[t.node as usize];
            if !on_node.contains(&job) {
                on_node.push(job);
            }
            let until = &mut self.busy_until[t.node as usize];
            *until = (*until).max(end_est);
        }
        self.touch_usage(project);
        let p = &mut self.projects[project as usize];
        p.running_milli += total;
        if let Some(m) = model {
            p.alloc[m as usize] += total;
        }
        let q = self.queue_of(project);
        self.queues[q].remove(&key, shape);
        if express {
            self.express.remove(&key, shape);
        }
        if let Some((est, gpus)) = long {
            self.queues[q].remove_long(key, est, gpus);
        }
        if self.queues[q].len() == 0 {
            self.busy_queues.remove(&q);
        }
        self.running_by_end.insert((end_est, job));
        self.clear_hold(job);
        let placement = self.to_placement(&tasks);
        let borrowing = mode == Mode::Borrowing;
        if preemptible {
            let key = (Reverse(self.now), first_node(&tasks), job);
            self.index_preemptible(model, total, key);
        }
        let e = self.jobs.get_mut(&job).expect("job exists");
        e.run = Run::Running(Box::new(Running {
            started: self.now,
            end_est,
            model,
            borrowing,
            tasks,
            preempting: None,
        }));
        Start {
            job,
            placement,
            gpu_model: model.map(|m| self.cluster.models[m as usize].clone()),
            borrowing,
        }
    }
}

/// Placements that failed in this pass, by (shape, eligible pools, models tried), kept as the
/// least demanding (CPU, memory, reservations to respect) profiles. Capacity only shrinks during a
/// pass, so a job at least as demanding as a failed one can not fit either.
#[derive(Default)]
struct FailureMemo {
    failed: FxHashMap<MemoKey, Vec<Profile>>,
}

/// (shape, eligible pools, models tried, of which guaranteed).
type MemoKey = (u32, u64, u64, u64);
/// (CPU, memory, reservations to respect as a bit set).
type Profile = (u64, u64, u64);

fn at_most(a: Profile, b: Profile) -> bool {
    a.0 <= b.0 && a.1 <= b.1 && a.2 & !b.2 == 0
}

impl FailureMemo {
    fn dominated(&self, key: MemoKey, p: Profile) -> bool {
        self.failed
            .get(&key)
            .is_some_and(|v| v.iter().any(|&f| at_most(f, p)))
    }

    fn record(&mut self, key: MemoKey, p: Profile) {
        let v = self.failed.entry(key).or_default();
        v.retain(|&f| !at_most(p, f));
        v.push(p);
    }
}

enum Attempt {
    Started(Start),
    QuotaBlocked,
    NoRoom { guaranteed_model: Option<u8> },
}
