//! Scenario files (`Scenario::from_json`): any text gives a scenario or an error naming it; a
//! scenario that loads simulates (shortened to two seconds) under every policy without a panic.

#![no_main]

use std::sync::OnceLock;

use dynofa_hal_sim::sim::PolicyKind;
use dynofa_hal_sim::{Scenario, SimLut, dynamic_ofa_lut_path, load_lut, simulate};
use libfuzzer_sys::fuzz_target;

fn lut() -> &'static SimLut {
    static LUT: OnceLock<SimLut> = OnceLock::new();
    LUT.get_or_init(|| load_lut(&dynamic_ofa_lut_path()).expect("luts/dynamic-ofa-nx.json loads"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut scenario = match Scenario::from_json(text, "fuzz") {
        Ok(s) => s,
        Err(e) => {
            assert!(e.to_string().starts_with("scenario fuzz: "), "{e}");
            return;
        }
    };
    scenario.duration_s = scenario.duration_s.min(2.0);
    for policy in PolicyKind::ALL {
        // A policy may refuse a scenario (no entry for a unit); it must not panic.
        let _ = simulate(&scenario, policy, lut());
    }
});
