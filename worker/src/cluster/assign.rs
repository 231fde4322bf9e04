//! The leader's assignment of connectors and tasks to workers.
//!
//! [`balance`] is pure: given who owns what now, the work that exists and the workers that can take
//! it, it returns a target where each worker's count differs from any other's by at most one
//! (balanced) and every unit that can stay where it is does (sticky). [`next_step`] turns that
//! target into the next assignment to publish without ever letting a unit run on two workers: a
//! unit moving off a live worker is first revoked, and only assigned to its new worker once the old
//! one has confirmed it stopped (incremental).

use std::collections::{BTreeMap, BTreeSet};

use super::raft::NodeId;

/// A balanced, sticky placement of `units` on `workers`.
pub fn balance<K: Ord + Clone>(
    current: &BTreeMap<K, NodeId>,
    units: &[K],
    workers: &BTreeSet<NodeId>,
) -> BTreeMap<K, NodeId> {
    let mut out = BTreeMap::new();
    if workers.is_empty() {
        return out;
    }
    let (base, extra) = (units.len() / workers.len(), units.len() % workers.len());

    let mut held: BTreeMap<NodeId, Vec<&K>> = workers.iter().map(|w| (*w, Vec::new())).collect();
    for unit in units {
        if let Some(owner) = current.get(unit)
            && let Some(list) = held.get_mut(owner)
        {
            list.push(unit);
        }
    }
    // Workers already holding the most get the `extra` larger quotas, so fewer units move.
    let mut by_held: Vec<NodeId> = workers.iter().copied().collect();
    by_held.sort_by_key(|w| (std::cmp::Reverse(held[w].len()), *w));
    let quota: BTreeMap<NodeId, usize> = by_held
        .iter()
        .enumerate()
        .map(|(i, w)| (*w, base + usize::from(i < extra)))
        .collect();

    let mut count: BTreeMap<NodeId, usize> = workers.iter().map(|w| (*w, 0)).collect();
    for (worker, list) in &held {
        for unit in list.iter().take(quota[worker]) {
            out.insert((*unit).clone(), *worker);
        }
        count.insert(*worker, list.len().min(quota[worker]));
    }
    for unit in units {
        if out.contains_key(unit) {
            continue;
        }
        let Some(worker) = workers
            .iter()
            .filter(|w| count[w] < quota[w])
            .min_by_key(|w| (count[w], **w))
            .copied()
        else {
            break;
        };
        out.insert(unit.clone(), worker);
        *count.entry(worker).or_default() += 1;
    }
    out
}

/// The next assignment on the way from `current` to `target`: units staying put and units whose
/// owner is gone go straight to their target; units leaving a live worker are revoked first.
pub fn next_step<K: Ord + Clone>(
    current: &BTreeMap<K, NodeId>,
    target: &BTreeMap<K, NodeId>,
    alive: &BTreeSet<NodeId>,
) -> BTreeMap<K, NodeId> {
    target
        .iter()
        .filter(|(unit, to)| match current.get(*unit) {
            Some(from) => from == *to || !alive.contains(from),
            None => true,
        })
        .map(|(u, w)| (u.clone(), *w))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn counts(a: &BTreeMap<u32, NodeId>) -> BTreeMap<NodeId, usize> {
        let mut c = BTreeMap::new();
        for w in a.values() {
            *c.entry(*w).or_default() += 1;
        }
        c
    }

    #[test]
    fn balanced_from_nothing() {
        let units: Vec<u32> = (0..7).collect();
        let a = balance(&BTreeMap::new(), &units, &workers(&[1, 2, 3]));
        assert_eq!(a.len(), 7);
        let c = counts(&a);
        assert_eq!(c.values().max().unwrap() - c.values().min().unwrap(), 1);
    }

    #[test]
    fn joining_worker_takes_only_its_share() {
        let units: Vec<u32> = (0..6).collect();
        let before = balance(&BTreeMap::new(), &units, &workers(&[1, 2, 3]));
        let after = balance(&before, &units, &workers(&[1, 2, 3, 4]));
        let moved = units.iter().filter(|u| before[u] != after[u]).count();
        assert_eq!(moved, 1, "6 units on 4 workers: only one must move");
        let c = counts(&after);
        assert!(c.values().all(|n| (1..=2).contains(n)), "{c:?}");
    }

    #[test]
    fn departed_worker_units_spread_and_others_stay() {
        let units: Vec<u32> = (0..6).collect();
        let before = balance(&BTreeMap::new(), &units, &workers(&[1, 2, 3]));
        let after = balance(&before, &units, &workers(&[1, 2]));
        for u in &units {
            if before[u] != 3 {
                assert_eq!(before[u], after[u], "unit {u} moved without reason");
            }
        }
        assert_eq!(counts(&after), BTreeMap::from([(1, 3), (2, 3)]));
    }

    #[test]
    fn moves_off_live_workers_are_revoked_first() {
        let current = BTreeMap::from([(0u32, 1), (1, 1), (2, 3)]);
        let target = BTreeMap::from([(0u32, 1), (1, 2), (2, 2)]);
        // Worker 3 is dead: its unit goes straight over; unit 1 leaves live worker 1 in two steps.
        let step = next_step(&current, &target, &workers(&[1, 2]));
        assert_eq!(step, BTreeMap::from([(0, 1), (2, 2)]));
        let step2 = next_step(&step, &target, &workers(&[1, 2]));
        assert_eq!(step2, target);
    }
}
