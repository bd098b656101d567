//! Client-side flow control and ordering keys, as pure bookkeeping.
//!
//! Received messages enter in arrival order. A message with an ordering key
//! waits while an earlier message of its key is in flight (released and not
//! yet finished); the others wait in one FIFO queue for flow control, which
//! lets a message through while the messages and bytes in flight stay
//! within the limits (a single message larger than the byte limit still
//! goes through when nothing else is in flight, so it cannot block the
//! subscription forever).

use std::collections::{HashMap, VecDeque};

struct Entry<T> {
    item: T,
    size: usize,
    key: Option<String>,
}

/// An item released by [`Scheduler::next_released`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Released<T> {
    pub item: T,
    pub size: usize,
    /// Its ordering key, to pass to [`Scheduler::key_done`] once finished.
    pub key: Option<String>,
}

pub(crate) struct Scheduler<T> {
    /// 0 means no limit.
    max_messages: usize,
    /// 0 means no limit.
    max_bytes: usize,
    /// Waiting for flow control, in arrival order.
    ready: VecDeque<Entry<T>>,
    /// Keys with a message in `ready` or in flight, and the messages of the
    /// key waiting behind it.
    keys: HashMap<String, VecDeque<Entry<T>>>,
    in_flight_messages: usize,
    in_flight_bytes: usize,
}

