//! What the platform changed and how to put it back, exactly once: when the control is dropped, or when
//! the process gets SIGINT, SIGTERM or SIGHUP (Ctrl-C, `systemctl stop`, a closed ssh session).
//! A program that winds down by itself (`dynofa run`, which still writes its trace) asks for the first
//! SIGINT or SIGTERM as a flag instead ([`stop_on_signal`]); its controls then restore when dropped.
//!
//! Every control that writes a clock file first saves the file's original content here. A setting that
//! another tool (nvpmodel, jetson_clocks) rewrote since dynofa's last write belongs to that tool: restoring
//! leaves it alone and reports it as a [`ClockOverride`], so that a power mode chosen while dynofa ran is
//! not undone when it exits.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use dynofa_core::lut::Unit;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::{SysfsError, fs};

/// A clock file that holds something other than what dynofa last wrote: another tool changed the clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockOverride {
    /// The unit whose clock changed.
    pub unit: Unit,
    /// The file.
    pub path: PathBuf,
    /// What dynofa wrote there.
    pub wrote: String,
    /// What it holds now.
    pub found: String,
}

impl fmt::Display for ClockOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} holds {} where dynofa wrote {}; another tool (nvpmodel, jetson_clocks) changed the clocks",
            self.unit,
            self.path.display(),
            self.found,
            self.wrote
        )
    }
}

/// A setting a control changes.
#[derive(Debug, Clone)]
pub(crate) enum Knob {
    /// One file, such as a cpufreq governor.
    File(PathBuf),
    /// A min/max pair of limits, always written in an order the kernel accepts.
    Range {
        /// The lower limit's file.
        min: PathBuf,
        /// The upper limit's file.
        max: PathBuf,
    },
}

#[derive(Debug)]
enum State {
    File { original: String, written: Option<String> },
    Range { original: (u64, u64), written: (Option<u64>, Option<u64>) },
}

#[derive(Debug)]
struct Slot {
    knob: Knob,
    state: State,
}

#[derive(Debug)]
struct Entry {
    unit: Unit,
    slots: Vec<Slot>,
}

/// Every saved setting of this process.
#[derive(Debug)]
pub(crate) struct Registry {
    next_id: u64,
    handler_installed: bool,
    /// Set by the first SIGINT or SIGTERM instead of restoring and exiting ([`stop_on_signal`]).
    stop: Option<Arc<AtomicBool>>,
    entries: BTreeMap<u64, Entry>,
}

static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { next_id: 0, handler_installed: false, stop: None, entries: BTreeMap::new() });

/// The registry. Controls write clock files only while holding it, so a restore on a signal never
/// interleaves with a half-done write.
pub(crate) fn lock() -> MutexGuard<'static, Registry> {
    // A panic elsewhere while holding the lock leaves the data consistent enough to restore from.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

const RANGE_UNIT: &str = "a frequency";

fn read_range(min: &std::path::Path, max: &std::path::Path) -> Result<(u64, u64), SysfsError> {
    Ok((fs::read_u64(min, RANGE_UNIT)?, fs::read_u64(max, RANGE_UNIT)?))
}

/// Which limit of a min/max pair moves first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    Min,
    Max,
}

/// Kernels refuse (or silently clamp) a minimum above the maximum, so when the new minimum is above the
/// current maximum the maximum moves first (raising); otherwise the minimum moves first (lowering), which
/// also keeps the new maximum above the new minimum.
fn range_order(current: (u64, u64), target: (u64, u64)) -> First {
    if target.0 > current.1 { First::Max } else { First::Min }
}

/// Move a min/max pair from `current` to `target` in the safe order, recording each successful write.
fn write_range(
    paths: (&std::path::Path, &std::path::Path),
    current: (u64, u64),
    target: (u64, u64),
    written: &mut (Option<u64>, Option<u64>),
) -> Result<(), SysfsError> {
    let mut set_min = || fs::write(paths.0, &target.0.to_string()).map(|()| written.0 = Some(target.0));
    let min_first = range_order(current, target) == First::Min;
    if min_first {
        set_min()?;
    }
    fs::write(paths.1, &target.1.to_string())?;
    written.1 = Some(target.1);
    if !min_first {
        set_min()?;
    }
    Ok(())
}

impl Registry {
    fn install_handler(&mut self) -> Result<(), SysfsError> {
        if !self.handler_installed {
            install_handler()?;
            self.handler_installed = true;
        }
        Ok(())
    }

    /// Save the current content of `knobs` for `unit` and return the entry's id.
    fn save(&mut self, unit: Unit, knobs: Vec<Knob>) -> Result<u64, SysfsError> {
        self.install_handler()?;
        let slots = knobs
            .into_iter()
            .map(|knob| {
                let state = match &knob {
                    Knob::File(path) => State::File { original: fs::read(path)?, written: None },
                    Knob::Range { min, max } => State::Range { original: read_range(min, max)?, written: (None, None) },
                };
                Ok(Slot { knob, state })
            })
            .collect::<Result<Vec<_>, SysfsError>>()?;
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(id, Entry { unit, slots });
        Ok(id)
    }

