//! Logging that costs nothing unless the `defmt` feature is on.
//!
//! Host test binaries built with the feature need a global logger and a timestamp; the core's own
//! unit tests provide a silent one below, and `dynofa_core::defmt_test_logger!()` gives other test
//! binaries the same.

/// Log a decision at debug level through defmt when the feature is on.
#[allow(unused_macros)]
macro_rules! debug {
    ($($arg:tt)*) => {{
        #[cfg(feature = "defmt")]
        defmt::debug!($($arg)*);
    }};
}

/// Define a silent defmt global logger and timestamp for a host test binary.
#[cfg(feature = "defmt")]
#[macro_export]
macro_rules! defmt_test_logger {
    () => {
        #[defmt::global_logger]
        struct SilentLogger;
        // SAFETY: the logger does nothing, so there is no state for concurrent use to corrupt.
        unsafe impl defmt::Logger for SilentLogger {
            fn acquire() {}
            unsafe fn flush() {}
            unsafe fn release() {}
            unsafe fn write(_bytes: &[u8]) {}
        }
        defmt::timestamp!("{=u64}", 0);
    };
}

/// Without the `defmt` feature there is nothing to define.
#[cfg(not(feature = "defmt"))]
#[macro_export]
macro_rules! defmt_test_logger {
    () => {};
}

#[cfg(all(test, feature = "defmt"))]
crate::defmt_test_logger!();
