//! A restricted pickle reader: the subset of the pickle protocol (0-5 opcodes, binary forms) that
//! `torch.save` writes for a dict of tensors, and nothing that can run code.
//!
//! Python's unpickler calls whatever global a file names; this one knows a fixed list of globals
//! (`collections.OrderedDict`, torch's tensor and parameter rebuild functions and its storage
//! types) and refuses any other by name. Objects live in an arena and the stack and memo hold
//! indices, so a container filled after it was memoised is seen filled everywhere, as in Python.

use safetensors::Dtype;

/// Index of an object in the arena.
pub(crate) type ObjId = usize;

/// A dict's key-value pairs, in insertion order.
pub(crate) type Items = [(ObjId, ObjId)];

/// The globals this reader resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter`.
    RebuildParameter,
    /// `torch.<T>Storage`: the element type of a storage in a persistent id.
    Storage(Dtype),
}

/// The storage types torch names in persistent ids, with their element types.
const STORAGES: [(&str, Dtype); 10] = [
    ("FloatStorage", Dtype::F32),
    ("DoubleStorage", Dtype::F64),
    ("HalfStorage", Dtype::F16),
    ("BFloat16Storage", Dtype::BF16),
    ("LongStorage", Dtype::I64),
    ("IntStorage", Dtype::I32),
    ("ShortStorage", Dtype::I16),
    ("CharStorage", Dtype::I8),
    ("ByteStorage", Dtype::U8),
    ("BoolStorage", Dtype::BOOL),
];

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Self> {
        match (module, name) {
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensor),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("torch", storage) => STORAGES.iter().find(|(n, _)| *n == storage).map(|&(_, d)| Global::Storage(d)),
            _ => None,
        }
    }
}

/// A storage named by a persistent id: `('storage', torch.<T>Storage, key, location, numel)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    pub dtype: Dtype,
    pub key: String,
    pub numel: u64,
}

/// A tensor: a strided view of a storage (in elements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: u64,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// An unpickled object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Object {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<ObjId>),
    List(Vec<ObjId>),
    /// A dict or `OrderedDict`, in insertion order.
    Dict(Vec<(ObjId, ObjId)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

impl Object {
    /// The Python type name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::None => "None",
            Object::Bool(_) => "bool",
            Object::Int(_) => "int",
            Object::Float(_) => "float",
            Object::Str(_) => "str",
            Object::Bytes(_) => "bytes",
            Object::Tuple(_) => "tuple",
            Object::List(_) => "list",
            Object::Dict(_) => "dict",
            Object::Global(_) => "global",
            Object::Storage(_) => "storage",
            Object::Tensor(_) => "tensor",
        }
    }
}

/// Why a pickle was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// The pickle names a global outside the allowed list (it could run code).
    #[error(
        "refusing global `{module}.{name}` (byte {offset}): only tensors, storages and OrderedDict are \
         reconstructed, nothing that can run code; re-save the state dict alone with torch.save"
    )]
    Global {
        /// The module.
        module: String,
        /// The name.
        name: String,
        /// Where it is named.
        offset: usize,
    },
    /// An opcode this reader does not implement.
    #[error("unsupported pickle opcode {opcode:#04x} at byte {offset}")]
    Opcode {
        /// The opcode.
        opcode: u8,
        /// Where it is.
        offset: usize,
    },
    /// The data ends inside an opcode or before STOP.
    #[error("the pickle ends early (byte {offset}): the file is truncated")]
    Truncated {
        /// Where it ends.
        offset: usize,
    },
    /// An opcode's operands make no sense.
    #[error("malformed pickle at byte {offset}: {what}")]
    Malformed {
        /// Where.
        offset: usize,
        /// What is wrong.
        what: String,
    },
}

/// The objects of one pickle and the index of the one it returns.
#[derive(Debug)]
pub(crate) struct Unpickled {
    pub arena: Vec<Object>,
    pub root: ObjId,
    /// Bytes the pickle took, STOP included.
    pub len: usize,
}

