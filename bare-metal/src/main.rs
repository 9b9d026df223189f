//! Proof that dynofa-core is `no_std` and allocation-free: a bare-metal binary (no runtime crate, no
//! global allocator) that parses a LUT and answers a budget query. CI links it for
//! `thumbv7em-none-eabihf`; rustc refuses to link it if anything in the graph needs `alloc`.
//! On a host it is an ordinary program printing the same answer.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

use dynofa_core::{Lut, OperatingPoint, Unit};

const LUT_JSON: &[u8] = br#"{"version":1,"width":1.2,"source":"bare-metal example","entries":[
 {"ks":[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],"e":[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],
  "d":[2,2,2,2,2],"r":160,"top1":76.1,"top1_source":"predicted",
  "latency":[{"unit":"gpu","freq_khz":1109250,"mean_ms":11.0,"std_ms":0.4}]},
 {"ks":[7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7],"e":[6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6],
  "d":[4,4,4,4,4],"r":224,"top1":84.9,"top1_source":"predicted",
  "latency":[{"unit":"gpu","freq_khz":1109250,"mean_ms":40.0,"std_ms":1.5}]}]}"#;

/// Index of the best entry within a 20 ms budget, or 255 when the table is refused.
fn best_within_20ms() -> u8 {
    let op = OperatingPoint { unit: Unit::Gpu, freq_khz: 1_109_250 };
    match Lut::<4>::from_json(LUT_JSON) {
        Ok(lut) => lut.best_under(op, 20.0).map_or(254, |i| i as u8),
        Err(_) => 255,
    }
}

#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    core::hint::black_box(best_within_20ms());
    loop {}
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[cfg(not(target_os = "none"))]
fn main() {
    println!("best entry within 20 ms: {}", best_within_20ms());
}
