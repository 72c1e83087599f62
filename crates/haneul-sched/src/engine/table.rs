//! The engine's job table: entries in one dense list, found by id through a small index.
//!
//! A hash map of whole entries is paid at its capacity (up to twice the jobs it holds, every
//! bucket touched as entries scatter over them) and twice over while it grows, when the old
//! and new tables live side by side. Here the index holds only a job's position (16 bytes a
//! bucket) and the list is paid for what it holds: a growing list is moved by the allocator
//! (remapped, for one this large) and its unused tail is never touched.

use super::JobEntry;
use haneul_model::JobId;
use rustc_hash::FxHashMap;
use std::ops::Index;

#[derive(Debug, Default)]
pub(super) struct JobTable {
    index: FxHashMap<JobId, u32>,
    entries: Vec<JobEntry>,
}

impl JobTable {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn contains_key(&self, job: &JobId) -> bool {
        self.index.contains_key(job)
    }

    pub fn get(&self, job: &JobId) -> Option<&JobEntry> {
        self.index.get(job).map(|&i| &self.entries[i as usize])
    }

    pub fn get_mut(&mut self, job: &JobId) -> Option<&mut JobEntry> {
        self.index.get(job).map(|&i| &mut self.entries[i as usize])
    }

    /// Adds an entry under its id (`entry.key.job`); the caller has checked it is new.
    pub fn insert(&mut self, entry: JobEntry) {
        let at = self.entries.len() as u32;
        let old = self.index.insert(entry.id(), at);
        debug_assert!(old.is_none(), "{} entered twice", entry.id());
        self.entries.push(entry);
    }

    pub fn remove(&mut self, job: &JobId) -> Option<JobEntry> {
        let at = self.index.remove(job)? as usize;
        let entry = self.entries.swap_remove(at);
        if let Some(moved) = self.entries.get(at) {
            self.index.insert(moved.id(), at as u32);
        }
        // A queue that drained gives its memory back; a quarter full, so that a queue going
        // up and down around one length does not reallocate on every turn.
        let cap = self.entries.capacity();
        if cap > 1024 && self.entries.len() < cap / 4 {
            self.entries.shrink_to(cap / 2);
            self.index.shrink_to(cap / 2);
        }
        Some(entry)
    }

    /// Entries in no meaningful order (but the same for the same calls): callers sort.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (&JobId, &JobEntry)> {
        self.entries.iter().map(|e| (&e.key.job, e))
    }

    pub fn values(&self) -> impl Iterator<Item = &JobEntry> {
        self.entries.iter()
    }
}

impl Index<&JobId> for JobTable {
    type Output = JobEntry;

    fn index(&self, job: &JobId) -> &JobEntry {
        self.get(job).expect("job in the engine's table")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ModelSet, Run};
    use crate::placement::TaskReq;
    use crate::queue::OrderKey;
    use haneul_model::{Span, Time};

    fn entry(id: u64) -> JobEntry {
        JobEntry {
            project: id as u32,
            shape: 0,
            key: OrderKey::new(None, Time(0), JobId(id)),
            req: TaskReq {
                gpus: 1,
                milli: 1000,
                cpu: 0,
                mem: 0,
                replicas: 1,
            },
            models: ModelSet(1),
            est: Span::from_secs(60),
            grace: Span::ZERO,
            run: Run::Queued { victims: 0 },
            tried: 0,
            preemptible: true,
            express: false,
            long: false,
        }
    }

    #[test]
    fn removing_moves_the_last_entry_and_keeps_every_id_found() {
        let mut t = JobTable::default();
        for id in 0..5000 {
            t.insert(entry(id));
        }
        // Remove from the front, the middle and the back; the rest must still be found.
        for id in (0..5000).filter(|id| id % 3 == 0) {
            let e = t.remove(&JobId(id)).expect("present");
            assert_eq!(e.id(), JobId(id));
        }
        assert!(t.remove(&JobId(0)).is_none());
        for id in 0..5000u64 {
            match t.get(&JobId(id)) {
                Some(e) => {
                    assert_ne!(id % 3, 0, "{id} was removed");
                    assert_eq!(e.id(), JobId(id));
                    assert_eq!(e.project, id as u32);
                }
                None => assert_eq!(id % 3, 0, "{id} went missing"),
            }
        }
        assert_eq!(t.len(), t.values().count());
        assert!(t.iter().all(|(j, e)| *j == e.id()));
    }

    #[test]
    fn a_drained_table_gives_its_memory_back() {
        let mut t = JobTable::default();
        for id in 0..100_000 {
            t.insert(entry(id));
        }
        let full = t.entries.capacity();
        for id in 0..99_990 {
            t.remove(&JobId(id));
        }
        assert_eq!(t.len(), 10);
        assert!(
            t.entries.capacity() <= full / 16,
            "{} of {full}",
            t.entries.capacity()
        );
        for id in 99_990..100_000 {
            assert_eq!(t[&JobId(id)].id(), JobId(id));
        }
    }
}
