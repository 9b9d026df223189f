//! Checkpoint import against files torch wrote (`tests/fixtures/checkpoints`, see the fixtures'
//! README): both of torch's formats convert to exactly the tensors that `safetensors.torch`
//! wrote from the same dict; hostile or broken files are refused with the reason. With the
//! reference environment present, a full OFA state dict is also converted and loaded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use dynofa_core::Supernet;
use dynofa_kernels::import::{Checkpoint, Format, ImportError, PickleError};
use dynofa_kernels::{DEFAULT_SEED, SupernetWeights, seeded_safetensors};
use safetensors::SafeTensors;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoints")
}

/// The converted checkpoint's tensors are those of the expected file, byte for byte.
fn assert_same_tensors(ckpt: &Checkpoint, expected: &SafeTensors<'_>) {
    assert_eq!(ckpt.tensors.len(), expected.len());
    for t in &ckpt.tensors {
        let want = expected.tensor(&t.name).unwrap_or_else(|_| panic!("{} is not expected", t.name));
        assert_eq!((t.dtype, &t.shape[..]), (want.dtype(), want.shape()), "{}", t.name);
        assert_eq!(t.data, want.data(), "{}", t.name);
    }
}

#[test]
fn both_torch_formats_convert_to_the_expected_tensors() {
    let expected_bytes = std::fs::read(fixtures().join("small.safetensors")).unwrap();
    let expected = SafeTensors::deserialize(&expected_bytes).unwrap();
    for (file, format) in [("small.pt", Format::Zip), ("small_legacy.pt", Format::Legacy)] {
        let ckpt = Checkpoint::load(fixtures().join(file)).unwrap();
        assert_eq!(ckpt.format, format, "{file}");
        assert!(ckpt.nested);
        assert_eq!(ckpt.renamed, 2, "{file}: the two `.mobile_inverted_conv.` keys");
        assert_eq!(ckpt.tensors[0].name, "blocks.1.conv.depth_conv.conv.weight", "state-dict order is kept");
        assert_same_tensors(&ckpt, &expected);
        // And the safetensors written from it read back as the same tensors.
        let bytes = ckpt.to_safetensors(Default::default());
        let back = Checkpoint {
            tensors: SafeTensors::deserialize(&bytes)
                .unwrap()
                .iter()
                .map(|(n, v)| dynofa_kernels::import::Tensor {
                    name: n.into(),
                    dtype: v.dtype(),
                    shape: v.shape().to_vec(),
                    data: v.data().to_vec(),
                })
                .collect(),
            ..ckpt
        };
        assert_same_tensors(&back, &expected);
    }
}

/// A zip laid out as torch's, holding `pickle` as its `data.pkl` and `storages` (key, bytes) under `data/`.
fn torch_zip(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        zip.start_file(format!("archive/data/{key}"), stored).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.start_file("archive/version", stored).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap().into_inner()
}

