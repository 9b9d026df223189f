//! Where `dynofa run`'s frames come from, and how a frame reaches the active sub-network's resolution.
//!
//! Every frame is a normalised NCHW f32 tensor `[1, 3, 224, 224]` (ImageNet mean and std): synthetic
//! (a moving pattern, computed per frame) or decoded from an image folder once at start-up with OFA's
//! evaluation transform for 224 (`dynofa_kernels::preprocess`: short side to 256, centre crop 224).
//! [`FrameEngine`] then resamples the frame bilinearly to the resolution of the active sub-network
//! inside `infer`, so a switch of resolution never needs a frame prepared for it in advance (OFA's
//! evaluation at r would resize to r / 0.875 and crop r: nearly the same view).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dynofa_core::SubnetConfig;
use dynofa_core::arch::{IN_CHANNELS, MAX_RESOLUTION};
use dynofa_core::hal::{Error as HalError, ErrorKind, ErrorType, InferenceEngine};
use dynofa_kernels::preprocess::{MEAN, STD, eval_input, load_image};

use super::RunError;

/// The side of every frame: the supernet's largest resolution.
pub const FRAME_SIZE: usize = MAX_RESOLUTION as usize;
/// Values in one frame.
pub const FRAME_LEN: usize = IN_CHANNELS * FRAME_SIZE * FRAME_SIZE;

/// Per channel, the normalised value of each 8-bit level.
fn levels() -> [[f32; 256]; 3] {
    core::array::from_fn(|c| core::array::from_fn(|v| (v as f32 / 255.0 - MEAN[c]) / STD[c]))
}

/// A stream of frames (a clone for each model's thread shares the decoded images).
#[derive(Debug, Clone)]
pub enum FrameSource {
    /// A moving pattern computed per frame.
    Synthetic {
        /// Normalised values of each 8-bit level per channel.
        levels: Box<[[f32; 256]; 3]>,
        /// The frame being handed out.
        scratch: Vec<f32>,
    },
    /// Decoded images, handed out in turn.
    Images {
        /// Their names, for messages.
        names: Arc<[PathBuf]>,
        /// The frames.
        frames: Arc<[Vec<f32>]>,
    },
}

impl FrameSource {
    /// Synthetic frames.
    pub fn synthetic() -> Self {
        FrameSource::Synthetic { levels: Box::new(levels()), scratch: vec![0.0; FRAME_LEN] }
    }

    /// The images of `dir` (JPEG and PNG, in name order, at most `max`), decoded and transformed now.
    /// Files that do not decode are skipped with a warning through `warn`.
    pub fn images(dir: &Path, max: usize, warn: &mut dyn FnMut(String)) -> Result<Self, RunError> {
        let bad = |reason: String| RunError::Images { dir: dir.into(), reason };
        let listing = std::fs::read_dir(dir).map_err(|e| bad(format!("cannot list the folder: {e}")))?;
        let mut paths: Vec<PathBuf> = listing
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
                matches!(ext.as_str(), "jpg" | "jpeg" | "png")
            })
            .collect();
        paths.sort();
        let (mut names, mut frames) = (Vec::new(), Vec::new());
        for path in paths.into_iter().take(max) {
            match load_image(&path) {
                Ok(img) => {
                    frames.push(eval_input(&img, FRAME_SIZE));
                    names.push(path);
                }
                Err(e) => warn(format!("skipped: {e}")),
            }
        }
        if frames.is_empty() {
            return Err(bad("no JPEG or PNG image that decodes (files ending .jpg, .jpeg or .png)".into()));
        }
        Ok(FrameSource::Images { names: names.into(), frames: frames.into() })
    }

    /// What the frames are, for the start-up report.
    pub fn describe(&self) -> String {
        match self {
            FrameSource::Synthetic { .. } => "synthetic frames (a moving pattern)".into(),
            FrameSource::Images { names, .. } => {
                let dir = names[0].parent().unwrap_or(Path::new(".")).display();
                format!("{} images from {dir}, in turn", names.len())
            }
        }
    }

    /// Frame `index`: `[1, 3, 224, 224]`, normalised.
    pub fn frame(&mut self, index: u64) -> &[f32] {
        match self {
            FrameSource::Synthetic { levels, scratch } => {
                pattern(levels, index, scratch);
                scratch
            }
            FrameSource::Images { frames, .. } => &frames[(index % frames.len() as u64) as usize],
        }
    }
}

