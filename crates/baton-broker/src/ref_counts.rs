//! How many stored rows refer to each stored message, which the disk
//! store's writer keeps so it can delete a message once nothing refers to
//! it.
//!
//! Message sequences come in dense runs (each opening of the store numbers
//! its messages on from its own base), so the counts are kept in runs of
//! plain integers indexed by sequence: 4 bytes a message, against about 36
//! in a hash map. A deep backlog of ten million messages costs 40 MB here.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// Marks a sequence in a run that is not a stored message.
const ABSENT: u32 = u32::MAX;

/// The longest gap in sequences filled inside a run; a larger jump (a new
/// opening's range) starts a new run.
const MAX_GAP: u64 = 4096;

/// Reference counts of stored messages; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct RefCounts {
    /// (sequence of the first slot, counts), in increasing sequence order.
    runs: Vec<(u64, VecDeque<u32>)>,
    /// Stored messages counted.
    len: usize,
}

impl RefCounts {
    /// Counts of `seqs` (stored messages, in increasing order), all zero.
    pub fn from_sorted(seqs: impl IntoIterator<Item = u64>) -> Self {
        let mut counts = Self::default();
        for seq in seqs {
            counts.insert(seq);
        }
        counts
    }

    /// Stored messages counted.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Starts counting a newly stored message `seq`, at zero. Sequences
    /// arrive in increasing order; one that does not is counted in a run
    /// of its own.
    pub fn insert(&mut self, seq: u64) {
        if let Some(slot) = self.slot_mut(seq) {
            let was_absent = *slot == ABSENT;
            *slot = 0;
            if was_absent {
                self.len += 1;
            }
            return;
        }
        self.len += 1;
        if let Some((base, counts)) = self.runs.last_mut() {
            let end = *base + counts.len() as u64;
            if seq >= end && seq - end <= MAX_GAP {
                counts.extend(std::iter::repeat_n(ABSENT, (seq - end) as usize));
                counts.push_back(0);
                return;
            }
        }
        let at = self.runs.partition_point(|(base, _)| *base < seq);
        self.runs.insert(at, (seq, VecDeque::from([0])));
    }

    /// The count of the stored message `seq`, if it is one.
    pub fn get(&self, seq: u64) -> Option<u32> {
        let (base, counts) = self.run_of(seq)?;
        let count = *counts.get(usize::try_from(seq - base).ok()?)?;
        (count != ABSENT).then_some(count)
    }

    /// Adds a reference to `seq`, if it is a stored message.
    pub fn hold(&mut self, seq: u64) {
        if let Some(count) = self.slot_mut(seq).filter(|c| **c != ABSENT) {
            *count = count.saturating_add(1).min(ABSENT - 1);
        }
    }

    /// Drops a reference to `seq`; true when none is left.
    pub fn release(&mut self, seq: u64) -> bool {
        match self.slot_mut(seq).filter(|c| **c != ABSENT) {
            Some(count) => {
                *count = count.saturating_sub(1);
                *count == 0
            }
            None => false,
        }
    }

    /// Stops counting `seq` (its row is deleted).
    pub fn remove(&mut self, seq: u64) {
        let Some(index) = self.runs.iter().rposition(|(base, _)| *base <= seq) else {
            return;
        };
        let Some((base, counts)) = self.runs.get_mut(index) else {
            return;
        };
        let Some(slot) = usize::try_from(seq - *base)
            .ok()
            .and_then(|at| counts.get_mut(at))
        else {
            return;
        };
        if *slot != ABSENT {
            *slot = ABSENT;
            self.len -= 1;
        }
        // Settled messages leave from the front (the oldest go first), so
        // the run shrinks as its backlog drains.
        while counts.front() == Some(&ABSENT) {
            counts.pop_front();
            *base += 1;
        }
        while counts.back() == Some(&ABSENT) {
            counts.pop_back();
        }
        if counts.is_empty() {
            self.runs.remove(index);
        }
    }

    /// Takes in the counts of `earlier`, whose messages all come before
    /// every message counted here.
    fn prepend(&mut self, mut earlier: RefCounts) {
        earlier.runs.append(&mut self.runs);
        self.runs = earlier.runs;
        self.len += earlier.len;
    }

    /// Adds `delta` to the count of `seq`, if it is a stored message (a
    /// count does not go below zero).
    fn add(&mut self, seq: u64, delta: i64) {
        if let Some(count) = self.slot_mut(seq).filter(|c| **c != ABSENT) {
            let sum = i64::from(*count).saturating_add(delta);
            *count = u32::try_from(sum.clamp(0, i64::from(ABSENT - 1))).unwrap_or(0);
        }
    }

    /// The stored messages nothing refers to.
    fn unreferenced(&self) -> Vec<u64> {
        let mut seqs = Vec::new();
        for (base, counts) in &self.runs {
            for (at, count) in counts.iter().enumerate() {
                if *count == 0 {
                    seqs.push(base + at as u64);
                }
            }
        }
        seqs
    }

