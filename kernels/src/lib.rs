//! CPU kernels and the CPU engine of dynofa (filled in by the CPU engine work).
