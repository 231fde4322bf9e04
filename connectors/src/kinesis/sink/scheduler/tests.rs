use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn limits(max_records: usize) -> BatchLimits {
    BatchLimits {
        max_records,
        max_bytes: 1 << 20,
        linger: Duration::ZERO,
    }
}

fn scheduler(max_records: usize, retry_timeout: Option<Duration>) -> Scheduler {
    Scheduler::new(
        limits(max_records),
        Backoff::new(Duration::ZERO, Duration::ZERO),
        retry_timeout,
    )
}

/// A clock past every linger deadline (batches open at the real `Instant::now()`).
fn later() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

fn entry(partition: i32, offset: i64, key: &str) -> Entry {
    Entry::new(
        TopicPartition::new("t", partition),
        offset,
        Arc::from(key),
        vec![0; 10],
    )
}

#[test]
fn a_key_has_one_record_out_of_its_queue() {
    let mut s = scheduler(10, None);
    for offset in 0..3 {
        s.offer(entry(0, offset, "k"));
    }
    s.offer(entry(0, 3, "other"));
    let now = later();
    let first = s.next_batch(now).expect("lingered");
    let keys: Vec<_> = first.items.iter().map(|e| e.offset).collect();
    assert_eq!(keys, [0, 3], "one record of k, and the other key");
    assert!(
        s.next_batch(now).is_none(),
        "k is busy until offset 0 is done"
    );
    let current = Offsets::from([(TopicPartition::new("t", 0), 4)]);
    assert_eq!(s.safe_offsets(&current)[&TopicPartition::new("t", 0)], 0);
    s.complete(first, vec![Outcome::Accepted, Outcome::Accepted], now);
    let second = s.next_batch(now).expect("k's next record");
    assert_eq!(second.items[0].offset, 1);
    assert_eq!(s.safe_offsets(&current)[&TopicPartition::new("t", 0)], 1);
}

#[test]
fn a_refused_record_goes_again_before_the_next_of_its_key() {
    let mut s = scheduler(10, None);
    s.offer(entry(0, 0, "k"));
    s.offer(entry(0, 1, "k"));
    let now = later();
    let batch = s.next_batch(now).unwrap();
    let refused = ConnectError::retriable("ProvisionedThroughputExceededException");
    assert!(
        s.complete(batch, vec![Outcome::Refused(refused)], now)
            .is_empty()
    );
    let again = s.next_batch(now).unwrap();
    assert_eq!((again.items[0].offset, again.items[0].attempts), (0, 1));
}

#[test]
fn a_record_refused_past_the_budget_goes_to_the_error_policy() {
    let mut s = scheduler(10, Some(Duration::from_secs(1)));
    s.offer(entry(0, 0, "k"));
    s.offer(entry(0, 1, "k"));
    let start = later();
    let refused = || Outcome::Refused(ConnectError::retriable("throttled"));
    let batch = s.next_batch(start).unwrap();
    assert!(s.complete(batch, vec![refused()], start).is_empty());
    let later = start + Duration::from_secs(2);
    let batch = s.next_batch(later).unwrap();
    let rejected = s.complete(batch, vec![refused()], later);
    assert_eq!(rejected.len(), 1);
    assert!(!rejected[0].1.is_retriable());
    assert!(rejected[0].1.message().contains("errors.retry.timeout"));
    assert!(
        s.next_batch(later).is_none(),
        "k waits for the error policy"
    );
    let (gone, _) = rejected.into_iter().next().unwrap();
    s.dealt_with(gone);
    assert_eq!(s.next_batch(later).unwrap().items[0].offset, 1);
}

#[test]
fn forgetting_a_partition_keeps_the_others_in_order() {
    let mut s = scheduler(10, None);
    s.offer(entry(0, 0, "k"));
    s.offer(entry(1, 0, "k"));
    s.offer(entry(1, 1, "k"));
    s.offer(entry(0, 1, "j"));
    s.forget(&[TopicPartition::new("t", 0)]);
    let batch = s.next_batch(later()).unwrap();
    let got: Vec<_> = batch
        .items
        .iter()
        .map(|e| (e.origin.partition, e.offset))
        .collect();
    assert_eq!(got, [(1, 0)]);
    assert_eq!(s.held_records(), 2);
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Accept,
    Refuse,
    Unsent,
    Fail,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        6 => Just(Fate::Accept),
        2 => Just(Fate::Refuse),
        1 => Just(Fate::Unsent),
        1 => Just(Fate::Fail),
    ]
}

