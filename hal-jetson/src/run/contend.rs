//! The contention generator: threads that compete with the models for their unit, as another
//! application would (busy threads for the cores, another stream of inference for the GPU),
//! switched on and off by the run's schedule.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Default)]
struct Shared {
    /// Threads that are to be busy now (threads `0..active` spin).
    active: AtomicUsize,
    stop: AtomicBool,
    /// Idle threads wait here for a change.
    lock: Mutex<()>,
    wake: Condvar,
}

/// One contender's work, called over and over while the contender is on; each call is short (a
/// tenth of a millisecond to a frame), so that switching it off takes effect soon.
pub type Work = Box<dyn FnMut() + Send>;

/// A busy thread's work: about a tenth of a millisecond of floating-point arithmetic per call.
pub fn spin(index: usize) -> Work {
    let mut x = 1.0f64 + index as f64;
    Box::new(move || {
        for _ in 0..20_000 {
            x = black_box(x * 1.000_000_1 + 1e-9);
        }
    })
}

/// A thread per contender, none on at first. Dropping it ends them.
#[derive(Debug)]
pub struct Contention {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Contention {
    /// A generator whose contender `i` does `workers[i]`.
    pub fn new(workers: Vec<Work>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let threads = workers
            .into_iter()
            .enumerate()
            .map(|(i, work)| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new().name(format!("contend-{i}")).spawn(move || busy(&shared, i, work))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Contention { shared, threads })
    }

    /// Contenders it has.
    pub fn max(&self) -> usize {
        self.threads.len()
    }

    /// Contenders on now.
    pub fn active(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// Switch `n` contenders on (at most [`Contention::max`]).
    pub fn set(&self, n: usize) {
        let _guard = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.active.store(n.min(self.max()), Ordering::Relaxed);
        self.shared.wake.notify_all();
    }
}

impl Drop for Contention {
    fn drop(&mut self) {
        {
            let _guard = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.stop.store(true, Ordering::Relaxed);
            self.shared.wake.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Thread `i`: work while it is among the active ones, else wait for a change.
fn busy(shared: &Shared, i: usize, mut work: Work) {
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        if i < shared.active.load(Ordering::Relaxed) {
            work();
            continue;
        }
        let guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
        if !shared.stop.load(Ordering::Relaxed) && i >= shared.active.load(Ordering::Relaxed) {
            // A timeout as well, so that a missed wake-up can only delay, never hang.
            let _ = shared.wake.wait_timeout(guard, Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// CPU time the contention thread `contend-0` used so far (other tests run in this process too).
    fn cpu_time() -> Duration {
        // A new thread names itself once it runs: look again for a while.
        for _ in 0..200 {
            for task in std::fs::read_dir("/proc/self/task").unwrap() {
                let dir = task.unwrap().path();
                if std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim() != "contend-0" {
                    continue;
                }
                let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
                // utime and stime are fields 14 and 15, counted after the command's closing parenthesis.
                let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
                let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
                // USER_HZ is 100 on every Linux target dynofa builds for.
                return Duration::from_millis(ticks * 10);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no thread contend-0")
    }

    #[test]
    fn busy_threads_use_cpu_only_while_on() {
        let c = Contention::new(vec![spin(0)]).unwrap();
        assert_eq!((c.max(), c.active()), (1, 0));
        let at = |start: Duration| cpu_time() - start;
        // Off, it sleeps.
        let start = cpu_time();
        std::thread::sleep(Duration::from_millis(300));
        assert!(at(start) <= Duration::from_millis(20), "idle used {:?}", at(start));
        // On (asking for more than it has runs all it has), it spins: however loaded the machine,
        // it soon has a tenth of a second of CPU.
        c.set(5);
        assert_eq!(c.active(), 1);
        let (start, wall) = (cpu_time(), Instant::now());
        while at(start) < Duration::from_millis(100) {
            assert!(wall.elapsed() < Duration::from_secs(20), "on, it used only {:?}", at(start));
            std::thread::sleep(Duration::from_millis(20));
        }
        // Off again, it stops.
        c.set(0);
        std::thread::sleep(Duration::from_millis(50));
        let start = cpu_time();
        std::thread::sleep(Duration::from_millis(300));
        assert!(at(start) <= Duration::from_millis(20), "off again, it used {:?}", at(start));
        drop(c);
    }
}
