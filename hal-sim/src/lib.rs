//! The simulated Jetson (filled in by the runtime manager work).
