//! What a large gang would otherwise cost once per task: its placement read and parsed from
//! JSON and its peer list read row by row. A 1,250-node gang's attempt row holds a placement of
//! 1,250 tasks (about 74 KB of text), and every one of its nodes' polls and start reports reads
//! that row and the peer list again, so without these caches starting one gang is quadratic in
//! its size.
//!
//! The caches hold only what never changes for an attempt: the placement text is written once
//! when the attempt is made, and the peers are read once per attempt (a node that changes its
//! advertised address while a gang runs does not change where that gang's ranks were told to
//! meet). They are small and bounded, and a miss only costs what every read cost before.

use haneul_sched::Placement;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Placements shorter than this are parsed each time: parsing them costs less than the lookup.
pub(crate) const LARGE_PLACEMENT_BYTES: usize = 8 * 1024;
/// Large placements kept; gangs that large are few at any time.
const PLACEMENTS_KEPT: usize = 16;
/// Attempts whose peers are kept.
const PEERS_KEPT: usize = 256;
/// Gangs smaller than this read their peers each time.
pub(crate) const PEERS_CACHED_FROM: usize = 16;

/// Large placements by their exact text, process-wide: the text is the key (compared whole,
/// never by hash alone), so the same text parsed from any store gives the same placement.
static PLACEMENTS: Mutex<Vec<(Arc<str>, Arc<Placement>)>> = Mutex::new(Vec::new());

/// Parses an attempt's placement, from the cache when the same large text was parsed before.
/// Shared, not copied: every node of a large gang reads its attempt at each change of its
/// list, and a copy of a 1,250-task placement is 1,250 allocations.
pub(crate) fn placement(text: &str) -> Result<Arc<Placement>, serde_json::Error> {
    if text.len() < LARGE_PLACEMENT_BYTES {
        return serde_json::from_str(text).map(Arc::new);
    }
    let hit = {
        let kept = PLACEMENTS.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .find(|(t, _)| t.len() == text.len() && **t == *text)
            .map(|(_, p)| p.clone())
    };
    if let Some(p) = hit {
        return Ok(p);
    }
    let parsed: Arc<Placement> = Arc::new(serde_json::from_str(text)?);
    let mut kept = PLACEMENTS.lock().unwrap_or_else(|p| p.into_inner());
    if kept.len() >= PLACEMENTS_KEPT {
        kept.remove(0);
    }
    kept.push((Arc::from(text), parsed.clone()));
    Ok(parsed)
}

/// One store's values of attempts, by attempt id (ids are never reused in a database), at most
/// `KEPT` of them.
#[derive(Debug)]
pub(crate) struct AttemptCache<T, const KEPT: usize> {
    by_attempt: Mutex<BTreeMap<i64, Arc<T>>>,
}

impl<T, const KEPT: usize> Default for AttemptCache<T, KEPT> {
    fn default() -> Self {
        AttemptCache {
            by_attempt: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<T, const KEPT: usize> AttemptCache<T, KEPT> {
    pub(crate) fn get(&self, attempt: i64) -> Option<Arc<T>> {
        self.by_attempt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&attempt)
            .cloned()
    }

    pub(crate) fn put(&self, attempt: i64, value: Arc<T>) {
        let mut kept = self.by_attempt.lock().unwrap_or_else(|p| p.into_inner());
        kept.insert(attempt, value);
        // The oldest attempts go first: a gang still starting is among the newest.
        while kept.len() > KEPT {
            kept.pop_first();
        }
    }
}

/// Large gangs' peer lists.
pub(crate) type PeerCache = AttemptCache<Vec<String>, PEERS_KEPT>;
/// Large placements by attempt, so that a node's list need not read their text at all.
pub(crate) type PlacementCache = AttemptCache<Placement, PLACEMENTS_KEPT>;

#[cfg(test)]
mod tests {
    use super::*;
    use haneul_model::{MilliGpu, NodeId};
    use haneul_sched::TaskPlacement;

    fn gang(nodes: u32, first_gpu: u32) -> Placement {
        Placement {
            tasks: (0..nodes)
                .map(|n| TaskPlacement {
                    node: NodeId(n),
                    gpus: (first_gpu..first_gpu + 8).collect(),
                    milli_per_gpu: MilliGpu::ONE_GPU,
                })
                .collect(),
        }
    }

    #[test]
    fn a_cached_placement_is_the_one_its_text_says() {
        let a = gang(500, 0);
        let b = gang(500, 1);
        let (ta, tb) = (
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap(),
        );
        assert!(ta.len() >= LARGE_PLACEMENT_BYTES && ta.len() == tb.len());
        for _ in 0..3 {
            assert_eq!(*placement(&ta).unwrap(), a);
            assert_eq!(*placement(&tb).unwrap(), b);
        }
        assert!(placement(&ta[..ta.len() - 1]).is_err());
    }

    #[test]
    fn the_peer_cache_keeps_the_newest_attempts() {
        let c = PeerCache::default();
        for id in 0..(PEERS_KEPT as i64 + 10) {
            c.put(id, Arc::new(vec![format!("n{id}")]));
        }
        assert!(c.get(0).is_none());
        assert_eq!(
            c.get(PEERS_KEPT as i64 + 9).unwrap().as_slice(),
            ["n265".to_string()]
        );
    }
}