    fn run_of(&self, seq: u64) -> Option<(u64, &VecDeque<u32>)> {
        let index = self.runs.partition_point(|(base, _)| *base <= seq);
        let (base, counts) = self.runs.get(index.checked_sub(1)?)?;
        Some((*base, counts))
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut u32> {
        let index = self.runs.partition_point(|(base, _)| *base <= seq);
        let (base, counts) = self.runs.get_mut(index.checked_sub(1)?)?;
        let at = usize::try_from(seq - *base).ok()?;
        counts.get_mut(at)
    }
}

/// The writer's reference counts, while the messages stored by earlier
/// openings may not be counted yet.
///
/// Counting them reads every stored message and every row that refers to
/// one, so it runs in the background once the server is serving, over the
/// database as it was when the store was opened. Until those counts arrive,
/// changes to the counts of earlier messages are kept as deltas and none of
/// them is deleted; messages stored since the opening (sequences from
/// `base` on) are counted from the start.
#[derive(Debug)]
pub(crate) struct MessageRefs {
    /// The first sequence of this opening.
    base: u64,
    counts: RefCounts,
    /// Changes to earlier messages' counts since the opening, until their
    /// counts arrive (`None` from then on).
    pending: Option<FxHashMap<u64, i64>>,
}

impl MessageRefs {
    /// Counts for an opening whose messages start at `base`; the earlier
    /// ones wait for [`Self::adopt`].
    pub fn new(base: u64) -> Self {
        Self {
            base,
            counts: RefCounts::default(),
            pending: Some(FxHashMap::default()),
        }
    }

    /// The pending delta of `seq`, when it is an earlier message whose
    /// count has not arrived.
    fn pending(&mut self, seq: u64) -> Option<&mut i64> {
        if seq >= self.base {
            return None;
        }
        Some(self.pending.as_mut()?.entry(seq).or_default())
    }

    /// Starts counting a newly stored message `seq`, at zero.
    pub fn insert(&mut self, seq: u64) {
        self.counts.insert(seq);
    }

    /// Adds a reference to `seq`.
    pub fn hold(&mut self, seq: u64) {
        match self.pending(seq) {
            Some(delta) => *delta += 1,
            None => self.counts.hold(seq),
        }
    }

    /// Drops a reference to `seq`; true when none is left (never for an
    /// earlier message whose count has not arrived).
    pub fn release(&mut self, seq: u64) -> bool {
        match self.pending(seq) {
            Some(delta) => {
                *delta -= 1;
                false
            }
            None => self.counts.release(seq),
        }
    }

    /// The count of the stored message `seq`, if known.
    pub fn get(&self, seq: u64) -> Option<u32> {
        self.counts.get(seq)
    }

    /// Stops counting `seq` (its row is deleted).
    pub fn remove(&mut self, seq: u64) {
        self.counts.remove(seq);
    }

    /// Gives up on the earlier messages' counts (counting them failed):
    /// the changes kept for them go, and none of them is deleted from now
    /// on (the next opening counts them again).
    pub fn forget_earlier(&mut self) {
        self.pending = None;
    }

    /// Takes the counts of the earlier messages, as they were at the
    /// opening, and applies the changes since. The messages nothing refers
    /// to any more, to delete. Counts that arrive twice are ignored.
    pub fn adopt(&mut self, earlier: RefCounts) -> Vec<u64> {
        let Some(pending) = self.pending.take() else {
            return Vec::new();
        };
        let mut unreferenced = earlier.unreferenced();
        self.counts.prepend(earlier);
        for (seq, delta) in pending {
            self.counts.add(seq, delta);
            unreferenced.push(seq);
        }
        unreferenced.sort_unstable();
        unreferenced.dedup();
        unreferenced.retain(|seq| self.counts.get(*seq) == Some(0));
        unreferenced
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// A new message, this far after the last one (0: the next).
        Insert(u64),
        Hold(usize),
        Release(usize),
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => prop_oneof![Just(0u64), Just(1), 0..10_000u64].prop_map(Op::Insert),
            3 => any::<usize>().prop_map(Op::Hold),
            3 => any::<usize>().prop_map(Op::Release),
            2 => any::<usize>().prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// The runs answer as a hash map of counts does.
        #[test]
        fn counts_as_a_map_does(ops in prop::collection::vec(op(), 1..300)) {
            let mut counts = RefCounts::default();
            let mut model: HashMap<u64, u32> = HashMap::new();
            let mut seqs: Vec<u64> = Vec::new();
            let mut next = 1u64;
            for op in ops {
                let pick = |i: usize| seqs.get(i % seqs.len().max(1)).copied();
                match op {
                    Op::Insert(gap) => {
                        next += gap;
                        counts.insert(next);
                        model.insert(next, 0);
                        seqs.push(next);
                        next += 1;
                    }
                    Op::Hold(i) => if let Some(seq) = pick(i) {
                        counts.hold(seq);
                        if let Some(c) = model.get_mut(&seq) { *c += 1; }
                    },
                    Op::Release(i) => if let Some(seq) = pick(i) {
                        let zero = counts.release(seq);
                        let expected = model.get_mut(&seq).map(|c| { *c = c.saturating_sub(1); *c == 0 });
                        prop_assert_eq!(zero, expected.unwrap_or(false));
                    },
                    Op::Remove(i) => if let Some(seq) = pick(i) {
                        counts.remove(seq);
                        model.remove(&seq);
                    },
                }
                prop_assert_eq!(counts.len(), model.len());
                for seq in &seqs {
                    prop_assert_eq!(counts.get(*seq), model.get(seq).copied());
                }
            }
        }
    }

