//! A persistent team of threads for fork-join regions with spin barriers inside.
//!
//! One inference is one region: every thread walks the same layer list, takes its share of each
//! layer and meets the others at a barrier between layers. Workers spin briefly for the next region
//! and then park, so an idle engine costs no CPU (spinning peers slow down other processes).
//!
//! With more runnable threads than cores (another application busy on every core), a region with
//! tens of barriers waits at each one for a partner that the OS has descheduled, up to a time slice
//! each: frames slowed 30x in `dynofa run`'s contention phase. [`Team::run_adaptive`] notices the
//! barrier waits, runs such frames on the calling thread alone and returns to the whole team once
//! a cheap probe finds the workers answering promptly again.

use std::cell::{Cell, UnsafeCell};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long an idle worker spins for the next region before it parks.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(200);
/// Spins in a barrier before yielding the core (matters when threads outnumber free cores).
const SPINS_BEFORE_YIELD: u32 = 256;
/// Frames in a row whose leader waited at barriers for more than half the frame before
/// [`Team::run_adaptive`] goes solo (one such frame can be a hiccup).
const STRIKES_TO_SOLO: u8 = 3;
/// How long a solo spell lasts before the workers are probed again.
const SOLO_SPELL: Duration = Duration::from_millis(500);
/// A probe region (one barrier) at most this long means the workers have cores again.
const PROMPT_PROBE: Duration = Duration::from_micros(300);

/// The job of a region, with its lifetime erased.
type Job = *const (dyn Fn(&Ctx<'_>) + Sync);

struct Shared {
    threads: usize,
    /// Bumped by the leader to start a region.
    epoch: AtomicUsize,
    /// Workers still inside the current region.
    running: AtomicUsize,
    job: UnsafeCell<Option<Job>>,
    barrier: Barrier,
    sleeping: Vec<AtomicBool>,
    stop: AtomicBool,
}

// SAFETY: `job` is written only by the leader while no region runs (all workers are done), and read
// by workers only after they observe the new epoch (acquire), which the leader publishes after the
// write (release).
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw job pointer is only dereferenced during the region it belongs to.
unsafe impl Send for Shared {}

/// A counting barrier that spins (then yields) until every thread of the team arrives.
struct Barrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl Barrier {
    fn wait(&self, threads: usize) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            spins += 1;
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
    }
}

/// What a thread knows inside a region.
pub struct Ctx<'a> {
    /// This thread's index (0 is the caller of [`Team::run`]).
    pub tid: usize,
    /// Threads in the team.
    pub threads: usize,
    barrier: &'a Barrier,
    /// Time this thread spent at barriers (kept on the leader only).
    waited: Cell<Duration>,
}

impl<'a> Ctx<'a> {
    fn new(tid: usize, threads: usize, barrier: &'a Barrier) -> Self {
        Ctx { tid, threads, barrier, waited: Cell::new(Duration::ZERO) }
    }
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("tid", &self.tid).field("threads", &self.threads).finish()
    }
}

impl Ctx<'_> {
    /// Wait until every thread of the team gets here; memory written before is visible after.
    pub fn sync(&self) {
        if self.threads > 1 {
            if self.tid == 0 {
                let start = Instant::now();
                self.barrier.wait(self.threads);
                self.waited.set(self.waited.get() + start.elapsed());
            } else {
                self.barrier.wait(self.threads);
            }
        }
    }

    /// This thread's share of `0..total`, in contiguous pieces that are multiples of `grain`.
    pub fn share(&self, total: usize, grain: usize) -> Range<usize> {
        let units = total.div_ceil(grain);
        let at = |t: usize| (units * t / self.threads * grain).min(total);
        at(self.tid)..at(self.tid + 1)
    }
}

/// A leader (the calling thread) and `threads - 1` parked workers.
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<(JoinHandle<()>, Thread)>,
    adapt: Adapt,
}

/// [`Team::run_adaptive`]'s state: whole team or solo, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adapt {
    /// The whole team; `strikes` frames in a row were mostly barrier waits.
    Team { strikes: u8 },
    /// The leader alone since `since`.
    Solo { since: Instant },
}

impl Adapt {
    /// After a whole-team frame of `total` wall time, `waited` of it at barriers by the leader.
    fn after_team_frame(self, total: Duration, waited: Duration, now: Instant) -> Adapt {
        let Adapt::Team { strikes } = self else { return self };
        if waited * 2 <= total {
            return Adapt::Team { strikes: 0 };
        }
        if strikes + 1 >= STRIKES_TO_SOLO { Adapt::Solo { since: now } } else { Adapt::Team { strikes: strikes + 1 } }
    }