    fn slot(&mut self, id: u64, index: usize) -> &mut Slot {
        &mut self.entries.get_mut(&id).expect("a claim's entry lives until the claim restores it").slots[index]
    }

    /// Write `value` to the file knob `index` of entry `id`.
    pub(crate) fn set_file(&mut self, id: u64, index: usize, value: &str) -> Result<(), SysfsError> {
        let slot = self.slot(id, index);
        let (Knob::File(path), State::File { written, .. }) = (&slot.knob, &mut slot.state) else {
            unreachable!("knob {index} is a file knob")
        };
        fs::write(path, value)?;
        *written = Some(value.to_owned());
        Ok(())
    }

    /// Set the range knob `index` of entry `id` to `min..=max`.
    pub(crate) fn set_range(&mut self, id: u64, index: usize, min: u64, max: u64) -> Result<(), SysfsError> {
        let slot = self.slot(id, index);
        let (Knob::Range { min: min_path, max: max_path }, State::Range { written, .. }) =
            (&slot.knob, &mut slot.state)
        else {
            unreachable!("knob {index} is a range knob")
        };
        let current = read_range(min_path, max_path)?;
        write_range((min_path, max_path), current, (min, max), written)
    }

    /// The knobs of entry `id` that hold something other than what was last written.
    fn overrides(&self, id: u64) -> Result<Vec<ClockOverride>, SysfsError> {
        let Some(entry) = self.entries.get(&id) else { return Ok(Vec::new()) };
        let mut found = Vec::new();
        for slot in &entry.slots {
            slot_overrides(entry.unit, slot, &mut found)?;
        }
        Ok(found)
    }

    /// Put entry `id` back and forget it; settings another tool changed since are left as they are.
    fn restore(&mut self, id: u64) -> Result<Vec<ClockOverride>, SysfsError> {
        let Some(entry) = self.entries.remove(&id) else { return Ok(Vec::new()) };
        let mut overridden = Vec::new();
        let mut first_error = None;
        // Undo in reverse order of saving, as a stack of changes.
        for slot in entry.slots.into_iter().rev() {
            if let Err(e) = restore_slot(entry.unit, slot, &mut overridden) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(overridden), Err)
    }

    /// Restore every entry (the signal path).
    pub(crate) fn restore_all(&mut self) -> Vec<Result<Vec<ClockOverride>, SysfsError>> {
        let ids: Vec<u64> = self.entries.keys().copied().collect();
        ids.into_iter().map(|id| self.restore(id)).collect()
    }
}

fn slot_overrides(unit: Unit, slot: &Slot, found: &mut Vec<ClockOverride>) -> Result<(), SysfsError> {
    let mut check = |path: &PathBuf, wrote: Option<String>, now: String| {
        if let Some(wrote) = wrote.filter(|w| *w != now) {
            found.push(ClockOverride { unit, path: path.clone(), wrote, found: now });
        }
    };
    match (&slot.knob, &slot.state) {
        (Knob::File(path), State::File { written, .. }) => check(path, written.clone(), fs::read(path)?),
        (Knob::Range { min, max }, State::Range { written, .. }) => {
            let now = read_range(min, max)?;
            check(min, written.0.map(|v| v.to_string()), now.0.to_string());
            check(max, written.1.map(|v| v.to_string()), now.1.to_string());
        }
        _ => unreachable!("a slot's state matches its knob"),
    }
    Ok(())
}

fn restore_slot(unit: Unit, mut slot: Slot, overridden: &mut Vec<ClockOverride>) -> Result<(), SysfsError> {
    slot_overrides(unit, &slot, overridden)?;
    match (&slot.knob, &mut slot.state) {
        (Knob::File(path), State::File { original, written }) => {
            // Only a file that still holds dynofa's value is dynofa's to put back.
            if written.as_ref().is_some_and(|w| *w == fs::read(path).unwrap_or_default()) {
                fs::write(path, original)?;
            }
        }
        (Knob::Range { min, max }, State::Range { original, written }) => {
            let now = read_range(min, max)?;
            let target = (
                if written.0 == Some(now.0) { original.0 } else { now.0 },
                if written.1 == Some(now.1) { original.1 } else { now.1 },
            );
            if target != now {
                write_range((min, max), now, target, written)?;
            }
        }
        _ => unreachable!("a slot's state matches its knob"),
    }
    Ok(())
}

