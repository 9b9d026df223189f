//! The Linux/Jetson platform and the `dynofa` program.

pub mod design;
pub mod figures;
pub mod gpu;
pub mod linux;
pub mod run;
