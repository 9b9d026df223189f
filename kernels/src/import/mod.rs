//! Reading torch checkpoints (`torch.save` of a dict of tensors) without Python and without
//! running code from the file: OFA's released supernets become safetensors with their names.
//!
//! Both of torch's formats are read: the zip archive (torch >= 1.6: `<name>/data.pkl`, storages
//! in `<name>/data/<key>`) and the legacy stream (five pickles in a row, then the storages; what
//! torch < 1.6 wrote). The pickles go through a restricted reader that knows only the globals
//! torch uses for tensors.

mod pickle;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use safetensors::tensor::TensorView;

pub use pickle::PickleError;
use pickle::{Items, Object, TensorRef, Unpickled, unpickle};

use crate::statedict::canonical_name;

/// Why a checkpoint could not be converted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Neither of torch's formats.
    #[error("{}: not a torch checkpoint ({why}); expected the output of torch.save", path.display())]
    NotTorch {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        why: String,
    },
    /// A pickle in the file was refused.
    #[error("{}: {source}", path.display())]
    Pickle {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: PickleError,
    },
    /// The file is a checkpoint, but something in it does not fit a dict of tensors.
    #[error("{}: {what}", path.display())]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        what: String,
    },
}

/// Which of torch's formats a checkpoint was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The zip archive of torch >= 1.6.
    Zip,
    /// The legacy stream of torch < 1.6 (`_use_new_zipfile_serialization=False`).
    Legacy,
}

/// One tensor of a state dict, contiguous, little-endian.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Its state-dict key, with legacy names updated (see [`Checkpoint::renamed`]).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements in row-major order, little-endian.
    pub data: Vec<u8>,
}

/// A state dict read from a torch checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The file's format.
    pub format: Format,
    /// The tensors, in the state dict's order.
    pub tensors: Vec<Tensor>,
    /// How many keys had OFA's legacy `.mobile_inverted_conv.` renamed to `.conv.`.
    pub renamed: usize,
    /// Whether the state dict sat under a `state_dict` key (else it was the file's top level).
    pub nested: bool,
}

impl Checkpoint {
    /// Read the checkpoint at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ImportError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ImportError::Io { path: path.into(), source })?;
        Self::from_bytes(&bytes, path)
    }

    /// Read a checkpoint from its bytes; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, ImportError> {
        let (format, pickle, storages) = if bytes.starts_with(b"PK\x03\x04") {
            let (pickle, storages) = read_zip(bytes, path)?;
            (Format::Zip, pickle, storages)
        } else if bytes.first() == Some(&0x80) {
            let (pickle, storages) = read_legacy(bytes, path)?;
            (Format::Legacy, pickle, storages)
        } else {
            let why = if bytes.get(257..262) == Some(b"ustar") {
                "a tar archive: torch < 0.4 wrote these; load and save it again with a current torch".to_string()
            } else {
                format!("it starts with {:02x?}", &bytes[..bytes.len().min(4)])
            };
            return Err(ImportError::NotTorch { path: path.into(), why });
        };
        let content = |what: String| ImportError::Content { path: path.into(), what };
        let (dict, nested) = state_dict(&pickle).map_err(content)?;
        let mut tensors = Vec::with_capacity(dict.len());
        let mut renamed = 0;
        let mut seen = HashMap::new();
        for &(key, value) in dict {
            let Object::Str(key) = pickle.get(key) else {
                return Err(content(format!("the state dict has a {} key", pickle.get(key).kind())));
            };
            let Object::Tensor(t) = pickle.get(value) else {
                return Err(content(format!("state_dict[{key:?}] is a {}, not a tensor", pickle.get(value).kind())));
            };
            let name = canonical_name(key).into_owned();
            renamed += usize::from(name != *key);
            if let Some(first) = seen.insert(name.clone(), key.clone()) {
                return Err(content(format!("`{key}` and `{first}` both name `{name}`")));
            }
            let data = materialise(t, &storages, format).map_err(|why| content(format!("`{key}`: {why}")))?;
            tensors.push(Tensor { name, dtype: t.storage.dtype, shape: t.shape.clone(), data });
        }
        Ok(Checkpoint { format, tensors, renamed, nested })
    }

    /// The tensors as a safetensors file, with `metadata` (e.g. a `source` note) in its header.
    pub fn to_safetensors(&self, metadata: HashMap<String, String>) -> Vec<u8> {
        let views = self.tensors.iter().map(|t| {
            let view = TensorView::new(t.dtype, t.shape.clone(), &t.data).expect("sizes were checked when reading");
            (t.name.as_str(), view)
        });
        safetensors::serialize(views, Some(metadata)).expect("names are unique and sizes checked")
    }
}