/// Bars and a checkerboard that drift with the frame index, so that consecutive frames differ.
fn pattern(levels: &[[f32; 256]; 3], index: u64, out: &mut [f32]) {
    let t = index as usize;
    for (c, plane) in out.chunks_exact_mut(FRAME_SIZE * FRAME_SIZE).enumerate() {
        for (y, row) in plane.chunks_exact_mut(FRAME_SIZE).enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                let level = ((x * (c + 1) + 3 * t) ^ (y * 2 + t * (c + 2))) & 0xff;
                *v = levels[c][level];
            }
        }
    }
}

/// Resample planar `[3, s, s]` to `[3, r, r]` bilinearly (half-pixel centres, as PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)`), `s` and `r` at most [`FRAME_SIZE`].
/// Allocation-free.
pub fn resample(src: &[f32], s: usize, dst: &mut [f32], r: usize) {
    // The taps depend on the output coordinate only, and are the same across and down: computed
    // once per call rather than per pixel (this took 4 to 6 ns a pixel, as long as a GPU frame).
    let scale = s as f32 / r as f32;
    let mut taps = [(0usize, 0usize, 0.0f32); FRAME_SIZE];
    for (o, tap) in taps[..r].iter_mut().enumerate() {
        let f = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
        let i = (f as usize).min(s - 1);
        *tap = (i, (i + 1).min(s - 1), f - i as f32);
    }
    let taps = &taps[..r];
    // The two source rows of an output row blended down first, so that across it is one lerp a
    // pixel from a row in cache.
    let mut blended = [0.0f32; FRAME_SIZE];
    let blended = &mut blended[..s];
    for (sp, dp) in src.chunks_exact(s * s).zip(dst.chunks_exact_mut(r * r)) {
        for (row, &(y0, y1, wy)) in dp.chunks_exact_mut(r).zip(taps) {
            let (a, b) = (&sp[y0 * s..][..s], &sp[y1 * s..][..s]);
            for ((m, &top), &bottom) in blended.iter_mut().zip(a).zip(b) {
                *m = top + (bottom - top) * wy;
            }
            for (v, &(x0, x1, wx)) in row.iter_mut().zip(taps) {
                let (left, right) = (blended[x0], blended[x1]);
                *v = left + (right - left) * wx;
            }
        }
    }
}

/// Why a [`FrameEngine`] refused a call.
#[derive(Debug, thiserror::Error)]
pub enum FrameError<E: std::fmt::Debug + std::fmt::Display> {
    /// The engine failed.
    #[error("{0}")]
    Engine(E),
    /// The input is neither a whole frame nor a tensor at the active resolution.
    #[error(
        "input has {found} values: give a frame f32 [1, 3, {FRAME_SIZE}, {FRAME_SIZE}] or a tensor at the active resolution {r}"
    )]
    Size {
        /// Values given.
        found: usize,
        /// The active resolution.
        r: usize,
    },
}

impl<E: HalError + std::fmt::Display> HalError for FrameError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            FrameError::Engine(e) => e.kind(),
            FrameError::Size { .. } => ErrorKind::InvalidInput,
        }
    }
}

/// An engine that takes whole frames and times its activations.
///
/// `infer` accepts a frame `[1, 3, 224, 224]`, which it resamples to the active resolution (part of
/// running a sub-network at its resolution, so inside the timed frame), or a tensor already at the
/// active resolution, which it passes on. `activate` is timed: that is a switch's cost.
#[derive(Debug)]
pub struct FrameEngine<E> {
    inner: E,
    r: usize,
    scratch: Vec<f32>,
    activations: u64,
    activate_ns: u64,
}

impl<E> FrameEngine<E> {
    /// Wrap `inner`.
    pub fn new(inner: E) -> Self {
        FrameEngine { inner, r: 0, scratch: vec![0.0; FRAME_LEN], activations: 0, activate_ns: 0 }
    }

    /// Activations so far and the time they took in total, in ns.
    pub fn activations(&self) -> (u64, u64) {
        (self.activations, self.activate_ns)
    }

    /// The wrapped engine.
    pub fn inner_mut(&mut self) -> &mut E {
        &mut self.inner
    }
}

impl<E: InferenceEngine> ErrorType for FrameEngine<E>
where
    E::Error: std::fmt::Display,
{
    type Error = FrameError<E::Error>;
}

