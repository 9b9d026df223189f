//! The traits a platform implements so that the same runtime and controllers run on a Jetson, on
//! the host CPU and in the simulator.
//!
//! # For implementors
//! Each trait is small and states its contract in its method docs: units, monotonicity and what a
//! failure leaves behind. Errors implement [`Error`] so that generic code can react to an
//! [`ErrorKind`] without knowing the platform. embedded-hal 1.0 has no clock or frequency trait,
//! so these are the core's own; pacing uses embedded-hal's [`embedded_hal::delay::DelayNs`].
//!
//! # For users
//! Write generic code against these traits (the runtime loop) and let the platform decide
//! how time is measured and work is done: the simulator advances virtual time, a board computes.

use core::fmt;

use crate::config::SubnetConfig;
use crate::lut::Unit;

/// What kind of failure a HAL error is, so that generic code can decide what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The platform cannot do this at all (no DVFS in a container, no GPU).
    Unsupported,
    /// The platform could, but this process is not allowed to (file permissions).
    PermissionDenied,
    /// A value was refused (a frequency that is not an operating point, a wrong buffer size).
    InvalidInput,
    /// A sub-network is not prepared on this engine.
    NotPrepared,
    /// The hardware or driver failed.
    Device,
    /// Something else.
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unsupported => "unsupported on this platform",
            Self::PermissionDenied => "permission denied",
            Self::InvalidInput => "invalid input",
            Self::NotPrepared => "sub-network not prepared",
            Self::Device => "device failure",
            Self::Other => "other error",
        })
    }
}

/// A HAL error: anything that can say its [`ErrorKind`].
pub trait Error: fmt::Debug {
    /// The kind of failure.
    fn kind(&self) -> ErrorKind;
}

impl Error for core::convert::Infallible {
    fn kind(&self) -> ErrorKind {
        match *self {}
    }
}

impl Error for ErrorKind {
    fn kind(&self) -> ErrorKind {
        *self
    }
}

/// Types that name their error type.
pub trait ErrorType {
    /// The error of every fallible method.
    type Error: Error;
}

impl<T: ErrorType + ?Sized> ErrorType for &mut T {
    type Error = T::Error;
}

/// A monotonic clock.
pub trait Clock: ErrorType {
    /// Nanoseconds since an arbitrary fixed origin.
    ///
    /// MUST never decrease between calls on the same clock. A simulated clock moves only when the
    /// simulation advances it.
    fn now_ns(&mut self) -> Result<u64, Self::Error>;

    /// Nanoseconds elapsed since `start` (a value this clock returned earlier).
    #[inline]
    fn since_ns(&mut self, start: u64) -> Result<u64, Self::Error> {
        Ok(self.now_ns()?.saturating_sub(start))
    }
}

/// Runs frames of the currently active sub-network.
pub trait InferenceEngine: ErrorType {
    /// Make `config` the sub-network that [`InferenceEngine::infer`] runs.
    ///
    /// MUST NOT allocate or copy weights on a prepared engine, so that it is cheap enough to call
    /// between any two frames. On error the previously active sub-network stays active.
    fn activate(&mut self, config: &SubnetConfig) -> Result<(), Self::Error>;

    /// Run one frame: `input` is NCHW f32 `[1, 3, r, r]` at the active resolution, `output`
    /// receives `[1, 1000]` logits.
    ///
    /// MUST NOT allocate. Wrong buffer sizes are an [`ErrorKind::InvalidInput`] error, not a panic.
    /// Engines that only model time (the simulator) may ignore the buffers.
    fn infer(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), Self::Error>;
}

/// Clock control of one processing unit (DVFS).
pub trait FrequencyControl: ErrorType {
    /// The unit this controls.
    fn unit(&self) -> Unit;

    /// The operating points in kHz, ascending. Empty when the platform cannot change clocks.
    fn operating_points(&self) -> &[u32];

    /// The current clock in kHz.
    fn current_khz(&mut self) -> Result<u32, Self::Error>;

    /// Pin the clock to `khz`, which MUST be one of [`FrequencyControl::operating_points`].
    ///
    /// On success the clock reads back as `khz`; on error the previous clock stays in force.
    fn set_khz(&mut self, khz: u32) -> Result<(), Self::Error>;

    /// Pin the highest operating point.
    #[inline]
    fn set_max(&mut self) -> Result<(), Self::Error> {
        match self.operating_points().last().copied() {
            Some(max) => self.set_khz(max),
            None => Ok(()),
        }
    }
}

/// How busy a processing unit is.
pub trait LoadSensor: ErrorType {
    /// The unit this senses.
    fn unit(&self) -> Unit;

    /// Busy share since the previous call (or since creation), in per mille (0..=1000).
    fn load_permille(&mut self) -> Result<u16, Self::Error>;
}
