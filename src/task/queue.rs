//! A queue bounded in bytes between the producer (PHP thread, gRPC stream)
//! and a task's writer thread.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct Inner<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    /// No more items will be pushed.
    closed: bool,
    /// The consumer gave up (failed or cancelled): pushes are refused.
    aborted: bool,
    /// Threads waiting on `changed`: a notify is a system call even when no
    /// one listens.
    waiting: usize,
}

pub struct ByteQueue<T> {
    inner: Mutex<Inner<T>>,
    changed: Condvar,
    limit: usize,
}

/// What [`ByteQueue::pop_within`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Popped<T> {
    Item(T),
    /// Closed and drained, or aborted: no item will come.
    Ended,
    /// No item came in the time given.
    Nothing,
}

/// Why a push was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The consumer gave up, or the queue was closed.
    Aborted,
    /// The producer's `give_up` test turned true while it waited.
    GaveUp,
}

/// A consumer waiting on an empty queue is woken by a push only once the
/// queue holds this share of its limit (or the push has to wait); below
/// that, it finds the items when it looks again, within
/// [`LOOK_AGAIN_AT_MOST`]. Woken for every batch, the writer cost the PHP
/// thread a wake-up per 1,000 rows.
const WAKE_AT_SHARE: usize = 8;
/// How long a consumer waits on an empty queue before it looks again;
/// doubled after each look that finds nothing, up to [`LOOK_AGAIN_AT_MOST`],
/// so that an idle export's writer wakes about 16 times a second at most.
const LOOK_AGAIN: Duration = Duration::from_millis(1);
const LOOK_AGAIN_AT_MOST: Duration = Duration::from_millis(64);

/// How often a waiting producer runs its `give_up` test.
pub const GIVE_UP_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Waits on `changed` like [`Condvar::wait`]; with a `give_up` test, wakes
/// every [`GIVE_UP_POLL`] to run it, and returns `None` once it is true.
pub(super) fn wait_unless<'a, T>(
    changed: &Condvar,
    guard: MutexGuard<'a, T>,
    give_up: Option<fn() -> bool>,
) -> Option<MutexGuard<'a, T>> {
    Some(match give_up {
        None => changed.wait(guard).unwrap_or_else(|p| p.into_inner()),
        Some(test) if test() => return None,
        Some(_) => {
            changed
                .wait_timeout(guard, GIVE_UP_POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0
        }
    })
}

