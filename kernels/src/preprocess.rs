//! OFA's evaluation preprocessing, bit for bit as torchvision does it on PIL images:
//! `Resize(ceil(r / 0.875))` (short side, bilinear with antialiasing), `CenterCrop(r)`,
//! `ToTensor()`, `Normalize(ImageNet mean, std)`, giving f32 `[3, r, r]`.
//!
//! torchvision's `Resize` on a PIL image is PIL's `Image.resize(..., BILINEAR)`: a separable
//! triangle filter whose support is scaled by the reduction factor, coefficients normalised in
//! f64 and rounded to 22-bit fixed point, the horizontal pass first and its result rounded to 8
//! bits before the vertical pass. [`resize_crop`] reproduces that arithmetic, so from the same
//! decoded pixels it gives exactly PIL's bytes; it computes only the pixels the crop keeps (each
//! output pixel depends on its own coefficients alone, so this changes no value).

use std::ops::Range;
use std::path::{Path, PathBuf};

use image::{DynamicImage, RgbImage};

/// ImageNet channel means (torchvision's `Normalize` in OFA's evaluation).
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The file could not be read.
    #[error("{}: cannot read the file: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a JPEG or PNG that decodes.
    #[error("{}: cannot decode the image ({source}); JPEG and PNG are supported", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: image::ImageError,
    },
}

/// The short side OFA resizes to before cropping `r x r`: `int(math.ceil(r / 0.875))`.
pub fn resize_size(r: usize) -> usize {
    (r as f64 / 0.875).ceil() as usize
}

/// Decode a JPEG or PNG to 8-bit RGB, as torchvision's loader (`PIL.Image.open(f).convert("RGB")`):
/// grey is replicated, alpha dropped, a palette expanded; 16-bit samples keep their high byte as
/// PIL does for 16-bit RGB.
pub fn decode(bytes: &[u8], path: &Path) -> Result<RgbImage, ImageError> {
    let img = image::load_from_memory(bytes).map_err(|source| ImageError::Decode { path: path.into(), source })?;
    Ok(match img {
        DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_) => {
            let wide = img.to_rgb16();
            RgbImage::from_fn(wide.width(), wide.height(), |x, y| {
                image::Rgb(wide.get_pixel(x, y).0.map(|v| (v >> 8) as u8))
            })
        }
        other => other.to_rgb8(),
    })
}

/// Read and decode the image at `path` (see [`decode`]).
pub fn load_image(path: &Path) -> Result<RgbImage, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io { path: path.into(), source })?;
    decode(&bytes, path)
}

/// The size torchvision's `Resize(size)` gives an image of `w x h`: the short side becomes
/// `size`, the long side `int(size * long / short)`.
pub fn resized_dims(w: usize, h: usize, size: usize) -> (usize, usize) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = ((size * long) as f64 / short as f64) as usize;
    if w <= h { (size, new_long) } else { (new_long, size) }
}

/// torchvision's centre-crop offset: `int(round((size - crop) / 2.0))`, Python's round (half to even).
pub fn crop_offset(size: usize, crop: usize) -> usize {
    let d = size - crop;
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 { half + 1 } else { half }
}

/// Fixed-point bits of PIL's 8-bit resampling coefficients (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// PIL's coefficients of one axis for the outputs `outputs` of a resize `in_size -> out_size`:
/// for each output, its first input and its fixed-point weights.
struct Axis {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

impl Axis {
    /// `precompute_coeffs` and `normalize_coeffs_8bpc` of PIL's Resample.c with the bilinear
    /// filter and the box (0, in_size).
    fn new(in_size: usize, out_size: usize, outputs: Range<usize>) -> Self {
        let triangle = |x: f64| {
            let x = x.abs();
            if x < 1.0 { 1.0 - x } else { 0.0 }
        };
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale;
        let ss = 1.0 / filterscale;
        let (mut first, mut weights) = (Vec::with_capacity(outputs.len()), Vec::with_capacity(outputs.len()));
        for xx in outputs {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let w: Vec<f64> = (xmin..xmax).map(|x| triangle((x as f64 - center + 0.5) * ss)).collect();
            let ww: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&k| {
                    let k = if ww != 0.0 { k / ww } else { k };
                    let f = k * (1 << PRECISION_BITS) as f64;
                    (if k < 0.0 { f - 0.5 } else { f + 0.5 }) as i32
                })
                .collect();
            first.push(xmin as usize);
            weights.push(fixed);
        }
        Axis { first, weights }
    }

    /// Input positions any output reads.
    fn span(&self) -> Range<usize> {
        let start = self.first.iter().copied().min().unwrap_or(0);
        let end = self.first.iter().zip(&self.weights).map(|(f, w)| f + w.len()).max().unwrap_or(0);
        start..end
    }
}

/// PIL's `clip8`: the fixed-point sum to a byte.
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One output sample: PIL starts each sum at half an output step, so the shift rounds.
fn sample(pixels: impl Iterator<Item = u8>, weights: &[i32]) -> u8 {
    clip8(pixels.zip(weights).fold(1 << (PRECISION_BITS - 1), |s, (p, &k)| s + p as i32 * k))
}

