//! The per-process worker pool and the host-wide limit on running exports.
//!
//! Each running export has a thread of its own: one PHP thread may feed
//! several exports at once, and a fixed pool smaller than that would leave
//! a producer blocked on a task that never gets a thread. Threads are reused
//! once their export ends. What bounds the work is the host-wide slot limit
//! (`fluxo.max_concurrent_tasks`), which has a timeout.
//!
//! Threads are created on first use in each process, never at start-up:
//! PHP-FPM loads the extension in its master and forks workers, and threads
//! do not survive a fork. A pool made before a fork is replaced in the child.

use std::fs::{self, File};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    pid: u32,
    jobs: Sender<Job>,
    receiver: Arc<Mutex<Receiver<Job>>>,
    /// Threads waiting for a job that no submitted job has claimed yet.
    idle: Arc<Mutex<usize>>,
    spawned: usize,
}

/// Tasks running in this process, for a bounded wait at shutdown: (pid,
/// count), as a child of fork() inherits the count but none of the threads.
#[derive(Default)]
struct Active {
    count: Mutex<(u32, usize)>,
    idle: Condvar,
}

fn pool() -> &'static Mutex<Option<Pool>> {
    static POOL: OnceLock<Mutex<Option<Pool>>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(None))
}

fn active() -> &'static Active {
    static ACTIVE: OnceLock<Active> = OnceLock::new();
    ACTIVE.get_or_init(Active::default)
}

fn worker_loop(jobs: Arc<Mutex<Receiver<Job>>>, idle: Arc<Mutex<usize>>) {
    loop {
        let job = match jobs.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        job();
        *idle.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }
}

/// Runs `job` on a pool thread: an idle one, or a new one if none is idle.
pub fn submit(job: impl FnOnce() + Send + 'static) {
    let mut guard = pool().lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if guard.as_ref().is_none_or(|p| p.pid != pid) {
        let (jobs, receiver) = mpsc::channel::<Job>();
        *guard = Some(Pool {
            pid,
            jobs,
            receiver: Arc::new(Mutex::new(receiver)),
            idle: Arc::new(Mutex::new(0)),
            spawned: 0,
        });
    }
    let pool = guard.as_mut().expect("pool exists");
    let claimed_idle = {
        let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        let had = *idle > 0;
        if had {
            *idle -= 1;
        }
        had
    };
    if !claimed_idle {
        let (receiver, idle) = (pool.receiver.clone(), pool.idle.clone());
        std::thread::Builder::new()
            .name(format!("fluxo-worker-{}", pool.spawned))
            .spawn(move || worker_loop(receiver, idle))
            .expect("cannot start a worker thread");
        pool.spawned += 1;
    }
    {
        let mut count = active().count.lock().unwrap_or_else(|p| p.into_inner());
        if count.0 != pid {
            *count = (pid, 0);
        }
        count.1 += 1;
    }
    let counted = move || {
        // The count drops even if the job panics.
        struct Done;
        impl Drop for Done {
            fn drop(&mut self) {
                let a = active();
                a.count.lock().unwrap_or_else(|p| p.into_inner()).1 -= 1;
                a.idle.notify_all();
            }
        }
        let _done = Done;
        job();
    };
    let sent = guard
        .as_ref()
        .expect("pool exists")
        .jobs
        .send(Box::new(counted));
    sent.expect("worker threads live as long as the process");
}

/// Waits up to `timeout` until no task runs in this process. Returns how
/// many were still running.
pub fn wait_idle(timeout: Duration) -> usize {
    let a = active();
    let n = a.count.lock().unwrap_or_else(|p| p.into_inner());
    if n.0 != std::process::id() {
        return 0; // the parent's, before a fork
    }
    let (n, _) = a
        .idle
        .wait_timeout_while(n, timeout, |n| n.1 > 0)
        .unwrap_or_else(|p| p.into_inner());
    n.1
}

/// One of `fluxo.max_concurrent_tasks` host-wide slots: a lock file held
/// while the task runs. The kernel releases it when the process dies, so a
/// crashed worker never leaks a slot.
pub struct Slot {
    _lock: File,
}

/// Tries every slot once; `None` if all are taken.
pub fn try_acquire_slot(work_dir: &Path, slots: usize) -> std::io::Result<Option<Slot>> {
    let dir = work_dir.join("slots");
    fs::create_dir_all(&dir)?;
    for n in 0..slots {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{n}.lock")))?;
        match file.try_lock() {
            Ok(()) => return Ok(Some(Slot { _lock: file })),
            Err(fs::TryLockError::WouldBlock) => continue,
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_exclusive_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = try_acquire_slot(dir.path(), 2).unwrap().unwrap();
        let b = try_acquire_slot(dir.path(), 2).unwrap().unwrap();
        assert!(try_acquire_slot(dir.path(), 2).unwrap().is_none());
        drop(a);
        assert!(try_acquire_slot(dir.path(), 2).unwrap().is_some());
        drop(b);
    }

    #[test]
    fn every_job_gets_a_thread_even_when_others_block() {
        let (tx, rx) = mpsc::channel();
        let gates: Vec<_> = (0..5)
            .map(|_| {
                let (open, wait) = mpsc::channel::<()>();
                let tx = tx.clone();
                submit(move || {
                    tx.send(()).unwrap();
                    wait.recv().unwrap();
                });
                open
            })
            .collect();
        for _ in 0..5 {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("all five jobs run at once");
        }
        gates.iter().for_each(|g| g.send(()).unwrap());
    }

    #[test]
    fn wait_idle_returns_once_jobs_finish() {
        let (tx, rx) = mpsc::channel();
        submit(move || {
            rx.recv().unwrap();
        });
        assert!(wait_idle(Duration::from_millis(30)) >= 1);
        tx.send(()).unwrap();
        assert_eq!(wait_idle(Duration::from_secs(10)), 0);
    }
}