impl<T> Scheduler<T> {
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            max_messages,
            max_bytes,
            ready: VecDeque::new(),
            keys: HashMap::new(),
            in_flight_messages: 0,
            in_flight_bytes: 0,
        }
    }

    /// Adds a received message; `key` only for ordered delivery (a
    /// non-empty key on a subscription with message ordering).
    pub fn push(&mut self, item: T, size: usize, key: Option<String>) {
        let entry = Entry { item, size, key };
        match &entry.key {
            Some(key) => match self.keys.get_mut(key) {
                Some(waiting) => waiting.push_back(entry),
                None => {
                    self.keys.insert(key.clone(), VecDeque::new());
                    self.ready.push_back(entry);
                }
            },
            None => self.ready.push_back(entry),
        }
    }

    fn fits(&self, size: usize) -> bool {
        self.in_flight_messages == 0
            || ((self.max_messages == 0 || self.in_flight_messages < self.max_messages)
                && (self.max_bytes == 0 || self.in_flight_bytes + size <= self.max_bytes))
    }

    /// The next message flow control lets through; it counts as in flight
    /// until [`Self::release`].
    pub fn next_released(&mut self) -> Option<Released<T>> {
        let size = self.ready.front()?.size;
        if !self.fits(size) {
            return None;
        }
        let entry = self.ready.pop_front()?;
        self.in_flight_messages += 1;
        self.in_flight_bytes += entry.size;
        Some(Released {
            item: entry.item,
            size: entry.size,
            key: entry.key,
        })
    }

    /// A released message was settled (acked, nacked or expired): it no
    /// longer counts against flow control.
    pub fn release(&mut self, size: usize) {
        self.in_flight_messages = self.in_flight_messages.saturating_sub(1);
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(size);
    }

    /// The current message of `key` is finished: the next one of the key
    /// joins the flow-control queue, or the key is free.
    pub fn key_done(&mut self, key: &str) {
        let next = match self.keys.get_mut(key) {
            Some(waiting) => waiting.pop_front(),
            None => return,
        };
        match next {
            Some(entry) => self.ready.push_back(entry),
            None => {
                self.keys.remove(key);
            }
        }
    }

    /// Takes out a message that has not been released yet (its lease
    /// expired while it waited).
    pub fn remove(&mut self, matches: impl Fn(&T) -> bool) -> Option<T> {
        if let Some(index) = self.ready.iter().position(|e| matches(&e.item)) {
            let entry = self.ready.remove(index)?;
            if let Some(key) = &entry.key {
                self.key_done(key);
            }
            return Some(entry.item);
        }
        for waiting in self.keys.values_mut() {
            if let Some(index) = waiting.iter().position(|e| matches(&e.item)) {
                return waiting.remove(index).map(|e| e.item);
            }
        }
        None
    }

    /// Takes out every message not released yet (shutdown), oldest first
    /// per key.
    pub fn drain(&mut self) -> Vec<T> {
        let mut items: Vec<T> = self.ready.drain(..).map(|e| e.item).collect();
        for (_, waiting) in self.keys.drain() {
            items.extend(waiting.into_iter().map(|e| e.item));
        }
        items
    }

    /// Messages waiting (not released).
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.ready.len() + self.keys.values().map(VecDeque::len).sum::<usize>()
    }

    /// Messages and bytes in flight.
    #[cfg(test)]
    pub fn in_flight(&self) -> (usize, usize) {
        (self.in_flight_messages, self.in_flight_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released<T>(scheduler: &mut Scheduler<T>) -> Vec<Released<T>> {
        std::iter::from_fn(|| scheduler.next_released()).collect()
    }

    fn items<T: Copy>(released: &[Released<T>]) -> Vec<T> {
        released.iter().map(|r| r.item).collect()
    }

    #[test]
    fn counts_messages_in_flight() {
        let mut s = Scheduler::new(2, 0);
        for i in 0..5 {
            s.push(i, 10, None);
        }
        let first = released(&mut s);
        assert_eq!(items(&first), [0, 1]);
        assert_eq!(s.in_flight(), (2, 20));
        assert_eq!(s.waiting(), 3);
        s.release(10);
        assert_eq!(items(&released(&mut s)), [2]);
        assert!(s.next_released().is_none());
        s.release(10);
        s.release(10);
        assert_eq!(items(&released(&mut s)), [3, 4]);
        assert_eq!(s.in_flight(), (2, 20));
    }

    #[test]
    fn counts_bytes_in_flight() {
        let mut s = Scheduler::new(0, 100);
        s.push("a", 60, None);
        s.push("b", 50, None);
        s.push("c", 30, None);
        // FIFO: "c" would fit, but does not overtake "b".
        assert_eq!(items(&released(&mut s)), ["a"]);
        s.release(60);
        assert_eq!(items(&released(&mut s)), ["b", "c"]);
        assert_eq!(s.in_flight(), (2, 80));
    }

    #[test]
    fn an_oversized_message_goes_alone() {
        let mut s = Scheduler::new(10, 100);
        s.push("huge", 500, None);
        s.push("small", 1, None);
        assert_eq!(items(&released(&mut s)), ["huge"]);
        assert!(s.next_released().is_none());
        s.release(500);
        assert_eq!(items(&released(&mut s)), ["small"]);
    }

    #[test]
    fn no_limits() {
        let mut s = Scheduler::new(0, 0);
        for i in 0..10_000 {
            s.push(i, 1 << 20, None);
        }
        assert_eq!(released(&mut s).len(), 10_000);
    }

    #[test]
    fn one_message_per_key_at_a_time_in_arrival_order() {
        let mut s = Scheduler::new(0, 0);
        let key = |k: &str| Some(k.to_string());
        s.push("a1", 1, key("a"));
        s.push("b1", 1, key("b"));
        s.push("a2", 1, key("a"));
        s.push("u1", 1, None);
        s.push("a3", 1, key("a"));
        s.push("b2", 1, key("b"));
        let first = released(&mut s);
        assert_eq!(items(&first), ["a1", "b1", "u1"]);
        assert_eq!(first[0].key.as_deref(), Some("a"));
        assert_eq!(first[2].key, None);
        // Settling a1 alone does not free key a: only key_done does.
        s.release(1);
        assert!(s.next_released().is_none());
        s.key_done("a");
        assert_eq!(items(&released(&mut s)), ["a2"]);
        s.key_done("b");
        s.key_done("a");
        assert_eq!(items(&released(&mut s)), ["b2", "a3"]);
        s.key_done("a");
        s.key_done("b");
        assert_eq!(s.waiting(), 0);
        // Keys are forgotten once idle.
        assert!(s.keys.is_empty());
    }

    #[test]
    fn ordering_and_flow_control_together() {
        let mut s = Scheduler::new(1, 0);
        let key = Some("k".to_string());
        s.push(1, 1, key.clone());
        s.push(2, 1, key.clone());
        s.push(3, 1, None);
        assert_eq!(items(&released(&mut s)), [1]);
        s.release(1);
        s.key_done("k");
        // 3 arrived first in the flow-control queue; 2 joins behind it.
        assert_eq!(items(&released(&mut s)), [3]);
        s.release(1);
        assert_eq!(items(&released(&mut s)), [2]);
    }

    #[test]
    fn removing_a_waiting_message_frees_its_turn() {
        let mut s = Scheduler::new(0, 0);
        let key = Some("k".to_string());
        s.push(1, 1, key.clone());
        s.push(2, 1, key.clone());
        s.push(3, 1, key.clone());
        // 1 is queued for flow control and holds the key: removing it lets 2 in.
        assert_eq!(s.remove(|i| *i == 1), Some(1));
        assert_eq!(s.remove(|i| *i == 3), Some(3));
        assert_eq!(s.remove(|i| *i == 9), None);
        assert_eq!(items(&released(&mut s)), [2]);
        s.key_done("k");
        assert_eq!(s.waiting(), 0);
    }

    #[test]
    fn drain_takes_everything_waiting() {
        let mut s = Scheduler::new(1, 0);
        s.push(1, 1, Some("k".to_string()));
        s.push(2, 1, Some("k".to_string()));
        s.push(3, 1, None);
        assert_eq!(items(&released(&mut s)), [1]);
        let mut drained = s.drain();
        drained.sort_unstable();
        assert_eq!(drained, [2, 3]);
        assert_eq!(s.waiting(), 0);
        // Finishing the released one afterwards is harmless.
        s.key_done("k");
        s.release(1);
        assert_eq!(s.in_flight(), (0, 0));
    }
}
