//! ImageNet-style image folders as torchvision's `ImageFolder` reads them, the labels that map
//! their class folders to the network's classes, and the seeded choice of calibration images.

use std::path::{Path, PathBuf};

use dynofa_core::arch::NUM_CLASSES;

use crate::rng::SplitMix64;

/// File endings torchvision's `ImageFolder` takes as images (compared case-insensitively).
const IMG_EXTENSIONS: [&str; 9] = [".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"];
/// The ones this crate decodes.
const DECODED: [&str; 3] = [".jpg", ".jpeg", ".png"];

/// Why an image folder or a labels file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// A folder or file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The folder does not have the ImageFolder layout.
    #[error("{}: {what}; expected one sub-folder per class holding JPEG or PNG files", path.display())]
    Layout {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// An image in a format torchvision reads but this build does not.
    #[error("{}: only JPEG and PNG images are decoded; convert it (torchvision would read it, so skipping it would change the results)", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
    },
    /// The labels file is malformed or does not cover the classes.
    #[error("{}: {what}", path.display())]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// An image folder: class sub-folders in sorted order, and every image with its class index.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The folder.
    pub root: PathBuf,
    /// Class folder names, sorted (torchvision's class order).
    pub classes: Vec<String>,
    /// Every image and its class index (into `classes`), in torchvision's order.
    pub samples: Vec<(PathBuf, usize)>,
}

fn read_dir(path: &Path) -> Result<Vec<std::fs::DirEntry>, DatasetError> {
    let io = |source| DatasetError::Io { path: path.into(), source };
    std::fs::read_dir(path).map_err(io)?.collect::<Result<_, _>>().map_err(io)
}

/// Whether `path` is a directory, following symbolic links as `os.walk(followlinks=True)` does.
fn is_dir(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_dir())
}

impl ImageFolder {
    /// List `root` as torchvision's `ImageFolder(root)` does: classes are the sorted names of its
    /// sub-folders; each class's images are found by walking its folder (sub-folders too, in
    /// sorted order), files sorted by name, keeping those with an image ending.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, DatasetError> {
        let root = root.as_ref();
        let layout = |what: String| DatasetError::Layout { path: root.into(), what };
        let mut classes: Vec<String> = read_dir(root)?
            .into_iter()
            .filter(|e| is_dir(&e.path()))
            .map(|e| e.file_name().into_string().map_err(|n| layout(format!("folder name {n:?} is not UTF-8"))))
            .collect::<Result<_, _>>()?;
        classes.sort();
        if classes.is_empty() {
            return Err(layout("no class folders".into()));
        }
        let mut samples = Vec::new();
        let mut empty = Vec::new();
        for (index, class) in classes.iter().enumerate() {
            let before = samples.len();
            // os.walk yields every folder; torchvision sorts them by path, then files by name.
            let mut dirs = vec![root.join(class)];
            let mut i = 0;
            while i < dirs.len() {
                let sub: Vec<PathBuf> =
                    read_dir(&dirs[i])?.into_iter().map(|e| e.path()).filter(|p| is_dir(p)).collect();
                dirs.extend(sub);
                i += 1;
            }
            dirs.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
            for dir in &dirs {
                let mut files: Vec<PathBuf> =
                    read_dir(dir)?.into_iter().map(|e| e.path()).filter(|p| !is_dir(p)).collect();
                files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
                for file in files {
                    let name = file.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
                    if !IMG_EXTENSIONS.iter().any(|e| name.ends_with(e)) {
                        continue;
                    }
                    if !DECODED.iter().any(|e| name.ends_with(e)) {
                        return Err(DatasetError::Unsupported { path: file });
                    }
                    samples.push((file, index));
                }
            }
            if samples.len() == before {
                empty.push(class.as_str());
            }
        }
        if !empty.is_empty() {
            return Err(layout(format!("class folders without images: {}", empty.join(", "))));
        }
        Ok(ImageFolder { root: root.into(), classes, samples })
    }

    /// The network's class for each class folder: from `labels` (see [`read_labels`]) or, without
    /// one, the folder's position in sorted order (right for a full ImageNet folder of synsets).
    pub fn targets(&self, labels: Option<&Path>) -> Result<Vec<usize>, DatasetError> {
        match labels {
            Some(path) => read_labels(path, &self.classes),
            None if self.classes.len() <= NUM_CLASSES => Ok((0..self.classes.len()).collect()),
            None => Err(DatasetError::Layout {
                path: self.root.clone(),
                what: format!(
                    "{} class folders but the network has {NUM_CLASSES} classes; give --labels",
                    self.classes.len()
                ),
            }),
        }
    }
}

/// Each class folder's class index in the network, from a labels file: a JSON object
/// `{"<folder>": index, ...}`, or text whose line `i` starts with the folder name of class `i`
/// (as ImageNet's `LOC_synset_mapping.txt`: `n01440764 tench, Tinca tinca`).
pub fn read_labels(path: &Path, classes: &[String]) -> Result<Vec<usize>, DatasetError> {
    let bad = |what: String| DatasetError::Labels { path: path.into(), what };
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io { path: path.into(), source })?;
    let map: std::collections::HashMap<String, u64> = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| bad(format!("not a JSON object of folder name to class index: {e}")))?
    } else {
        text.lines()
            .enumerate()
            .filter_map(|(i, l)| l.split_whitespace().next().map(|name| (name.to_string(), i as u64)))
            .collect()
    };
    classes
        .iter()
        .map(|c| match map.get(c) {
            Some(&i) if (i as usize) < NUM_CLASSES => Ok(i as usize),
            Some(i) => Err(bad(format!("class {c} has index {i}, beyond the network's {NUM_CLASSES} classes"))),
            None => Err(bad(format!("no label for class folder {c}"))),
        })
        .collect()
}

/// A seeded choice of `count` of `n` images (BN calibration's, or `dynofa eval --count`'s): a Fisher-Yates shuffle of `0..n` driven by SplitMix64(`seed`)
/// (`j = next_u64() % (i + 1)` for `i` from `n - 1` down to 1), cut to `count`. OFA likewise takes
/// the first images of a seeded permutation of its training set.
pub fn seeded_subset(n: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order.truncate(count);
    order
}

/// Load items ahead of their use on a background thread, `ahead` at most, in order: image
/// decoding overlaps the inference that consumes the images. Dropping the iterator stops the thread.
pub fn prefetch<T: Send + 'static>(
    paths: Vec<PathBuf>,
    ahead: usize,
    load: impl Fn(&Path) -> T + Send + 'static,
) -> impl Iterator<Item = T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(ahead);
    std::thread::spawn(move || {
        for path in paths {
            if tx.send(load(&path)).is_err() {
                break;
            }
        }
    });
    rx.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_subset_is_a_seeded_permutation() {
        let a = seeded_subset(100, 100, 7);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(a, sorted);
        assert_eq!(seeded_subset(100, 10, 7), a[..10]);
        assert_ne!(seeded_subset(100, 10, 8), a[..10]);
        // Fixed values, also computed by scripts/ref/ofa_ref.py's splitmix_order.
        assert_eq!(seeded_subset(10, 10, 0), [6, 3, 2, 9, 8, 1, 4, 7, 0, 5]);
    }
}
