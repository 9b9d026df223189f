//! End-to-end and conformance tests over every HAL. The tests live in `tests/`; this library holds
//! the HAL conformance suite, written once against the core's traits: a platform implements
//! [`conformance::Platform`] and [`hal_conformance!`] turns the suite into its tests.

pub mod conformance;