impl Unpickled {
    /// The object `id`.
    pub fn get(&self, id: ObjId) -> &Object {
        &self.arena[id]
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Where the current opcode starts (for errors).
    at: usize,
    arena: Vec<Object>,
    stack: Vec<ObjId>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u32, ObjId>,
}

impl<'a> Machine<'a> {
    fn malformed(&self, what: impl Into<String>) -> PickleError {
        PickleError::Malformed { offset: self.at, what: what.into() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or(PickleError::Truncated { offset: self.data.len() })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn uint(&mut self, n: usize) -> Result<u64, PickleError> {
        Ok(self.take(n)?.iter().rev().fold(0u64, |acc, &b| acc << 8 | b as u64))
    }

    /// A length operand, checked against the bytes left so that a hostile length cannot allocate.
    fn len(&mut self, n: usize) -> Result<usize, PickleError> {
        let len = self.uint(n)?;
        usize::try_from(len)
            .ok()
            .filter(|&l| l <= self.data.len() - self.pos)
            .ok_or(PickleError::Truncated { offset: self.data.len() })
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or(PickleError::Truncated { offset: self.data.len() })?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| self.malformed("a global's name is not UTF-8"))
    }

    fn alloc(&mut self, obj: Object) -> ObjId {
        self.arena.push(obj);
        self.arena.len() - 1
    }

    fn push(&mut self, obj: Object) {
        let id = self.alloc(obj);
        self.stack.push(id);
    }

    fn pop(&mut self) -> Result<ObjId, PickleError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.malformed("pop below a mark"));
        }
        self.stack.pop().ok_or_else(|| self.malformed("pop from an empty stack"))
    }

    fn top(&self) -> Result<ObjId, PickleError> {
        self.stack.last().copied().ok_or_else(|| self.malformed("empty stack"))
    }

    /// Everything above the last mark, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<ObjId>, PickleError> {
        let mark = self.marks.pop().ok_or_else(|| self.malformed("no mark"))?;
        Ok(self.stack.split_off(mark))
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), PickleError> {
        let g = Global::resolve(module, name).ok_or_else(|| PickleError::Global {
            module: module.into(),
            name: name.into(),
            offset: self.at,
        })?;
        self.push(Object::Global(g));
        Ok(())
    }

    fn str_of(&self, id: ObjId) -> Option<&str> {
        match &self.arena[id] {
            Object::Str(s) => Some(s),
            _ => None,
        }
    }

    fn int_of(&self, id: ObjId) -> Option<i128> {
        match self.arena[id] {
            Object::Int(v) => Some(v),
            _ => None,
        }
    }

    fn ints_of(&self, id: ObjId) -> Option<Vec<usize>> {
        match &self.arena[id] {
            Object::Tuple(items) => {
                items.iter().map(|&i| self.int_of(i).and_then(|v| usize::try_from(v).ok())).collect()
            }
            _ => None,
        }
    }

    /// `('storage', torch.<T>Storage, key, location, numel[, view_metadata])`.
    fn persistent_load(&mut self, pid: ObjId) -> Result<Object, PickleError> {
        let bad = || self.malformed("a persistent id that is not ('storage', type, key, location, numel)");
        let Object::Tuple(items) = &self.arena[pid] else { return Err(bad()) };
        let (tag, ty, key, numel) = match items[..] {
            [tag, ty, key, _location, numel] | [tag, ty, key, _location, numel, _] => (tag, ty, key, numel),
            _ => return Err(bad()),
        };
        let dtype = match self.arena[ty] {
            Object::Global(Global::Storage(d)) => d,
            _ => return Err(bad()),
        };
        let (Some("storage"), Some(key), Some(numel)) = (self.str_of(tag), self.str_of(key), self.int_of(numel)) else {
            return Err(bad());
        };
        let numel = u64::try_from(numel).map_err(|_| bad())?;
        Ok(Object::Storage(StorageRef { dtype, key: key.into(), numel }))
    }

    fn reduce(&mut self, callable: ObjId, args: ObjId) -> Result<ObjId, PickleError> {
        let Object::Tuple(args) = self.arena[args].clone() else {
            return Err(self.malformed("REDUCE arguments are not a tuple"));
        };
        match self.arena[callable] {
            Object::Global(Global::OrderedDict) if args.is_empty() => Ok(self.alloc(Object::Dict(Vec::new()))),
            Object::Global(Global::RebuildTensor) if args.len() >= 6 => {
                let bad = || {
                    self.malformed("_rebuild_tensor_v2 with arguments other than (storage, offset, size, stride, ...)")
                };
                let Object::Storage(storage) = self.arena[args[0]].clone() else { return Err(bad()) };
                let offset = self.int_of(args[1]).and_then(|v| u64::try_from(v).ok()).ok_or_else(bad)?;
                let (shape, stride) = (self.ints_of(args[2]).ok_or_else(bad)?, self.ints_of(args[3]).ok_or_else(bad)?);
                if shape.len() != stride.len() {
                    return Err(bad());
                }
                Ok(self.alloc(Object::Tensor(TensorRef { storage, offset, shape, stride })))
            }
            // A parameter pickles as its data tensor; requires_grad and hooks do not matter here.
            Object::Global(Global::RebuildParameter) if !args.is_empty() => match self.arena[args[0]] {
                Object::Tensor(_) => Ok(args[0]),
                _ => Err(self.malformed("_rebuild_parameter of something that is not a tensor")),
            },
            ref other => Err(self.malformed(format!(
                "REDUCE of {} with {} arguments is not something torch.save writes",
                match other {
                    Object::Global(g) => format!("{g:?}"),
                    o => o.kind().into(),
                },
                args.len()
            ))),
        }
    }

    fn set_items(&mut self, dict: ObjId, items: &[ObjId]) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("SETITEMS with an odd number of items"));
        }
        let Object::Dict(entries) = &mut self.arena[dict] else {
            return Err(self.malformed("SETITEM(S) on something that is not a dict"));
        };
        for kv in items.chunks_exact(2) {
            entries.push((kv[0], kv[1]));
        }
        Ok(())
    }

    fn append(&mut self, list: ObjId, items: &[ObjId]) -> Result<(), PickleError> {
        let Object::List(entries) = &mut self.arena[list] else {
            return Err(self.malformed("APPEND(S) on something that is not a list"));
        };
        entries.extend_from_slice(items);
        Ok(())
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        let id = *self.memo.get(&key).ok_or_else(|| self.malformed(format!("memo key {key} was never stored")))?;
        self.stack.push(id);
        Ok(())
    }

    fn run(mut self) -> Result<Unpickled, PickleError> {
        loop {
            self.at = self.pos;
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    self.take(1)?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME: a hint for buffered readers
                }
                b'.' => {
                    let root = self.pop()?;
                    return Ok(Unpickled { arena: self.arena, root, len: self.pos });
                }
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.push(Object::Dict(Vec::new())),
                b']' => self.push(Object::List(Vec::new())),
                b')' => self.push(Object::Tuple(Vec::new())),
                b'N' => self.push(Object::None),
                0x88 => self.push(Object::Bool(true)),
                0x89 => self.push(Object::Bool(false)),
                b'K' => {
                    let v = self.uint(1)?;
                    self.push(Object::Int(v as i128));
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.push(Object::Int(v as i128));
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.push(Object::Int(v as i128));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.len(1)? } else { self.len(4)? };
                    if n > 16 {
                        return Err(self.malformed(format!("a {n}-byte integer")));
                    }
                    let bytes = self.take(n)?;
                    // Little-endian two's complement.
                    let mut v = bytes.iter().rev().fold(0i128, |acc, &b| acc << 8 | b as i128);
                    if n > 0 && n < 16 && bytes[n - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    self.push(Object::Int(v));
                }
                b'G' => {
                    let b = self.take(8)?;
                    self.push(Object::Float(f64::from_be_bytes(b.try_into().expect("8 bytes"))));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        0x8c => self.len(1)?,
                        b'X' => self.len(4)?,
                        _ => self.len(8)?,
                    };
                    let bytes = self.take(n)?;
                    let s = std::str::from_utf8(bytes).map_err(|_| self.malformed("a string that is not UTF-8"))?;
                    self.push(Object::Str(s.into()));
                }
                b'C' | b'B' | 0x8e => {
                    let n = match op {
                        b'C' => self.len(1)?,
                        b'B' => self.len(4)?,
                        _ => self.len(8)?,
                    };
                    let bytes = self.take(n)?.to_vec();
                    self.push(Object::Bytes(bytes));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(m), Some(n)) = (self.str_of(module), self.str_of(name)) else {
                        return Err(self.malformed("STACK_GLOBAL of non-strings"));
                    };
                    let (m, n) = (m.to_string(), n.to_string());
                    self.global(&m, &n)?;
                }
                b'q' => {
                    let k = self.uint(1)? as u32;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.uint(4)? as u32;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.uint(1)? as u32;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.uint(4)? as u32;
                    self.memo_get(k)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Object::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                    items.reverse();
                    self.push(Object::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Object::List(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = self.alloc(Object::Dict(Vec::new()));
                    self.set_items(dict, &items)?;
                    self.stack.push(dict);
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    self.append(list, &[item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.append(list, &items)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?;
                    self.set_items(dict, &[key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let dict = self.top()?;
                    self.set_items(dict, &items)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let out = self.reduce(callable, args)?;
                    self.stack.push(out);
                }
                b'b' => {
                    // BUILD: torch's OrderedDict state dicts carry a `_metadata` attribute (module
                    // versions), which a conversion does not need.
                    let state = self.pop()?;
                    let target = self.top()?;
                    match (&self.arena[target], &self.arena[state]) {
                        (Object::Dict(_), Object::Dict(_) | Object::None) => {}
                        (t, s) => {
                            return Err(self.malformed(format!("BUILD of a {} with a {} state", t.kind(), s.kind())));
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(pid)?;
                    self.push(storage);
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(top);
                }
                opcode => return Err(PickleError::Opcode { opcode, offset: self.at }),
            }
        }
    }
}

/// Read one pickle from the start of `data`.
pub(crate) fn unpickle(data: &[u8]) -> Result<Unpickled, PickleError> {
    let machine = Machine {
        data,
        pos: 0,
        at: 0,
        arena: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Default::default(),
    };
    machine.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scalars_and_containers_of_protocol_2() {
        // pickle.dumps({"a": [1, -2, 3.5, None, True], "b": (b"x", "é", 2**70)}, protocol=2)
        // with bytes written as protocol 3's SHORT_BINBYTES.
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'a', b']', b'q', 1, b'('];
        p.extend([b'K', 1, b'J', 0xfe, 0xff, 0xff, 0xff, b'G']);
        p.extend(3.5f64.to_be_bytes());
        p.extend([b'N', 0x88, b'e', b'X', 1, 0, 0, 0, b'b', b'C', 1, b'x', 0x8c, 2, 0xc3, 0xa9]);
        p.extend([0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x87, b'u', b'.']);
        let u = unpickle(&p).unwrap();
        assert_eq!(u.len, p.len());
        let Object::Dict(items) = u.get(u.root) else { panic!("not a dict") };
        assert_eq!(items.len(), 2);
        let Object::List(list) = u.get(items[0].1) else { panic!() };
        let values: Vec<_> = list.iter().map(|&i| u.get(i).clone()).collect();
        assert_eq!(values, [Object::Int(1), Object::Int(-2), Object::Float(3.5), Object::None, Object::Bool(true)]);
        let Object::Tuple(t) = u.get(items[1].1) else { panic!() };
        assert_eq!(u.get(t[0]), &Object::Bytes(b"x".to_vec()));
        assert_eq!(u.get(t[1]), &Object::Str("é".into()));
        assert_eq!(u.get(t[2]), &Object::Int(1 << 70));
    }

    #[test]
    fn refuses_code_execution_by_name() {
        // pickle.dumps(os.system, ...) style: GLOBAL 'os system', then REDUCE.
        let p = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        let err = unpickle(p).unwrap_err();
        assert!(matches!(&err, PickleError::Global { module, name, offset: 2 } if module == "os" && name == "system"));
        assert!(err.to_string().contains("`os.system`"), "{err}");
        // The same through protocol 4's STACK_GLOBAL.
        let p = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.";
        assert!(matches!(unpickle(p), Err(PickleError::Global { name, .. }) if name == "eval"));
    }

    #[test]
    fn truncated_and_hostile_inputs_are_errors() {
        assert!(matches!(unpickle(b"\x80\x02X\xff\xff\xff\x7f"), Err(PickleError::Truncated { .. })));
        assert!(matches!(unpickle(b"\x80\x02}"), Err(PickleError::Truncated { .. })));
        assert!(matches!(unpickle(b"\x80\x02h\x05."), Err(PickleError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02."), Err(PickleError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02\x81."), Err(PickleError::Opcode { opcode: 0x81, offset: 2 })));
        // A persistent id that is not a storage.
        assert!(matches!(unpickle(b"\x80\x02K\x01Q."), Err(PickleError::Malformed { .. })));
    }

    #[test]
    fn memoised_containers_are_shared() {
        // d = {}; pickle.dumps([d, d]) then d filled through the memo: EMPTY_LIST, MARK, EMPTY_DICT,
        // BINPUT 1, BINGET 1, APPENDS; then BINGET 1 'k' 1 SETITEM on the shared dict.
        let p = b"\x80\x02]q\x00(}q\x01h\x01eh\x01X\x01\x00\x00\x00kK\x01s0.";
        let u = unpickle(p).unwrap();
        let Object::List(items) = u.get(u.root) else { panic!() };
        assert_eq!(items[0], items[1]);
        assert!(matches!(u.get(items[0]), Object::Dict(d) if d.len() == 1));
    }
}
