//! OFA's evaluation preprocessing against torchvision's output on the committed images
//! (`tests/fixtures`, see its README): PNGs decode identically in PIL and the `image` crate, so
//! their crops must be byte-identical; JPEG decoders (libjpeg-turbo in PIL, zune-jpeg here) differ:
//! measured, at most 1 level in under 1% of values for 4:4:4 and grey JPEGs (IDCT and colour
//! conversion rounding) and at most 4 levels (0.070 after normalisation) in up to 14% of values
//! for 4:2:0 and 4:2:2 ones, progressive too (zune-jpeg rounds chroma between its vertical and
//! horizontal upsampling passes, libjpeg-turbo's h2v2 fancy upsampling does not). The bounds below
//! leave some slack.

use std::path::Path;

use dynofa_kernels::preprocess::{eval_input, load_image, resize_crop, resize_size};
use safetensors::SafeTensors;

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

/// Largest difference in levels (0..255) between a JPEG crop here and torchvision's.
const JPEG_MAX_LEVELS: u8 = 6;
/// Largest share of a JPEG crop's values that may differ at all.
const JPEG_MAX_SHARE: f64 = 0.20;

#[test]
fn crops_match_torchvision() {
    let bytes = std::fs::read(fixtures().join("preprocess.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&bytes).unwrap();
    let norm = reference.tensor("normalise").unwrap();
    let norm: Vec<f32> = norm.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut cases = 0;
    for (name, view) in reference.iter().filter(|(n, _)| n.contains('@')) {
        let (file, r) = name.split_once('@').unwrap();
        let r: usize = r.parse().unwrap();
        assert_eq!(view.shape(), [r, r, 3]);
        let img = load_image(&fixtures().join(file)).unwrap();
        let ours = resize_crop(&img, resize_size(r), r);
        let want = view.data();
        let levels = ours.iter().zip(want).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        let share = ours.iter().zip(want).filter(|(a, b)| a != b).count() as f64 / want.len() as f64;
        // The same difference after ToTensor + Normalize, through torchvision's value of each byte.
        let normalised = ours
            .iter()
            .zip(want)
            .enumerate()
            .map(|(i, (&a, &b))| (norm[(i % 3) * 256 + a as usize] - norm[(i % 3) * 256 + b as usize]).abs())
            .fold(0.0f32, f32::max);
        report.push(format!(
            "{file} ({}x{}) r={r}: max {levels} levels ({normalised:.4} normalised), {:.2}% of values differ",
            img.width(),
            img.height(),
            share * 100.0
        ));
        let ok =
            if file.ends_with(".png") { levels == 0 } else { levels <= JPEG_MAX_LEVELS && share <= JPEG_MAX_SHARE };
        if !ok {
            failures.push(report.last().unwrap().clone());
        }
        cases += 1;
    }
    println!("{}", report.join("\n"));
    assert_eq!(cases, 13, "every committed image has a reference crop");
    assert!(failures.is_empty(), "crops differ from torchvision:\n{}", failures.join("\n"));
}

#[test]
fn normalisation_matches_torchvision_bit_for_bit() {
    let bytes = std::fs::read(fixtures().join("preprocess.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&bytes).unwrap();
    let view = reference.tensor("normalise").unwrap();
    assert_eq!(view.shape(), [3, 256]);
    let want: Vec<u32> = view.data().chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
    // A 1 x 1 crop of each byte value: eval_input at r = 1 is not a real resolution, so go
    // through a 256-pixel ramp image at its own size instead.
    let ramp = image::RgbImage::from_fn(256, 1, |x, _| image::Rgb([x as u8; 3]));
    let mut ours = vec![0.0; 3 * 256];
    dynofa_kernels::preprocess::normalise(ramp.as_raw(), &mut ours);
    let ours: Vec<u32> = ours.iter().map(|v| v.to_bits()).collect();
    assert_eq!(ours, want);
    // And eval_input composes the two steps.
    let img = load_image(&fixtures().join("images/brook/b.png")).unwrap();
    let x = eval_input(&img, 136);
    let crop = resize_crop(&img, resize_size(136), 136);
    assert_eq!(x[136 * 136 + 5], f32::from_bits(want[256 + crop[5 * 3 + 1] as usize]));
}