/// Tell the user what a restore did not put back or failed to (on drop and on a signal there is no caller
/// to return it to).
fn report(result: Result<Vec<ClockOverride>, SysfsError>) {
    match result {
        Ok(overridden) => {
            for o in overridden {
                eprintln!("dynofa: left as found: {o}");
            }
        }
        Err(e) => eprintln!("dynofa: could not restore the clocks: {e}"),
    }
}

/// On SIGINT, SIGTERM or SIGHUP: restore every saved setting, then end the process as the signal would;
/// under [`stop_on_signal`] the first SIGINT or SIGTERM only sets the program's flag.
fn install_handler() -> Result<(), SysfsError> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|source| SysfsError::Signals { source })?;
    thread::Builder::new()
        .name("dynofa-restore".into())
        .spawn(move || {
            let mut asked = false;
            for signal in signals.forever() {
                let mut registry = lock();
                // A closed terminal (SIGHUP) leaves nowhere to report to: that one ends the process at once.
                if let Some(stop) = registry.stop.as_ref().filter(|_| !asked && signal != SIGHUP) {
                    stop.store(true, Ordering::SeqCst);
                    asked = true;
                    continue;
                }
                // The guard is held until the process ends so that no control writes after the restore.
                registry.restore_all().into_iter().for_each(report);
                // Ends the process with the signal's own status (130 for SIGINT in a shell).
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + signal);
            }
        })
        .map(drop)
        .map_err(|source| SysfsError::Signals { source })
}

/// Restore every setting any control of this process changed, as a signal would (for programs that handle
/// signals themselves). Each control also restores its own settings when dropped; both are idempotent.
pub fn restore_all() -> Vec<Result<Vec<ClockOverride>, SysfsError>> {
    lock().restore_all()
}

/// Let the program wind down by itself on Ctrl-C: from now on the first SIGINT or SIGTERM sets `stop`
/// (which the program polls, then drops or restores its controls) instead of restoring and exiting;
/// a second signal, and SIGHUP, still restore every saved setting and end the process at once.
pub fn stop_on_signal(stop: Arc<AtomicBool>) -> Result<(), SysfsError> {
    let mut registry = lock();
    registry.install_handler()?;
    registry.stop = Some(stop);
    Ok(())
}

/// A control's claim on saved settings: saved on the first pin, restored once (explicitly or on drop).
#[derive(Debug)]
pub(crate) struct Claim {
    unit: Unit,
    id: Option<u64>,
}

impl Claim {
    /// A claim for `unit` that has saved nothing yet.
    pub(crate) const fn new(unit: Unit) -> Self {
        Self { unit, id: None }
    }

    /// Pin to `khz` through `apply` (which writes the knobs and checks the read-back), saving `knobs` first
    /// if nothing is saved yet. If `apply` fails, the previous pin (`previous`) or else the original settings
    /// are put back, so the previous clock stays in force.
    pub(crate) fn pin(
        &mut self,
        knobs: impl FnOnce() -> Vec<Knob>,
        previous: Option<u32>,
        khz: u32,
        apply: impl Fn(&mut Registry, u64, u32) -> Result<(), SysfsError>,
    ) -> Result<(), SysfsError> {
        let mut registry = lock();
        let id = match self.id {
            Some(id) => id,
            None => *self.id.insert(registry.save(self.unit, knobs())?),
        };
        let result = apply(&mut registry, id, khz);
        if result.is_err() {
            match previous {
                // Best effort: the error that matters is the one being returned.
                Some(p) => drop(apply(&mut registry, id, p)),
                None => {
                    self.id = None;
                    report(registry.restore(id));
                }
            }
        }
        result
    }

    /// The saved knobs another tool changed since dynofa's last write.
    pub(crate) fn overrides(&self) -> Result<Vec<ClockOverride>, SysfsError> {
        self.id.map_or(Ok(Vec::new()), |id| lock().overrides(id))
    }

    /// Put the saved settings back (a no-op when nothing is saved, so calling it twice is harmless).
    pub(crate) fn restore(&mut self) -> Result<Vec<ClockOverride>, SysfsError> {
        self.id.take().map_or(Ok(Vec::new()), |id| lock().restore(id))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.id.is_some() {
            report(self.restore());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_moves_max_first_and_lowering_min_first() {
        // Pinned at 510 MHz, pin 1109 MHz: the new min is above the current max.
        assert_eq!(range_order((510, 510), (1109, 1109)), First::Max);
        // Pinned at 1109 MHz, pin 510 MHz: the new max is below the current min.
        assert_eq!(range_order((1109, 1109), (510, 510)), First::Min);
        // From the original range 114..1109 to a point inside it, then back.
        assert_eq!(range_order((114, 1109), (510, 510)), First::Min);
        assert_eq!(range_order((510, 510), (114, 1109)), First::Min);
        assert_eq!(range_order((1109, 1109), (114, 1109)), First::Min);
    }
}