#[test]
fn code_in_a_checkpoint_is_refused_by_name() {
    // {"state_dict": os.system("ls")}
    let pickle =
        b"\x80\x02}q\x00X\n\x00\x00\x00state_dictq\x01cos\nsystem\nq\x02X\x02\x00\x00\x00lsq\x03\x85q\x04Rq\x05s.";
    let err = Checkpoint::from_bytes(&torch_zip(pickle, &[]), Path::new("evil.pt")).unwrap_err();
    assert!(
        matches!(&err, ImportError::Pickle { source: PickleError::Global { module, name, .. }, .. }
            if module == "os" && name == "system"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.starts_with("evil.pt: refusing global `os.system`"), "{msg}");
}

#[test]
fn broken_files_say_what_is_wrong() {
    let zip = std::fs::read(fixtures().join("small.pt")).unwrap();
    let legacy = std::fs::read(fixtures().join("small_legacy.pt")).unwrap();
    let path = Path::new("x.pt");
    // A zip cut short loses its central directory; a legacy stream cut short loses storage bytes.
    assert!(matches!(Checkpoint::from_bytes(&zip[..zip.len() - 100], path), Err(ImportError::NotTorch { .. })));
    let err = Checkpoint::from_bytes(&legacy[..legacy.len() - 10], path).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let err = Checkpoint::from_bytes(b"{\"not\": \"torch\"}", path).unwrap_err();
    assert!(matches!(err, ImportError::NotTorch { .. }), "{err:?}");
    // A dict without state_dict and with a non-tensor value.
    let err =
        Checkpoint::from_bytes(&torch_zip(b"\x80\x02}q\x00X\x05\x00\x00\x00epochq\x01K\x03s.", &[]), path).unwrap_err();
    assert!(err.to_string().contains("no `state_dict` entry"), "{err}");
    // A view that reaches past its storage: storage of 2 floats, tensor of shape (3,).
    let err = Checkpoint::from_bytes(&one_view(b"K\x03\x85K\x01\x85"), path).unwrap_err();
    assert!(err.to_string().contains("`w`: the view (offset 0, shape [3], stride [1]) reaches past"), "{err}");
}

/// A zip checkpoint of one float tensor `w` over a storage of 2 floats, viewed with `shape_stride`:
/// the pickle opcodes of the size tuple then the stride tuple.
fn one_view(shape_stride: &[u8]) -> Vec<u8> {
    let mut pickle = b"\x80\x02}X\n\x00\x00\x00state_dict}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(\
        (X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02tQK\x00"
        .to_vec();
    pickle.extend_from_slice(shape_stride);
    pickle.extend_from_slice(b"\x89ccollections\nOrderedDict\n)RtRss.");
    torch_zip(&pickle, &[("0", &[0; 8])])
}

#[test]
fn a_view_that_reads_more_than_its_storage_is_refused_before_allocating() {
    let path = Path::new("x.pt");
    // Shape (2,), stride (1,): the whole storage, as a state dict holds it.
    let ckpt = Checkpoint::from_bytes(&one_view(b"K\x02\x85K\x01\x85"), path).unwrap();
    assert_eq!(ckpt.tensors[0].data.len(), 8);
    // Shape (2^40,), stride (0,): one element broadcast to 4 TiB, from a file of a few hundred bytes.
    let err = Checkpoint::from_bytes(&one_view(b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85K\x00\x85"), path).unwrap_err();
    assert!(
        err.to_string()
            .contains("`w`: the view (offset 0, shape [1099511627776], stride [0]) reads more elements than"),
        "{err}"
    );
    // Shape (2^40,), stride (1,): past the storage, refused the same way before anything is allocated.
    let err = Checkpoint::from_bytes(&one_view(b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85K\x01\x85"), path).unwrap_err();
    assert!(err.to_string().contains("reaches past its storage of 2 elements"), "{err}");
}

/// The reference environment's Python, when it is set up.
fn reference_python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let py = root.join("scripts/ref/.venv/bin/python");
    py.exists().then_some(py)
}

#[test]
fn a_full_ofa_checkpoint_converts_and_loads() {
    let Some(py) = reference_python() else {
        println!(
            "skipped: scripts/ref/.venv is not set up (scripts/ref/setup-venv.sh); the committed fixtures cover the formats"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let original = seeded_safetensors(Supernet::W1_0, DEFAULT_SEED);
    let weights = dir.path().join("w.safetensors");
    std::fs::write(&weights, &original).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ref/ofa_ref.py");
    let expected = SafeTensors::deserialize(&original).unwrap();
    for (name, flags) in [("zip.pth", &[][..]), ("legacy.pth", &["--legacy-format", "--legacy-names"][..])] {
        let ckpt = dir.path().join(name);
        let status = Command::new(&py)
            .arg(&script)
            .args(["write-checkpoint", "--weights"])
            .arg(&weights)
            .arg("--out")
            .arg(&ckpt)
            .args(flags)
            .status()
            .unwrap();
        assert!(status.success(), "ofa_ref.py write-checkpoint failed");
        let converted = Checkpoint::load(&ckpt).unwrap();
        let legacy_keys = expected.names().iter().filter(|n| n.starts_with("blocks.")).count();
        assert_eq!(converted.renamed, if flags.is_empty() { 0 } else { legacy_keys });
        assert_same_tensors(&converted, &expected);
        let bytes = converted.to_safetensors(Default::default());
        let loaded = SupernetWeights::from_safetensors(&bytes, &ckpt).unwrap();
        assert_eq!(loaded.supernet().width_mult, 1.0);
    }
}
