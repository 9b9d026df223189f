//! The LUT JSON parser (`Lut::from_json`): any bytes give a table or a typed error; a table that
//! parses writes back to JSON that parses to the same table, answers every query, and drives both
//! controllers without a panic.

#![no_main]

use dynofa_core::control::{DynamicOfa, Dynofa, DynofaParams, Goal, ModelSpec, Policy, StepParams};
use dynofa_core::lut::{Lut, OperatingPoint, Unit};
use libfuzzer_sys::fuzz_target;

type FuzzLut = Lut<64>;

fuzz_target!(|data: &[u8]| {
    let Ok(lut) = FuzzLut::from_json(data) else { return };
    let mut buf = vec![0u8; 1 << 20];
    let n = lut.to_json(&mut buf).expect("a parsed table fits 1 MiB");
    assert_eq!(FuzzLut::from_json(&buf[..n]).as_ref(), Ok(&lut), "the written table reads back the same");

    let mut ops =
        vec![OperatingPoint { unit: Unit::Gpu, freq_khz: 0 }, OperatingPoint { unit: Unit::Cpu, freq_khz: 1 }];
    ops.extend(lut.entries().iter().flat_map(|e| e.latency.iter().map(|l| l.point())).take(4));
    for &op in &ops {
        for &i in &lut.pareto(op) {
            assert!(i < lut.len());
        }
        for budget in [0.0, 1.0, 50.0, f32::INFINITY, f32::NAN] {
            assert!(lut.best_under(op, budget).is_none_or(|i| i < lut.len()));
        }
        for from in [0, lut.len().saturating_sub(1), lut.len()] {
            assert!(lut.next_faster(op, from).is_none_or(|i| i < lut.len()));
            assert!(lut.next_more_accurate(op, from).is_none_or(|i| i < lut.len()));
        }
    }

    // Targets and latencies come from the input's own bytes so that the fuzzer steers them too.
    let byte = |i: usize| f32::from(data[i % data.len()]);
    let specs = [
        ModelSpec { unit: Unit::Gpu, goal: Goal::target(1.0 + byte(0)) },
        ModelSpec { unit: Unit::Cpu, goal: Goal { period_ms: byte(1), ..Goal::target(1.0 + 4.0 * byte(2)) } },
    ];
    let clocks = [ops.get(2).map_or(0, |o| o.freq_khz), 0];
    let policies: [Option<Box<dyn Policy + '_>>; 2] = [
        Dynofa::new(&lut, &specs, clocks, DynofaParams::default()).ok().map(|p| Box::new(p) as _),
        DynamicOfa::new(&lut, &specs[..1], clocks, StepParams::default()).ok().map(|p| Box::new(p) as _),
    ];
    for mut policy in policies.into_iter().flatten() {
        for i in 0..64 {
            let model = i % policy.models();
            let d = policy.observe(model, byte(i) * 0.7 + 0.01);
            assert!(policy.entry(model) < lut.len());
            assert!((0..policy.models()).all(|k| d.switch(k).is_none_or(|e| e < lut.len())));
            if i % 16 == 15 {
                let _ = policy.set_goal(model, Goal::target(byte(i + 1)));
                let _ = policy.clock_changed(Unit::Gpu, u32::from(data[i % data.len()]) * 10_000);
            }
        }
    }
});
