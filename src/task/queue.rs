//! A queue bounded in bytes between the producer (PHP thread, gRPC stream)
//! and a task's writer thread.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

struct Inner<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    /// No more items will be pushed.
    closed: bool,
    /// The consumer gave up (failed or cancelled): pushes are refused.
    aborted: bool,
}

pub struct ByteQueue<T> {
    inner: Mutex<Inner<T>>,
    changed: Condvar,
    limit: usize,
}

/// Why a push was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Aborted;

impl<T> ByteQueue<T> {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
                aborted: false,
            }),
            changed: Condvar::new(),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `item` of `bytes`, blocking while the queue is over its limit.
    /// An item larger than the limit is accepted once the queue is empty.
    pub fn push(&self, item: T, bytes: usize) -> Result<(), Aborted> {
        let mut q = self.lock();
        while !q.aborted && !q.items.is_empty() && q.bytes + bytes > self.limit {
            q = self.changed.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if q.aborted || q.closed {
            return Err(Aborted);
        }
        q.bytes += bytes;
        q.items.push_back((item, bytes));
        self.changed.notify_all();
        Ok(())
    }

    /// The next item; `None` once the queue is closed and empty, or aborted.
    pub fn pop(&self) -> Option<T> {
        let mut q = self.lock();
        loop {
            if q.aborted {
                return None;
            }
            if let Some((item, bytes)) = q.items.pop_front() {
                q.bytes -= bytes;
                self.changed.notify_all();
                return Some(item);
            }
            if q.closed {
                return None;
            }
            q = self.changed.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The producer is done: `pop` drains what is left, then ends.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Drops everything queued and refuses further pushes.
    pub fn abort(&self) {
        let mut q = self.lock();
        q.aborted = true;
        q.items.clear();
        q.bytes = 0;
        self.changed.notify_all();
    }

    pub fn queued_bytes(&self) -> usize {
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
        q.push(1, 60).unwrap();
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || q.push(2, 60))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(q.queued_bytes(), 60, "the second push must wait");
        assert_eq!(q.pop(), Some(1));
        producer.join().unwrap().unwrap();
        q.close();
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn an_oversized_item_passes_when_the_queue_is_empty() {
        let q = ByteQueue::new(10);
        q.push("big", 1_000).unwrap();
        assert_eq!(q.pop(), Some("big"));
    }

    #[test]
    fn abort_wakes_a_blocked_producer() {
        let q = Arc::new(ByteQueue::new(10));
        q.push(1, 10).unwrap();
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || q.push(2, 10))
        };
        std::thread::sleep(Duration::from_millis(20));
        q.abort();
        assert_eq!(producer.join().unwrap(), Err(Aborted));
        assert_eq!(q.pop(), None);
    }
}