impl<E: InferenceEngine> InferenceEngine for FrameEngine<E>
where
    E::Error: std::fmt::Display,
{
    fn activate(&mut self, config: &SubnetConfig) -> Result<(), Self::Error> {
        let start = Instant::now();
        let result = self.inner.activate(config).map_err(FrameError::Engine);
        self.activate_ns += start.elapsed().as_nanos() as u64;
        self.activations += 1;
        if result.is_ok() {
            self.r = usize::from(config.r);
        }
        result
    }

    fn infer(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), Self::Error> {
        let r = self.r;
        let at_r = IN_CHANNELS * r * r;
        if input.len() == at_r || r == 0 {
            return self.inner.infer(input, output).map_err(FrameError::Engine);
        }
        if input.len() != FRAME_LEN {
            return Err(FrameError::Size { found: input.len(), r });
        }
        resample(input, FRAME_SIZE, &mut self.scratch[..at_r], r);
        self.inner.infer(&self.scratch[..at_r], output).map_err(FrameError::Engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_constants_and_ramps() {
        let s = 8;
        let src: Vec<f32> = (0..3 * s * s).map(|i| ((i / (s * s)) as f32) * 10.0 + (i % s) as f32).collect();
        let mut dst = vec![0.0; 3 * 4 * 4];
        resample(&src, s, &mut dst, 4);
        // Halving: output x samples input x = 2x + 0.5, so a ramp in x gives 0.5, 2.5, ...
        assert_eq!(&dst[..4], &[0.5, 2.5, 4.5, 6.5]);
        assert_eq!(dst[16], 10.5);
        // Same size is the identity.
        let mut same = vec![0.0; src.len()];
        resample(&src, s, &mut same, s);
        assert_eq!(same, src);
    }

    #[test]
    fn resampling_matches_the_per_pixel_formula() {
        // PyTorch's bilinear weights pixel by pixel; `resample` blends the rows down first, so it
        // may differ in the last bits only.
        let s = FRAME_SIZE;
        let mut state = 0x2021u32;
        let src: Vec<f32> = (0..FRAME_LEN)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
            })
            .collect();
        for r in [128, 160, 208, 224] {
            let mut dst = vec![0.0; 3 * r * r];
            resample(&src, s, &mut dst, r);
            let scale = s as f32 / r as f32;
            let tap = |o: usize| {
                let f = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let i = (f as usize).min(s - 1);
                (i, (i + 1).min(s - 1), f - i as f32)
            };
            for (c, (y, x)) in (0..3).flat_map(|c| (0..r).flat_map(move |y| (0..r).map(move |x| (c, (y, x))))) {
                let ((y0, y1, wy), (x0, x1, wx)) = (tap(y), tap(x));
                let at = |yy: usize, xx: usize| src[(c * s + yy) * s + xx];
                let top = at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx;
                let bottom = at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx;
                let want = top * (1.0 - wy) + bottom * wy;
                let got = dst[(c * r + y) * r + x];
                assert!((got - want).abs() < 1e-5, "r {r} c {c} y {y} x {x}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn synthetic_frames_move_and_images_decode() {
        let mut src = FrameSource::synthetic();
        let a = src.frame(0).to_vec();
        let b = src.frame(1).to_vec();
        assert_eq!(a.len(), FRAME_LEN);
        assert_ne!(a, b);
        assert!(a.iter().all(|v| v.is_finite() && v.abs() < 3.0));

        let dir = tempfile::tempdir().unwrap();
        // A 300x200 red image: shorter side to 256, crop 224; every pixel is pure red.
        image::RgbImage::from_pixel(300, 200, image::Rgb([255, 0, 0])).save(dir.path().join("a.png")).unwrap();
        std::fs::write(dir.path().join("b.jpg"), b"not a jpeg").unwrap();
        let mut warnings = Vec::new();
        let mut src = FrameSource::images(dir.path(), 10, &mut |w| warnings.push(w)).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("b.jpg"));
        let f = src.frame(7);
        let plane = FRAME_SIZE * FRAME_SIZE;
        assert!((f[0] - (1.0 - MEAN[0]) / STD[0]).abs() < 1e-5);
        assert!((f[plane + 1234] - (0.0 - MEAN[1]) / STD[1]).abs() < 1e-5);
        let empty = tempfile::tempdir().unwrap();
        let err = FrameSource::images(empty.path(), 10, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("no JPEG or PNG"), "{err}");
    }
}