/// Bytes per element (torch's storage types are all whole bytes wide).
fn element_size(dtype: Dtype) -> usize {
    dtype.bitsize() / 8
}

/// Storage bytes by key, and whether they are big-endian.
struct Storages<'a> {
    by_key: HashMap<String, std::borrow::Cow<'a, [u8]>>,
    big_endian: bool,
}

fn pickle_error(path: &Path) -> impl Fn(PickleError) -> ImportError + '_ {
    move |source| ImportError::Pickle { path: path.into(), source }
}

/// The zip format: `<dir>/data.pkl`, `<dir>/data/<key>` and (torch >= 1.11) `<dir>/byteorder`.
fn read_zip<'a>(bytes: &'a [u8], path: &Path) -> Result<(Unpickled, Storages<'a>), ImportError> {
    let not_torch = |why: String| ImportError::NotTorch { path: path.into(), why };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| not_torch(format!("bad zip: {e}")))?;
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| not_torch("a zip without <name>/data.pkl".into()))?;
    let dir = pkl.trim_end_matches("data.pkl").to_string();
    let mut read = |name: &str| -> Result<Vec<u8>, ImportError> {
        let mut entry = zip.by_name(name).map_err(|e| not_torch(format!("{name}: {e}")))?;
        if entry.compression() != zip::CompressionMethod::Stored {
            return Err(not_torch(format!("{name} is compressed; torch stores entries uncompressed")));
        }
        let mut out = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut out).map_err(|e| not_torch(format!("{name}: {e}")))?;
        Ok(out)
    };
    let pickle = unpickle(&read(pkl)?).map_err(pickle_error(path))?;
    let big_endian = match names.iter().any(|n| *n == format!("{dir}byteorder")) {
        true => read(&format!("{dir}byteorder"))? == b"big",
        false => false,
    };
    let mut by_key = HashMap::new();
    for name in &names {
        if let Some(key) = name.strip_prefix(&format!("{dir}data/")) {
            by_key.insert(key.to_string(), read(name)?.into());
        }
    }
    Ok((pickle, Storages { by_key, big_endian }))
}

/// The number `torch.save` writes first in the legacy format.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;

/// The legacy format: pickles of the magic number, the protocol version, the system info, the
/// object and the storage keys; then each storage as an 8-byte element count and its bytes.
fn read_legacy<'a>(bytes: &'a [u8], path: &Path) -> Result<(Unpickled, Storages<'a>), ImportError> {
    let mut pos = 0;
    let mut next = || -> Result<Unpickled, ImportError> {
        let p = unpickle(&bytes[pos..]).map_err(pickle_error(path))?;
        pos += p.len;
        Ok(p)
    };
    let not_torch = |why: &str| ImportError::NotTorch { path: path.into(), why: why.into() };
    let magic = next()?;
    if magic.get(magic.root) != &Object::Int(LEGACY_MAGIC) {
        return Err(not_torch("a pickle, but not torch's legacy magic number"));
    }
    let _protocol = next()?;
    let info = next()?;
    let little_endian = match info.get(info.root) {
        Object::Dict(items) => items.iter().find_map(|&(k, v)| match (info.get(k), info.get(v)) {
            (Object::Str(k), Object::Bool(b)) if k == "little_endian" => Some(*b),
            _ => None,
        }),
        _ => None,
    };
    let object = next()?;
    let keys = next()?;
    let content = |what: String| ImportError::Content { path: path.into(), what };
    let Object::List(key_ids) = keys.get(keys.root) else {
        return Err(content("the legacy storage key list is not a list".into()));
    };
    // Element sizes come from the storages the object names.
    let mut sizes = HashMap::new();
    for o in &object.arena {
        if let Object::Storage(s) = o {
            sizes.insert(s.key.clone(), element_size(s.dtype));
        }
    }
    let big_endian = little_endian == Some(false);
    let mut by_key = HashMap::new();
    for &id in key_ids {
        let Object::Str(key) = keys.get(id) else { return Err(content("a storage key is not a string".into())) };
        let size = *sizes.get(key).ok_or_else(|| content(format!("storage {key} is listed but never used")))?;
        let header = bytes.get(pos..pos + 8).ok_or_else(|| content(format!("storage {key}: the file is truncated")))?;
        let header: [u8; 8] = header.try_into().expect("8 bytes");
        let numel = if big_endian { u64::from_be_bytes(header) } else { u64::from_le_bytes(header) };
        let len = usize::try_from(numel).ok().and_then(|n| n.checked_mul(size));
        let data = len
            .and_then(|len| bytes.get(pos + 8..(pos + 8).checked_add(len)?))
            .ok_or_else(|| content(format!("storage {key}: the file is truncated")))?;
        pos += 8 + data.len();
        by_key.insert(key.clone(), data.into());
    }
    Ok((object, Storages { by_key, big_endian }))
}