impl<T> ByteQueue<T> {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
                aborted: false,
                waiting: 0,
            }),
            changed: Condvar::new(),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `item` of `bytes`, blocking while the queue is over its limit;
    /// `give_up`, if any, is tested every [`GIVE_UP_POLL`] meanwhile. An item
    /// larger than the limit is accepted once the queue is empty.
    pub fn push(
        &self,
        item: T,
        bytes: usize,
        give_up: Option<fn() -> bool>,
    ) -> Result<(), Refused> {
        let mut q = self.lock();
        while !q.aborted && !q.items.is_empty() && q.bytes + bytes > self.limit {
            // Only the consumer makes room: if it waits, it is woken now,
            // not when it looks again.
            if q.waiting > 0 {
                self.changed.notify_all();
            }
            q.waiting += 1;
            let woken = wait_unless(&self.changed, q, give_up);
            let gave_up = woken.is_none();
            q = woken.unwrap_or_else(|| self.lock());
            q.waiting -= 1;
            if gave_up {
                return Err(Refused::GaveUp);
            }
        }
        self.enqueue(q, item, bytes)
    }

    /// Appends `item` of `bytes` even past the limit.
    pub fn push_without_waiting(&self, item: T, bytes: usize) -> Result<(), Refused> {
        self.enqueue(self.lock(), item, bytes)
    }

    fn enqueue(
        &self,
        mut q: MutexGuard<'_, Inner<T>>,
        item: T,
        bytes: usize,
    ) -> Result<(), Refused> {
        if q.aborted || q.closed {
            return Err(Refused::Aborted);
        }
        q.bytes += bytes;
        q.items.push_back((item, bytes));
        if q.bytes >= self.limit / WAKE_AT_SHARE {
            self.changed_by(q);
        }
        Ok(())
    }

    /// Releases the lock after a change, then wakes whoever waits for one.
    /// Woken with the lock still held, a waiter would only block on it.
    fn changed_by(&self, q: MutexGuard<'_, Inner<T>>) {
        let waiting = q.waiting > 0;
        drop(q);
        if waiting {
            self.changed.notify_all();
        }
    }

    /// The next item; `None` once the queue is closed and empty, or aborted.
    #[cfg(test)]
    fn pop(&self) -> Option<T> {
        match self.pop_within(None) {
            Popped::Item(item) => Some(item),
            Popped::Ended | Popped::Nothing => None,
        }
    }

    /// The next item, waiting for one at most `timeout` (`None`: for as long
    /// as it takes).
    pub fn pop_within(&self, timeout: Option<Duration>) -> Popped<T> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut look_again = LOOK_AGAIN;
        let mut q = self.lock();
        loop {
            if q.aborted {
                return Popped::Ended;
            }
            if let Some((item, bytes)) = q.items.pop_front() {
                q.bytes -= bytes;
                self.changed_by(q);
                return Popped::Item(item);
            }
            if q.closed {
                return Popped::Ended;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left.is_zero()) {
                return Popped::Nothing;
            }
            q.waiting += 1;
            let wait = left.map_or(look_again, |left| left.min(look_again));
            q = self
                .changed
                .wait_timeout(q, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            q.waiting -= 1;
            look_again = (look_again * 2).min(LOOK_AGAIN_AT_MOST);
        }
    }

    /// The producer is done: the consumer takes what is left, then the end.
    pub fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        self.changed_by(q);
    }

    /// Drops everything queued and refuses further pushes.
    pub fn abort(&self) {
        let mut q = self.lock();
        q.aborted = true;
        q.items.clear();
        q.bytes = 0;
        self.changed_by(q);
    }

    /// Whether the consumer gave up: pushes are refused.
    pub fn is_aborted(&self) -> bool {
        self.lock().aborted
    }

    #[cfg(test)]
    fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_full_queue_blocks_the_producer_until_the_consumer_takes() {
        let q = Arc::new(ByteQueue::new(100));
        q.push(1, 60, None).unwrap();
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || q.push(2, 60, None))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(q.queued_bytes(), 60, "the second push must wait");
        assert_eq!(q.pop(), Some(1));
        producer.join().unwrap().unwrap();
        q.close();
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), None);
    }

    /// A consumer that waits is counted while it waits, and takes what is
    /// pushed, woken or not (an item below the share is found when it
    /// looks again).
    #[test]
    fn a_waiting_consumer_finds_what_is_pushed() {
        let q = Arc::new(ByteQueue::new(100));
        for (item, bytes) in [(7, 10), (8, 50)] {
            let consumer = {
                let q = q.clone();
                std::thread::spawn(move || q.pop_within(Some(Duration::from_secs(10))))
            };
            let waits = (0..500).any(|_| {
                std::thread::sleep(Duration::from_millis(10));
                q.lock().waiting == 1
            });
            assert!(waits, "counted while it waits");
            q.push(item, bytes, None).unwrap();
            assert_eq!(consumer.join().unwrap(), Popped::Item(item));
            assert_eq!(q.lock().waiting, 0);
        }
    }

    #[test]
    fn a_timed_pop_ends_with_nothing_then_with_the_queue() {
        let q = ByteQueue::new(100);
        let short = Duration::from_millis(20);
        let started = Instant::now();
        assert_eq!(q.pop_within(Some(short)), Popped::Nothing);
        assert!(started.elapsed() >= short, "waited for {short:?}");
        q.push(1, 10, None).unwrap();
        assert_eq!(q.pop_within(Some(short)), Popped::Item(1));
        q.close();
        assert_eq!(q.pop_within(Some(short)), Popped::Ended);
        let aborted = ByteQueue::new(100);
        aborted.push(2, 10, None).unwrap();
        aborted.abort();
        assert_eq!(aborted.pop_within(Some(short)), Popped::Ended);
    }

    #[test]
    fn an_oversized_item_passes_when_the_queue_is_empty() {
        let q = ByteQueue::new(10);
        q.push("big", 1_000, None).unwrap();
        assert_eq!(q.pop(), Some("big"));
    }

    #[test]
    fn abort_wakes_a_blocked_producer() {
        let q = Arc::new(ByteQueue::new(10));
        q.push(1, 10, None).unwrap();
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || q.push(2, 10, None))
        };
        std::thread::sleep(Duration::from_millis(20));
        q.abort();
        assert_eq!(producer.join().unwrap(), Err(Refused::Aborted));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_blocked_producer_gives_up_when_its_test_turns_true() {
        static TIME_IS_UP: std::sync::atomic::AtomicBool =
            std::sync::atomic::AtomicBool::new(false);
        fn time_is_up() -> bool {
            TIME_IS_UP.load(std::sync::atomic::Ordering::SeqCst)
        }
        let q = Arc::new(ByteQueue::new(10));
        q.push(1, 10, Some(time_is_up)).unwrap();
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || q.push(2, 10, Some(time_is_up)))
        };
        std::thread::sleep(GIVE_UP_POLL * 2);
        assert!(!producer.is_finished(), "waits while the test is false");
        TIME_IS_UP.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(producer.join().unwrap(), Err(Refused::GaveUp));
        assert_eq!(q.queued_bytes(), 10, "the item it gave up on is not queued");
    }
}