/// torchvision's `Resize(size)` then `CenterCrop(crop)` of an RGB image, as `[crop][crop][3]` bytes.
///
/// # Panics
/// If `crop > size` (torchvision would pad; OFA never asks for it: `size = resize_size(crop)`).
pub fn resize_crop(img: &RgbImage, size: usize, crop: usize) -> Vec<u8> {
    assert!(crop <= size, "the crop ({crop}) is larger than the resized short side ({size})");
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (nw, nh) = resized_dims(w, h, size);
    let (left, top) = (crop_offset(nw, crop), crop_offset(nh, crop));
    let src = img.as_raw();
    // PIL skips a pass whose size does not change (it would be the identity anyway).
    let horizontal = (nw != w).then(|| Axis::new(w, nw, left..left + crop));
    let vertical = (nh != h).then(|| Axis::new(h, nh, top..top + crop));
    let rows = vertical.as_ref().map_or(top..top + crop, Axis::span);
    // Horizontal pass over the input rows the vertical pass reads: [rows][crop][3].
    let mut temp = vec![0u8; rows.len() * crop * 3];
    for (t, y) in temp.chunks_exact_mut(crop * 3).zip(rows.clone()) {
        let line = &src[y * w * 3..(y + 1) * w * 3];
        for (x, out) in t.chunks_exact_mut(3).enumerate() {
            for (c, o) in out.iter_mut().enumerate() {
                *o = match &horizontal {
                    Some(ax) => {
                        let (first, k) = (ax.first[x], &ax.weights[x]);
                        sample((first..first + k.len()).map(|i| line[i * 3 + c]), k)
                    }
                    None => line[(left + x) * 3 + c],
                };
            }
        }
    }
    let mut out = vec![0u8; crop * crop * 3];
    for (y, row) in out.chunks_exact_mut(crop * 3).enumerate() {
        for (i, o) in row.iter_mut().enumerate() {
            *o = match &vertical {
                Some(ax) => {
                    let (first, k) = (ax.first[y] - rows.start, &ax.weights[y]);
                    sample((first..first + k.len()).map(|r| temp[r * crop * 3 + i]), k)
                }
                None => temp[y * crop * 3 + i],
            };
        }
    }
    out
}

/// `ToTensor()` and `Normalize(MEAN, STD)` of `[r][r][3]` bytes: f32 `[3][r][r]`, the same
/// operations in the same order as torch (`v / 255`, `- mean`, `/ std`, each rounded to f32).
pub fn normalise(hwc: &[u8], out: &mut [f32]) {
    let hw = hwc.len() / 3;
    assert_eq!(out.len(), hwc.len(), "the output holds 3 x r x r values");
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * hw + i] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
}

/// OFA's evaluation transform of a decoded image for resolution `r`: f32 `[3, r, r]`, NCHW.
pub fn eval_input(img: &RgbImage, r: usize) -> Vec<f32> {
    let crop = resize_crop(img, resize_size(r), r);
    let mut out = vec![0.0; 3 * r * r];
    normalise(&crop, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_offsets_follow_torchvision() {
        assert_eq!([128, 160, 224].map(resize_size), [147, 183, 256]);
        assert_eq!(resized_dims(500, 375, 256), (341, 256));
        assert_eq!(resized_dims(375, 500, 256), (256, 341));
        assert_eq!(resized_dims(97, 130, 183), (183, 245));
        // round(2.5) = 2, round(3.5) = 4, round(0.5) = 0.
        assert_eq!([crop_offset(229, 224), crop_offset(231, 224), crop_offset(225, 224)], [2, 4, 0]);
    }

    #[test]
    fn a_flat_image_stays_flat_and_normalises_to_the_formula() {
        let img = RgbImage::from_pixel(301, 199, image::Rgb([10, 128, 250]));
        let crop = resize_crop(&img, 183, 160);
        assert!(crop.chunks_exact(3).all(|p| p == [10, 128, 250]));
        let x = eval_input(&img, 160);
        assert_eq!(x[0], (10.0f32 / 255.0 - 0.485) / 0.229);
        assert_eq!(x[160 * 160 * 2 + 7], (250.0f32 / 255.0 - 0.406) / 0.225);
    }

    #[test]
    fn halving_averages_neighbours_like_a_box() {
        // Halving with the support-scaled triangle weighs the 4 nearest inputs 1/8, 3/8, 3/8, 1/8
        // (a naive 2-tap bilinear would average only the middle two).
        let img = RgbImage::from_fn(8, 8, |x, _| image::Rgb([(x * 32) as u8; 3]));
        let out = resize_crop(&img, 4, 4);
        // Output column 1 centres at input 3.0: inputs 1..5 weigh (1, 3, 3, 1) / 8.
        let want = ((32 + 3 * 64 + 3 * 96 + 128) as f64 / 8.0).round() as u8;
        assert_eq!(out[3], want);
    }
}