    /// One hold or release of `seq` against the model (`counted`: the
    /// earlier messages' counts have arrived).
    fn deferred_step(
        refs: &mut MessageRefs,
        model: &mut HashMap<u64, i64>,
        deleted: &mut Vec<u64>,
        seq: u64,
        hold: bool,
        counted: bool,
    ) -> Result<(), TestCaseError> {
        let Some(count) = model.get_mut(&seq) else {
            return Ok(());
        };
        if hold {
            refs.hold(seq);
            *count += 1;
        } else if *count > 0 {
            let zero = refs.release(seq);
            *count -= 1;
            let expect_zero = *count == 0 && (counted || seq >= 1 << 40);
            prop_assert_eq!(zero, expect_zero);
            if zero {
                refs.remove(seq);
                model.remove(&seq);
                deleted.push(seq);
            }
        }
        Ok(())
    }

    proptest! {
        /// Counts kept as deltas until the earlier messages' counts arrive
        /// end up where counting everything from the start would: the
        /// same counts, and every message nothing refers to any more is
        /// reported for deletion once, when it can be.
        #[test]
        fn deferred_counts_end_as_full_counts_do(
            earlier in prop::collection::vec(0..4u32, 1..40),
            before in prop::collection::vec((any::<bool>(), any::<usize>()), 0..80),
            after in prop::collection::vec((any::<bool>(), any::<usize>()), 0..80),
        ) {
            let base = 1u64 << 40;
            let seqs: Vec<u64> = (1..=earlier.len() as u64).chain(base..base + 10).collect();
            let mut model: HashMap<u64, i64> = HashMap::new();
            let mut at_opening = RefCounts::from_sorted(1..=earlier.len() as u64);
            for (seq, count) in (1u64..).zip(&earlier) {
                for _ in 0..*count {
                    at_opening.hold(seq);
                }
                model.insert(seq, i64::from(*count));
            }
            let mut refs = MessageRefs::new(base);
            for seq in base..base + 10 {
                refs.insert(seq);
                refs.hold(seq);
                model.insert(seq, 1);
            }
            let mut deleted: Vec<u64> = Vec::new();
            for (hold, pick) in before {
                deferred_step(&mut refs, &mut model, &mut deleted, seqs[pick % seqs.len()], hold, false)?;
            }
            for seq in refs.adopt(at_opening) {
                prop_assert_eq!(model.get(&seq).copied(), Some(0));
                refs.remove(seq);
                model.remove(&seq);
                deleted.push(seq);
            }
            prop_assert!(model.values().all(|count| *count > 0));
            for (hold, pick) in after {
                deferred_step(&mut refs, &mut model, &mut deleted, seqs[pick % seqs.len()], hold, true)?;
            }
            for (seq, count) in &model {
                prop_assert_eq!(refs.get(*seq).map(i64::from), Some(*count));
            }
            for seq in &deleted {
                prop_assert_eq!(refs.get(*seq), None);
            }
            let unique: std::collections::HashSet<&u64> = deleted.iter().collect();
            prop_assert_eq!(unique.len(), deleted.len());
        }
    }

    #[test]
    fn counts_given_up_delete_no_earlier_message() {
        let base = 1 << 40;
        let mut refs = MessageRefs::new(base);
        refs.insert(base);
        refs.hold(base);
        refs.hold(7);
        refs.forget_earlier();
        assert!(
            !refs.release(7),
            "an earlier message is never reported free"
        );
        assert!(refs.pending.is_none(), "no changes are kept for them");
        assert!(refs.release(base), "this opening's messages still are");
        assert!(refs.adopt(RefCounts::from_sorted([7])).is_empty());
    }

    #[test]
    fn a_drained_run_goes_and_a_new_range_starts_its_own() {
        let mut counts = RefCounts::from_sorted(1..=3);
        counts.insert(1 << 40);
        assert_eq!(counts.runs.len(), 2);
        for seq in 1..=3 {
            counts.remove(seq);
        }
        assert_eq!(counts.runs.len(), 1);
        assert_eq!(counts.get(1 << 40), Some(0));
        assert_eq!(counts.get(2), None);
        counts.hold(1 << 40);
        assert!(!counts.release(2));
        assert!(counts.release(1 << 40));
    }
}