/// The state dict: the file's `state_dict` entry, or its top level when that is a dict of tensors.
fn state_dict(p: &Unpickled) -> Result<(&Items, bool), String> {
    let Object::Dict(top) = p.get(p.root) else {
        return Err(format!("the checkpoint holds a {}, not a dict", p.get(p.root).kind()));
    };
    let nested = top.iter().find(|&&(k, _)| p.get(k) == &Object::Str("state_dict".into()));
    if let Some(&(_, v)) = nested {
        return match p.get(v) {
            Object::Dict(d) => Ok((d, true)),
            o => Err(format!("`state_dict` is a {}, not a dict", o.kind())),
        };
    }
    if !top.is_empty() && top.iter().all(|&(_, v)| matches!(p.get(v), Object::Tensor(_))) {
        return Ok((top, false));
    }
    let keys: Vec<String> = top
        .iter()
        .map(|&(k, _)| match p.get(k) {
            Object::Str(s) => format!("{s:?}"),
            o => o.kind().into(),
        })
        .collect();
    Err(format!("no `state_dict` entry and not a dict of tensors; its keys: [{}]", keys.join(", ")))
}

/// A tensor's elements, contiguous and little-endian.
fn materialise(t: &TensorRef, storages: &Storages<'_>, format: Format) -> Result<Vec<u8>, String> {
    let size = element_size(t.storage.dtype);
    let data = storages.by_key.get(&t.storage.key).ok_or_else(|| format!("storage {} is missing", t.storage.key))?;
    let numel = t.storage.numel;
    // The zip format stores exactly the storage; the legacy one says the count itself.
    if format == Format::Zip && data.len() as u64 != numel.saturating_mul(size as u64) {
        return Err(format!("storage {} has {} bytes, its tensor says {numel} x {size}", t.storage.key, data.len()));
    }
    let elements = data.len() / size;
    let count = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("its shape overflows")?;
    if count == 0 {
        return Ok(Vec::new());
    }
    // The last element the view reaches must lie in the storage.
    let last =
        t.shape.iter().zip(&t.stride).try_fold(t.offset as usize, |a, (&d, &s)| a.checked_add((d - 1).checked_mul(s)?));
    let past = last.is_none_or(|l| l >= elements);
    // A view reads each element of its storage once at most; one that reads more overlaps itself
    // (expand's 0 strides), which no state dict holds and which would let a small hostile file ask
    // for any amount of memory.
    if past || count > elements {
        let what = if past { "reaches past" } else { "reads more elements than" };
        return Err(format!(
            "the view (offset {}, shape {:?}, stride {:?}) {what} its storage of {elements} elements",
            t.offset, t.shape, t.stride
        ));
    }
    let push = |out: &mut Vec<u8>, bytes: &[u8]| {
        if storages.big_endian {
            bytes.chunks_exact(size).for_each(|e| out.extend(e.iter().rev()));
        } else {
            out.extend_from_slice(bytes);
        }
    };
    let mut out = Vec::with_capacity(count * size);
    // Row-major views (every state-dict tensor in practice) are one slice of the storage.
    let contiguous =
        (0..t.shape.len()).all(|i| t.shape[i] == 1 || t.stride[i] == t.shape[i + 1..].iter().product::<usize>());
    if contiguous {
        push(&mut out, &data[t.offset as usize * size..(t.offset as usize + count) * size]);
        return Ok(out);
    }
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..count {
        let at = t.offset as usize + index.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        push(&mut out, &data[at * size..(at + 1) * size]);
        // Row-major increment of the multi-index.
        for (i, &d) in index.iter_mut().zip(&t.shape).rev() {
            *i += 1;
            if *i < d {
                break;
            }
            *i = 0;
        }
    }
    Ok(out)
}