    /// Whether a solo spell that began at `since` has lasted long enough to probe the workers.
    fn probe_due(self, now: Instant) -> bool {
        matches!(self, Adapt::Solo { since } if now.duration_since(since) >= SOLO_SPELL)
    }

    /// After a probe region that took `took`.
    fn after_probe(took: Duration, now: Instant) -> Adapt {
        if took <= PROMPT_PROBE { Adapt::Team { strikes: 0 } } else { Adapt::Solo { since: now } }
    }
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team").field("threads", &self.shared.threads).finish()
    }
}

impl Team {
    /// A team of `threads` (at least 1) threads.
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            threads,
            epoch: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            barrier: Barrier { arrived: AtomicUsize::new(0), generation: AtomicUsize::new(0) },
            sleeping: (0..threads).map(|_| AtomicBool::new(false)).collect(),
            stop: AtomicBool::new(false),
        });
        let workers = (1..threads)
            .map(|tid| {
                let shared = Arc::clone(&shared);
                let handle = thread::Builder::new()
                    .name(format!("dynofa-cpu-{tid}"))
                    .spawn(move || worker(&shared, tid))
                    .expect("cannot spawn a CPU engine thread");
                let thread = handle.thread().clone();
                (handle, thread)
            })
            .collect();
        Team { shared, workers, adapt: Adapt::Team { strikes: 0 } }
    }

    /// Threads in the team.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Whether [`Team::run_adaptive`] runs its regions on the calling thread alone for now.
    pub fn is_solo(&self) -> bool {
        matches!(self.adapt, Adapt::Solo { .. })
    }

    /// [`Team::run`], or `job` on the calling thread alone (a team of one) while other processes
    /// keep the workers from their cores: see the module docs. The job must be correct for any
    /// team size, as [`Ctx::share`] and [`Ctx::sync`] make it. Allocates nothing.
    pub fn run_adaptive(&mut self, job: &(dyn Fn(&Ctx<'_>) + Sync)) {
        if self.shared.threads == 1 {
            self.run(job);
            return;
        }
        let mut start = Instant::now();
        if self.adapt.probe_due(start) {
            self.run(&|ctx| ctx.sync());
            let end = Instant::now();
            self.adapt = Adapt::after_probe(end - start, end);
            start = end;
        }
        if self.is_solo() {
            run_or_abort(job, &Ctx::new(0, 1, &self.shared.barrier));
            return;
        }
        let waited = self.run(job);
        let end = Instant::now();
        self.adapt = self.adapt.after_team_frame(end - start, waited, end);
    }

    /// Run `job` on every thread of the team and return when all have finished it, with the time
    /// the calling thread waited at barriers.
    pub fn run(&mut self, job: &(dyn Fn(&Ctx<'_>) + Sync)) -> Duration {
        let s = &*self.shared;
        if s.threads > 1 {
            // SAFETY: the lifetime is erased only for the duration of this call: we wait below until
            // every worker has left the job before returning. `&mut self` keeps regions exclusive.
            let erased: Job = unsafe { std::mem::transmute::<&(dyn Fn(&Ctx<'_>) + Sync), Job>(job) };
            // SAFETY: no worker is inside a region (the previous `run` waited for all of them).
            unsafe { *s.job.get() = Some(erased) };
            s.running.store(s.threads - 1, Ordering::Relaxed);
            s.epoch.fetch_add(1, Ordering::SeqCst);
            for (tid, (_, thread)) in self.workers.iter().enumerate() {
                if s.sleeping[tid + 1].swap(false, Ordering::SeqCst) {
                    thread.unpark();
                }
            }
        }
        let ctx = Ctx::new(0, s.threads, &s.barrier);
        run_or_abort(job, &ctx);
        let start = Instant::now();
        let mut spins = 0u32;
        while s.running.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
        ctx.waited.get() + start.elapsed()
    }
}

/// Run a thread's part of a region. A panic there would leave the other threads waiting at a
/// barrier forever, so it ends the process instead (after the panic hook has printed it).
fn run_or_abort(job: &(dyn Fn(&Ctx<'_>) + Sync), ctx: &Ctx<'_>) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(ctx))).is_err() {
        std::process::abort();
    }
}

fn worker(s: &Shared, tid: usize) {
    let mut seen = 0;
    loop {
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        loop {
            if s.stop.load(Ordering::Acquire) {
                return;
            }
            let epoch = s.epoch.load(Ordering::Acquire);
            if epoch != seen {
                seen = epoch;
                break;
            }
            spins += 1;
            if !spins.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            if idle_since.elapsed() < SPIN_BEFORE_PARK {
                continue;
            }
            // Announce the sleep, then re-check: the leader either sees the flag or we see its epoch.
            s.sleeping[tid].store(true, Ordering::SeqCst);
            if s.epoch.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
                thread::park();
            }
            s.sleeping[tid].store(false, Ordering::SeqCst);
            idle_since = Instant::now();
        }
        // SAFETY: the leader wrote the job before publishing the epoch we just acquired, and keeps
        // it alive until `running` drops to zero.
        let job = unsafe { &*(*s.job.get()).expect("a job is set before each region") };
        run_or_abort(job, &Ctx::new(tid, s.threads, &s.barrier));
        s.running.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (handle, thread) in self.workers.drain(..) {
            thread.unpark();
            // A worker that panicked has nothing left to clean up.
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_each_region_and_barriers_order_phases() {
        let mut team = Team::new(3);
        let hits = AtomicUsize::new(0);
        let phase = AtomicUsize::new(0);
        for round in 0..200 {
            team.run(&|ctx| {
                hits.fetch_add(1, Ordering::Relaxed);
                ctx.sync();
                // Everyone passed the barrier only after all three increments.
                assert!(hits.load(Ordering::Relaxed) >= 3 * (round + 1));
                if ctx.tid == 0 {
                    phase.fetch_add(1, Ordering::Relaxed);
                }
                ctx.sync();
                assert_eq!(phase.load(Ordering::Relaxed), round + 1);
            });
            if round % 50 == 0 {
                // Let the workers park, so the wake-up path runs too.
                thread::sleep(Duration::from_millis(2));
            }
        }
        assert_eq!(hits.load(Ordering::Relaxed), 600);
    }

    #[test]
    fn solo_after_three_frames_of_mostly_waiting_and_back_after_a_prompt_probe() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut a = Adapt::Team { strikes: 0 };
        // Mostly computing: stays.
        a = a.after_team_frame(ms(10), ms(2), t0);
        assert_eq!(a, Adapt::Team { strikes: 0 });
        // Two frames mostly waiting, then a good one: the strikes reset.
        a = a.after_team_frame(ms(100), ms(80), t0).after_team_frame(ms(100), ms(80), t0);
        assert_eq!(a, Adapt::Team { strikes: 2 });
        a = a.after_team_frame(ms(10), ms(1), t0);
        assert_eq!(a, Adapt::Team { strikes: 0 });
        // Three in a row: solo.
        for _ in 0..3 {
            a = a.after_team_frame(ms(100), ms(80), t0);
        }
        assert_eq!(a, Adapt::Solo { since: t0 });
        assert!(!a.probe_due(t0 + ms(499)) && a.probe_due(t0 + SOLO_SPELL));
        // A slow probe keeps it solo for another spell; a prompt one brings the team back.
        let later = t0 + ms(600);
        assert_eq!(Adapt::after_probe(ms(3), later), Adapt::Solo { since: later });
        assert_eq!(Adapt::after_probe(Duration::from_micros(40), later), Adapt::Team { strikes: 0 });
    }

    #[test]
    fn adaptive_regions_give_the_same_work_solo_or_not() {
        let mut team = Team::new(2);
        let hits = AtomicUsize::new(0);
        let job = |ctx: &Ctx<'_>| {
            hits.fetch_add(ctx.share(1000, 8).len(), Ordering::Relaxed);
            ctx.sync();
        };
        team.run_adaptive(&job);
        assert!(!team.is_solo());
        team.adapt = Adapt::Solo { since: Instant::now() };
        team.run_adaptive(&job);
        assert!(team.is_solo());
        assert_eq!(hits.load(Ordering::Relaxed), 2000);
    }

    #[test]
    fn shares_cover_the_range_in_grains() {
        let barrier = Barrier { arrived: AtomicUsize::new(0), generation: AtomicUsize::new(0) };
        for total in [0, 1, 7, 8, 49, 100, 12544] {
            let mut next = 0;
            for tid in 0..3 {
                let r = Ctx::new(tid, 3, &barrier).share(total, 8);
                assert_eq!(r.start, next);
                assert!(r.start.is_multiple_of(8));
                next = r.end;
            }
            assert_eq!(next, total);
        }
    }
}