proptest! {
    /// However calls fail and in whatever order they complete: no call holds two records of a key,
    /// no two calls in flight share a key, each key's records are accepted in offer order, the
    /// safe offset never passes a record not done, and every record ends accepted or rejected.
    #[test]
    fn order_per_key_holds_whatever_fails(
        keys in proptest::collection::vec(0u8..6, 1..120),
        fates in proptest::collection::vec(fate(), 400),
        picks in proptest::collection::vec(any::<usize>(), 400),
        max_records in 1usize..8,
        max_in_flight in 1usize..4,
    ) {
        let mut s = scheduler(max_records, None);
        let tp = |i: usize| TopicPartition::new("t", (i % 2) as i32);
        let mut next_offset = [0i64; 2];
        let mut offered: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            let p = i % 2;
            let key = format!("k{k}");
            offered.entry(key.clone()).or_default().push((p as i32, next_offset[p]));
            s.offer(Entry::new(tp(i), next_offset[p], Arc::from(key.as_str()), vec![1; 4]));
            next_offset[p] += 1;
        }
        let current: Offsets = (0..2).map(|p| (tp(p), next_offset[p])).collect();
        let mut accepted: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
        let mut rejected: BTreeSet<(i32, i64)> = BTreeSet::new();
        let mut in_flight: Vec<Batch<Entry>> = Vec::new();
        let (mut f, mut step) = (fates.iter().cycle(), 0usize);
        let now = later();
        while s.held_records() > 0 {
            step += 1;
            prop_assert!(step < 100_000, "no progress");
            while in_flight.len() < max_in_flight {
                let Some(batch) = s.next_batch(now) else { break };
                let keys: BTreeSet<&str> = batch.items.iter().map(|e| &*e.key).collect();
                prop_assert_eq!(keys.len(), batch.items.len(), "two records of a key in a call");
                for other in &in_flight {
                    for e in &other.items {
                        prop_assert!(!keys.contains(&*e.key), "a key in two calls");
                    }
                }
                in_flight.push(batch);
            }
            prop_assert!(!in_flight.is_empty(), "records held but nothing to send");
            let done = in_flight.remove(picks[step % picks.len()] % in_flight.len());
            // Outcomes, then check the safe offsets against what is truly not done.
            let outcomes: Vec<Outcome> = done
                .items
                .iter()
                .map(|_| match f.next().unwrap() {
                    Fate::Accept => Outcome::Accepted,
                    Fate::Refuse => Outcome::Refused(ConnectError::retriable("throttled")),
                    Fate::Unsent => Outcome::Unsent(ConnectError::retriable("reset")),
                    Fate::Fail => Outcome::Failed(ConnectError::external("KMSAccessDenied")),
                })
                .collect();
            for (e, o) in done.items.iter().zip(&outcomes) {
                if matches!(o, Outcome::Accepted) {
                    accepted.entry(e.key.to_string()).or_default().push((e.origin.partition, e.offset));
                }
            }
            for (e, _) in s.complete(done, outcomes, now) {
                rejected.insert((e.origin.partition, e.offset));
                s.dealt_with(e);
            }
            let safe = s.safe_offsets(&current);
            for (key, list) in &offered {
                let got = accepted.get(key).map_or(0, Vec::len);
                let done_count = list.iter().filter(|c| rejected.contains(c)).count() + got;
                // Every record of a key not done yet is at or above the safe offset.
                for (p, o) in list.iter().skip(done_count) {
                    prop_assert!(safe[&tp(*p as usize)] <= *o, "safe offset passed {p}/{o}");
                }
            }
        }
        prop_assert_eq!(s.held_bytes(), 0);
        for (key, list) in &offered {
            let expected: Vec<(i32, i64)> =
                list.iter().copied().filter(|c| !rejected.contains(c)).collect();
            prop_assert_eq!(accepted.get(key).cloned().unwrap_or_default(), expected, "key {}", key);
        }
        prop_assert_eq!(s.safe_offsets(&current), current);
    }
}
