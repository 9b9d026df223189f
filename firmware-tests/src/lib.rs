//! End-to-end and conformance tests over every HAL live in `tests/`.
