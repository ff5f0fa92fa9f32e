//! `request_id` → task id for `fluxo.idempotency_ttl`: a client that retries
//! a request gets the task it already started instead of a second export.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct IdempotencyMap {
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

impl IdempotencyMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// The task remembered for `request_id`, if younger than `ttl`.
    pub fn get(&self, request_id: &str, ttl: Duration) -> Option<String> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, at)| at.elapsed() < ttl);
        map.get(request_id).map(|(task, _)| task.clone())
    }

    pub fn insert(&self, request_id: &str, task_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id.to_owned(), (task_id.to_owned(), Instant::now()));
    }

    pub fn remove(&self, request_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(request_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let map = IdempotencyMap::new();
        map.insert("r1", "t1");
        assert_eq!(
            map.get("r1", Duration::from_secs(60)).as_deref(),
            Some("t1")
        );
        assert_eq!(map.get("r1", Duration::ZERO), None);
        assert_eq!(map.get("r1", Duration::from_secs(60)), None);
    }
}
