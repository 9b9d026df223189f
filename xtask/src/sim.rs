//! `cargo xtask sim-table` and `cargo xtask golden-traces`: the simulator's scenarios x policies
//! table (with the runtime manager's acceptance checks) and the refresh of the scenario goldens.

use anyhow::Result;

use crate::util::{cargo, run};

/// Print the scenarios x policies table of `dynofa-sim` (release build) and check acceptance.
pub fn table() -> Result<()> {
    run(cargo().args(["run", "--release", "-p", "dynofa-hal-sim", "--bin", "dynofa-sim", "--", "table"]))
}

/// Rewrite `firmware-tests/golden/*.trace` from the current simulator.
pub fn golden_traces() -> Result<()> {
    run(cargo().args(["test", "-p", "dynofa-firmware-tests", "--test", "scenarios"]).env("DYNOFA_BLESS", "1"))
}
