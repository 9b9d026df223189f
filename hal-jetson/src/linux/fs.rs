//! Reading and writing sysfs attribute files with errors that name the file.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::SysfsError;

/// The trimmed text of a file (device-tree strings end in NUL, sysfs values in a newline).
pub(crate) fn read(path: &Path) -> Result<String, SysfsError> {
    let text = fs::read_to_string(path).map_err(|source| SysfsError::Read { path: path.to_path_buf(), source })?;
    Ok(text.trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_owned())
}

/// A file holding one unsigned number.
pub(crate) fn read_u64(path: &Path, expected: &'static str) -> Result<u64, SysfsError> {
    let text = read(path)?;
    text.parse().map_err(|_| SysfsError::Parse { path: path.to_path_buf(), content: text, expected })
}

/// A file holding space-separated unsigned numbers, returned sorted and without repeats.
pub(crate) fn read_list(path: &Path, expected: &'static str) -> Result<Vec<u64>, SysfsError> {
    let text = read(path)?;
    let mut values = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<Vec<u64>, _>>()
        .map_err(|_| SysfsError::Parse { path: path.to_path_buf(), content: text.clone(), expected })?;
    values.sort_unstable();
    values.dedup();
    Ok(values)
}

/// Write `value` as the whole content of an existing file (never creates one: a missing sysfs file is an
/// error, not something to invent).
pub(crate) fn write(path: &Path, value: &str) -> Result<(), SysfsError> {
    let err = |source| SysfsError::Write { path: path.to_path_buf(), source };
    // Sysfs ignores the truncation; a fake tree's regular file needs it.
    let mut file = OpenOptions::new().write(true).truncate(true).open(path).map_err(err)?;
    file.write_all(value.as_bytes()).map_err(err)
}

/// Whether this process may write `path`, asked of the kernel by opening it for writing without writing.
///
/// Opening a sysfs attribute has no effect until something is written, so this is safe on a board; the
/// kernel's answer covers modes, groups, ACLs, capabilities and read-only mounts alike.
pub(crate) fn check_writable(path: &Path) -> Result<(), SysfsError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .map(drop)
        .map_err(|source| SysfsError::Write { path: path.to_path_buf(), source })
}

/// The entries of a folder whose names satisfy `keep`, sorted by name; a missing folder has none.
pub(crate) fn entries(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> =
        read.filter_map(Result::ok).filter(|e| e.file_name().to_str().is_some_and(&keep)).map(|e| e.path()).collect();
    found.sort_by(|a, b| natural_cmp(a, b));
    found
}

/// Orders `policy2` before `policy10` so that listings read like the kernel's.
fn natural_cmp(a: &Path, b: &Path) -> std::cmp::Ordering {
    let key = |p: &Path| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (stem, num) = name.split_at(name.len() - digits);
        (stem.to_owned(), num.parse::<u64>().unwrap_or(0), name.clone())
    };
    key(a).cmp(&key(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("available_frequencies");
        fs::write(&f, "3201000 800000 3200000 800000\n").unwrap();
        assert_eq!(read_list(&f, "kHz").unwrap(), vec![800_000, 3_200_000, 3_201_000]);
        fs::write(&f, "800000 fast\n").unwrap();
        assert!(matches!(read_list(&f, "kHz"), Err(SysfsError::Parse { .. })));
    }

    #[test]
    fn write_replaces_the_content_and_never_creates() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("max_freq");
        fs::write(&f, "1109250000\n").unwrap();
        write(&f, "510000000").unwrap();
        assert_eq!(read(&f).unwrap(), "510000000");
        assert!(matches!(write(&dir.path().join("nope"), "1"), Err(SysfsError::Write { .. })));
        assert!(!dir.path().join("nope").exists());
    }

    #[test]
    fn entries_sort_numbers_naturally() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["policy10", "policy2", "policy0", "other"] {
            fs::create_dir(dir.path().join(n)).unwrap();
        }
        let names: Vec<_> = entries(dir.path(), |n| n.starts_with("policy"))
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["policy0", "policy2", "policy10"]);
    }
}
