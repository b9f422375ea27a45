//! A safe reader for the `data.pkl` that `torch.save` writes for a state dict (mirrors what
//! `torch/serialization.py` `_save` emits and `torch/_weights_only_unpickler.py` accepts, narrowed to
//! state dicts): a small stack machine over plain values that never imports or calls anything.
//!
//! Allowed globals: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter` and the legacy storage classes `torch.<Type>Storage` (only named in
//! persistent ids, never called). Any other global, and any opcode outside protocols 2..5's plain-data
//! subset, is refused with [`Error::UnsafePickle`] naming it and its byte offset.
//!
//! Resources are bounded whatever the bytes say: containers and strings are shared by reference
//! (`Rc`, as Python shares objects), so `DUP` and memo fetches cost O(1) and never deep-copy; nesting
//! is limited to [`MAX_DEPTH`], the values made to [`MAX_VALUES`], a tensor's rank to [`MAX_RANK`];
//! and nested values are dropped iteratively (no stack overflow, however deep).

use crate::{Error, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    BF16,
    F16,
    F32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::BF16 | DType::F16 => 2,
            DType::F32 => 4,
        }
    }

    /// The torch name (`bfloat16`, `float16`, `float32`).
    pub fn name(self) -> &'static str {
        match self {
            DType::BF16 => "bfloat16",
            DType::F16 => "float16",
            DType::F32 => "float32",
        }
    }
}

/// Legacy storage classes torch names in persistent ids, with the dtype when we can read it.
const STORAGE_CLASSES: &[(&str, Option<DType>)] = &[
    ("BFloat16Storage", Some(DType::BF16)),
    ("HalfStorage", Some(DType::F16)),
    ("FloatStorage", Some(DType::F32)),
    ("DoubleStorage", None),
    ("LongStorage", None),
    ("IntStorage", None),
    ("ShortStorage", None),
    ("CharStorage", None),
    ("ByteStorage", None),
    ("BoolStorage", None),
    ("ComplexFloatStorage", None),
    ("ComplexDoubleStorage", None),
    ("QInt8Storage", None),
    ("QUInt8Storage", None),
    ("QInt32Storage", None),
];

/// The only globals a state dict may name.
#[derive(Debug, Clone, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    /// `torch.<class>`; `dtype` is None for storage types we do not read (Double, Long, ...).
    Storage {
        class: &'static str,
        dtype: Option<DType>,
    },
}

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Global> {
        match (module, name) {
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("torch", _) => {
                STORAGE_CLASSES.iter().find(|(c, _)| *c == name).map(|&(class, dtype)| Global::Storage { class, dtype })
            }
            _ => None,
        }
    }
}

/// One storage as a persistent id names it: `('storage', torch.<Type>Storage, key, location, numel)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// `torch.<Type>Storage` class name, e.g. `BFloat16Storage`.
    pub class: &'static str,
    /// None when the class is one we cannot read.
    pub dtype: Option<DType>,
    /// Entry name under `data/` in the archive.
    pub key: String,
    /// Number of elements of the storage.
    pub numel: usize,
}

/// A tensor as `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PickledTensor {
    pub storage: StorageRef,
    /// In elements.
    pub storage_offset: usize,
    pub shape: Vec<usize>,
    /// In elements.
    pub strides: Vec<usize>,
}

/// Deepest nesting of tuples, lists and dicts accepted (a state dict needs about 6).
pub const MAX_DEPTH: usize = 64;
/// Most values a pickle may make (a state dict makes about 20 per tensor).
pub const MAX_VALUES: usize = 4 << 20;
/// Most dimensions a tensor may have (torch's own limit is 64).
pub const MAX_RANK: usize = 64;
/// Longest storage key (torch writes small decimal numbers).
const MAX_KEY_LEN: usize = 256;

/// A tuple with its nesting depth (1 + its deepest item).
#[derive(Debug)]
struct Tuple {
    depth: usize,
    items: Vec<Value>,
}

/// A list or dict: shared and mutable, as in Python, with its nesting depth so far.
#[derive(Debug)]
struct Container<T: Flatten> {
    depth: std::cell::Cell<usize>,
    items: RefCell<Vec<T>>,
}

/// Items of a container as plain values (a dict's pairs flattened), for the iterative drop.
trait Flatten: Sized {
    fn flatten(items: Vec<Self>) -> Vec<Value>;
}
impl Flatten for Value {
    fn flatten(items: Vec<Value>) -> Vec<Value> {
        items
    }
}
impl Flatten for (Value, Value) {
    fn flatten(items: Vec<(Value, Value)>) -> Vec<Value> {
        items.into_iter().flat_map(|(k, v)| [k, v]).collect()
    }
}

type Shared<T> = Rc<Container<T>>;

fn shared<T: Flatten>(items: Vec<T>, depth: usize) -> Shared<T> {
    Rc::new(Container { depth: depth.into(), items: RefCell::new(items) })
}

/// Drops a value tree without recursion: containers this drop frees are emptied onto a work list.
fn drop_iteratively(mut work: Vec<Value>) {
    while let Some(v) = work.pop() {
        match v {
            Value::Tuple(t) => {
                if let Some(mut t) = Rc::into_inner(t) {
                    work.append(&mut t.items);
                }
            }
            Value::List(l) => {
                if let Some(l) = Rc::into_inner(l) {
                    work.append(&mut l.items.take());
                }
            }
            Value::Dict(d) => {
                if let Some(d) = Rc::into_inner(d) {
                    work.append(&mut Flatten::flatten(d.items.take()));
                }
            }
            _ => {}
        }
    }
}

impl Drop for Tuple {
    fn drop(&mut self) {
        drop_iteratively(std::mem::take(&mut self.items));
    }
}

impl<T: Flatten> Drop for Container<T> {
    fn drop(&mut self) {
        drop_iteratively(T::flatten(self.items.take()));
    }
}

/// A value on the unpickler's stack. Lists and dicts are shared (as in Python), so a memoized container
/// filled later is seen filled when fetched again. Bools and floats are never inspected: kind only.
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(Rc<str>),
    Tuple(Rc<Tuple>),
    List(Shared<Value>),
    Dict(Shared<(Value, Value)>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<PickledTensor>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    /// Nesting depth: 0 for scalars, 1 + the deepest item for containers.
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(t) => t.depth,
            Value::List(l) => l.depth.get(),
            Value::Dict(d) => d.depth.get(),
            _ => 0,
        }
    }
}

/// `int, str, ...` for a tuple, the kind otherwise (never the values: a hostile pickle may be cyclic).
fn kinds(v: &Value) -> String {
    match v {
        Value::Tuple(t) => t.items.iter().map(Value::kind).collect::<Vec<_>>().join(", "),
        other => other.kind().to_string(),
    }
}

/// The byte-level machine. `origin` names the pickle (file and entry) in every error.
struct Machine<'a> {
    origin: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Offset of the opcode being run, for messages.
    op_at: usize,
    stack: Vec<Value>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Values made so far (against [`MAX_VALUES`]).
    made: usize,
}

impl<'a> Machine<'a> {
    fn bad(&self, msg: impl std::fmt::Display) -> Error {
        Error::format(self.origin, format!("pickle byte {}: {msg}", self.op_at))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| self.bad(format!("truncated (needs {n} more bytes)")))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn le<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn len(&mut self, n: u64) -> Result<usize> {
        usize::try_from(n).map_err(|_| self.bad(format!("length {n} too large")))
    }
    fn utf8(&mut self, n: usize) -> Result<String> {
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.bad("string is not UTF-8"))
    }
    /// A `\n`-terminated line (GLOBAL's module and name).
    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.bad("unterminated GLOBAL"))?;
        let s = self.utf8(n)?;
        self.pos += 1;
        Ok(s)
    }

    fn push(&mut self, v: Value) -> Result<()> {
        self.made += 1;
        if self.made > MAX_VALUES {
            return Err(self.bad(format!("more than {MAX_VALUES} values (the limit for a state dict)")));
        }
        self.stack.push(v);
        Ok(())
    }
    /// 1 + the deepest of `items`, refused past [`MAX_DEPTH`].
    fn depth_of<'v>(&self, items: impl IntoIterator<Item = &'v Value>) -> Result<usize> {
        let d = 1 + items.into_iter().map(Value::depth).max().unwrap_or(0);
        if d > MAX_DEPTH {
            return Err(self.bad(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(d)
    }
    fn push_tuple(&mut self, items: Vec<Value>) -> Result<()> {
        let depth = self.depth_of(&items)?;
        self.push(Value::Tuple(Rc::new(Tuple { depth, items })))
    }
    fn pop(&mut self) -> Result<Value> {
        if self.marks.last().is_some_and(|&m| self.stack.len() <= m) {
            return Err(self.bad("pop across a MARK"));
        }
        self.stack.pop().ok_or_else(|| self.bad("stack underflow"))
    }
    fn top(&mut self) -> Result<&mut Value> {
        let (origin, at) = (self.origin, self.op_at);
        self.stack.last_mut().ok_or_else(|| Error::format(origin, format!("pickle byte {at}: stack underflow")))
    }
    /// Everything pushed since the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| self.bad("no MARK"))?;
        Ok(self.stack.split_off(m))
    }
    fn memo_put(&mut self, i: u32) -> Result<()> {
        let v = self.stack.last().cloned().ok_or_else(|| self.bad("memoize on an empty stack"))?;
        self.memo.insert(i, v);
        Ok(())
    }
    fn memo_get(&mut self, i: u32) -> Result<()> {
        let v = self.memo.get(&i).cloned().ok_or_else(|| self.bad(format!("memo {i} unset")))?;
        self.push(v)
    }

    fn global(&mut self, module: &str, name: &str) -> Result<()> {
        match Global::resolve(module, name) {
            Some(g) => self.push(Value::Global(g)),
            None => Err(Error::UnsafePickle(format!(
                "{}: global {module}.{name} at byte {} is not allowed (only a torch state dict is read)",
                self.origin, self.op_at
            ))),
        }
    }

    fn int(&self, v: &Value, what: &str) -> Result<usize> {
        match v {
            Value::Int(i) => usize::try_from(*i).map_err(|_| self.bad(format!("{what} is {i}"))),
            other => Err(self.bad(format!("{what} is a {}, expected an int", other.kind()))),
        }
    }
    fn ints(&self, v: &Value, what: &str) -> Result<Vec<usize>> {
        match v {
            Value::Tuple(t) if t.items.len() > MAX_RANK => {
                Err(self.bad(format!("{what} has {} dimensions (the limit is {MAX_RANK})", t.items.len())))
            }
            Value::Tuple(t) => t.items.iter().map(|x| self.int(x, what)).collect(),
            other => Err(self.bad(format!("{what} is a {}, expected a tuple", other.kind()))),
        }
    }

    /// `('storage', torch.<Type>Storage, key, location, numel)`.
    fn persistent_load(&self, pid: Value) -> Result<Value> {
        if let Value::Tuple(t) = &pid {
            if let [Value::Str(tag), Value::Global(Global::Storage { class, dtype }), Value::Str(key), Value::Str(_), n] =
                t.items.as_slice()
            {
                if &**tag == "storage" {
                    if key.len() > MAX_KEY_LEN {
                        return Err(self.bad(format!("storage key of {} bytes (the limit is {MAX_KEY_LEN})", key.len())));
                    }
                    let numel = self.int(n, "storage numel")?;
                    let s = StorageRef { class, dtype: *dtype, key: key.to_string(), numel };
                    return Ok(Value::Storage(Rc::new(s)));
                }
            }
        }
        Err(self.bad(format!(
            "persistent id ({}) is not ('storage', torch.<Type>Storage, key, location, numel)",
            kinds(&pid)
        )))
    }

    /// REDUCE: calls one of the allowed callables on plain data, without executing anything.
    fn reduce(&self, f: Value, args: Value) -> Result<Value> {
        let Value::Global(g) = f else {
            return Err(Error::UnsafePickle(format!(
                "{}: REDUCE at byte {} on a {} (only allowed globals may be called)",
                self.origin,
                self.op_at,
                f.kind()
            )));
        };
        let Value::Tuple(args) = args else {
            return Err(self.bad(format!("REDUCE arguments are a {}, expected a tuple", args.kind())));
        };
        match (&g, args.items.as_slice()) {
            (Global::OrderedDict, []) => Ok(Value::Dict(shared(Vec::new(), 1))),
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            (Global::RebuildTensorV2, [Value::Storage(s), off, size, stride, _, _, ..]) if args.items.len() <= 7 => {
                let shape = self.ints(size, "tensor size")?;
                let strides = self.ints(stride, "tensor stride")?;
                if shape.len() != strides.len() {
                    return Err(self.bad(format!("tensor size {shape:?} and stride {strides:?} differ in rank")));
                }
                let storage_offset = self.int(off, "storage offset")?;
                let t = PickledTensor { storage: StorageRef::clone(s), storage_offset, shape, strides };
                Ok(Value::Tensor(Rc::new(t)))
            }
            // (tensor, requires_grad, backward_hooks) -> the tensor
            (Global::RebuildParameter, [t @ Value::Tensor(_), _, _]) => Ok(t.clone()),
            (Global::Storage { class, .. }, _) => Err(Error::UnsafePickle(format!(
                "{}: REDUCE at byte {} calls torch.{class} (storages come only from persistent ids)",
                self.origin, self.op_at
            ))),
            _ => Err(self.bad(format!("unexpected arguments to {g:?}: ({})", kinds(&Value::Tuple(args.clone()))))),
        }
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            self.op_at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if !(2..=5).contains(&p) {
                        return Err(self.bad(format!("pickle protocol {p} (expected 2 to 5)")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only
                    self.take(8)?;
                }
                b'.' => return self.pop(),                 // STOP
                b'(' => self.marks.push(self.stack.len()), // MARK
                b'0' => {
                    self.pop()?; // POP
                }
                b'1' => {
                    self.pop_mark()?; // POP_MARK
                }
                b'2' => {
                    let v = self.top()?.clone(); // DUP: shares, never copies
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 | 0x89 => self.push(Value::Bool)?, // NEWTRUE, NEWFALSE
                b'K' => {
                    let v = self.u8()?; // BININT1
                    self.push(Value::Int(v as i64))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?); // BININT2
                    self.push(Value::Int(v as i64))?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?); // BININT
                    self.push(Value::Int(v as i64))?;
                }
                0x8a => {
                    // LONG1: n-byte little-endian two's complement
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err(self.bad(format!("LONG1 of {n} bytes does not fit 64 bits")));
                    }
                    let b = self.take(n)?;
                    let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 };
                    let mut a = [fill; 8];
                    a[..n].copy_from_slice(b);
                    self.push(Value::Int(i64::from_le_bytes(a)))?;
                }
                b'G' => {
                    self.take(8)?; // BINFLOAT
                    self.push(Value::Float)?;
                }
                b'X' | 0x8c | 0x8d => {
                    // BINUNICODE (u32 length), SHORT_BINUNICODE (u8), BINUNICODE8 (u64)
                    let n = match op {
                        b'X' => u32::from_le_bytes(self.le()?) as u64,
                        0x8c => self.u8()? as u64,
                        _ => u64::from_le_bytes(self.le()?),
                    };
                    let n = self.len(n)?;
                    let s = self.utf8(n)?;
                    self.push(Value::Str(s.into()))?;
                }
                b')' => self.push_tuple(Vec::new())?, // EMPTY_TUPLE
                b't' => {
                    let items = self.pop_mark()?; // TUPLE
                    self.push_tuple(items)?;
                }
                0x85..=0x87 => {
                    // TUPLE1..TUPLE3
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n || self.marks.last().is_some_and(|&m| self.stack.len() - n < m) {
                        return Err(self.bad("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push_tuple(items)?;
                }
                b']' => self.push(Value::List(shared(Vec::new(), 1)))?, // EMPTY_LIST
                b'l' => {
                    let items = self.pop_mark()?; // LIST
                    let depth = self.depth_of(&items)?;
                    self.push(Value::List(shared(items, depth)))?;
                }
                b'a' | b'e' => {
                    // APPEND, APPENDS
                    let items = if op == b'a' { vec![self.pop()?] } else { self.pop_mark()? };
                    let depth = self.depth_of(&items)?;
                    match self.top()? {
                        Value::List(l) => {
                            l.depth.set(l.depth.get().max(depth));
                            l.items.borrow_mut().extend(items)
                        }
                        other => {
                            let k = other.kind();
                            return Err(self.bad(format!("APPEND to a {k}")));
                        }
                    }
                }
                b'}' => self.push(Value::Dict(shared(Vec::new(), 1)))?, // EMPTY_DICT
                b'd' | b's' | b'u' => {
                    // DICT (from MARK), SETITEM, SETITEMS
                    let items = match op {
                        b's' => {
                            let v = self.pop()?;
                            vec![self.pop()?, v]
                        }
                        _ => self.pop_mark()?,
                    };
                    if items.len() % 2 != 0 {
                        return Err(self.bad("odd number of items for a dict"));
                    }
                    if op == b'd' {
                        self.push(Value::Dict(shared(Vec::new(), 1)))?;
                    }
                    let depth = self.depth_of(&items)?;
                    let mut it = items.into_iter();
                    let pairs: Vec<_> = std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect();
                    match self.top()? {
                        Value::Dict(d) => {
                            d.depth.set(d.depth.get().max(depth));
                            d.items.borrow_mut().extend(pairs)
                        }
                        other => {
                            let k = other.kind();
                            return Err(self.bad(format!("SETITEM on a {k}")));
                        }
                    }
                }
                b'q' => {
                    let i = self.u8()? as u32; // BINPUT
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.le()?); // LONG_BINPUT
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32; // MEMOIZE
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32; // BINGET
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.le()?); // LONG_BINGET
                    self.memo_get(i)?;
                }
                b'c' => {
                    let module = self.line()?; // GLOBAL
                    let name = self.line()?;
                    self.global(&module, &name)?;
                }
                0x93 => {
                    // STACK_GLOBAL
                    let (name, module) = (self.pop()?, self.pop()?);
                    let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                        return Err(self.bad("STACK_GLOBAL needs two strings"));
                    };
                    self.global(&module, &name)?;
                }
                b'Q' => {
                    let pid = self.pop()?; // BINPERSID
                    let v = self.persistent_load(pid)?;
                    self.push(v)?;
                }
                b'R' => {
                    let args = self.pop()?; // REDUCE
                    let f = self.pop()?;
                    let v = self.reduce(f, args)?;
                    self.push(v)?;
                }
                b'b' => {
                    // BUILD: only an OrderedDict's attribute state (`_metadata` of a state_dict), dropped
                    let _state = self.pop()?;
                    if !matches!(self.top()?, Value::Dict(_)) {
                        let k = self.top()?.kind();
                        return Err(Error::UnsafePickle(format!(
                            "{}: BUILD at byte {} on a {k} (only an OrderedDict's state is accepted)",
                            self.origin, self.op_at
                        )));
                    }
                }
                _ => {
                    let shown = if op.is_ascii_graphic() { format!(" ('{}')", op as char) } else { String::new() };
                    return Err(Error::UnsafePickle(format!(
                        "{}: opcode 0x{op:02x}{shown} at byte {} is not supported (only a torch state dict is read)",
                        self.origin, self.op_at
                    )));
                }
            }
        }
    }
}

/// Reads a torch state-dict pickle: `{"model": {name: tensor}}` or a bare `{name: tensor}`, returning the
/// tensors in file order. `origin` (file and entry) is named in every error.
pub fn read_state_dict(bytes: &[u8], origin: &str) -> Result<Vec<(String, PickledTensor)>> {
    let mut m =
        Machine { origin, bytes, pos: 0, op_at: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), made: 0 };
    let root = m.run()?;
    let as_dict = |v: &Value, what: &str| match v {
        Value::Dict(d) => Ok(d.clone()),
        other => Err(Error::format(origin, format!("{what} is a {}, expected a dict", other.kind()))),
    };
    let root = as_dict(&root, "the pickled object")?;
    let model =
        root.items.borrow().iter().find(|(k, _)| matches!(k, Value::Str(s) if &**s == "model")).map(|(_, v)| v.clone());
    let dict = match model {
        Some(v) => as_dict(&v, "\"model\"")?,
        None => root,
    };
    let dict = dict.items.borrow();
    let mut seen = std::collections::HashSet::new();
    dict.iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(name), _) if !seen.insert(&**name) => {
                Err(Error::format(origin, format!("state dict key {name} appears twice")))
            }
            (Value::Str(name), Value::Tensor(t)) => Ok((name.to_string(), PickledTensor::clone(t))),
            (Value::Str(name), other) => {
                Err(Error::format(origin, format!("state dict entry {name} is a {}, expected a tensor", other.kind())))
            }
            (other, _) => Err(Error::format(origin, format!("state dict key is a {}, expected a str", other.kind()))),
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Protocol-2 pickle of one tensor entry `{name: _rebuild_tensor_v2(('storage', torch.<class>, '0',
    /// 'cpu', numel), offset, shape, strides, False, OrderedDict())}`.
    pub(crate) fn tensor_pickle(
        name: &str,
        class: &str,
        numel: u32,
        offset: u8,
        shape: &[u8],
        strides: &[u8],
    ) -> Vec<u8> {
        let mut p = b"\x80\x02}(".to_vec();
        let str_ = |p: &mut Vec<u8>, s: &str| {
            p.push(b'X');
            p.extend((s.len() as u32).to_le_bytes());
            p.extend(s.as_bytes());
        };
        str_(&mut p, name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        str_(&mut p, "storage");
        p.extend(format!("ctorch\n{class}\n").as_bytes());
        str_(&mut p, "0");
        str_(&mut p, "cpu");
        p.push(b'J');
        p.extend(numel.to_le_bytes());
        p.extend(b"tQK");
        p.push(offset);
        for dims in [shape, strides] {
            p.push(b'(');
            for &d in dims {
                p.extend([b'K', d]);
            }
            p.push(b't');
        }
        p.extend(b"\x89ccollections\nOrderedDict\n)RtRu.");
        p
    }

    #[test]
    fn reads_a_hand_made_state_dict() {
        let p = tensor_pickle("w", "BFloat16Storage", 12, 2, &[2, 5], &[1, 2]);
        let sd = read_state_dict(&p, "test").unwrap();
        assert_eq!(sd.len(), 1);
        let (name, t) = &sd[0];
        assert_eq!(name, "w");
        assert_eq!((t.storage_offset, t.shape.as_slice(), t.strides.as_slice()), (2, &[2, 5][..], &[1, 2][..]));
        assert_eq!(
            (t.storage.class, t.storage.dtype, t.storage.key.as_str(), t.storage.numel),
            ("BFloat16Storage", Some(DType::BF16), "0", 12)
        );
    }

    #[test]
    fn a_memoized_dict_filled_later_is_seen_filled() {
        // d = {}; memo[1] = d; d["w"] = tensor; pop; {"model": memo[1]}
        let body = tensor_pickle("w", "FloatStorage", 1, 0, &[1], &[1]);
        let fill = &body[3..body.len() - 1]; // after PROTO and EMPTY_DICT, before STOP
        let p = [&b"\x80\x02}q\x01"[..], fill, b"0}X\x05\x00\x00\x00modelh\x01s."].concat();
        let sd = read_state_dict(&p, "test").unwrap();
        assert_eq!(sd.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["w"]);
    }

    #[test]
    fn refuses_other_globals_and_opcodes() {
        for (pkl, want) in [
            (&b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R."[..], "global os.system at byte 2"),
            (b"\x80\x02cbuiltins\neval\n.", "global builtins.eval at byte 2"),
            (b"\x80\x04\x8c\x05posix\x8c\x06system\x93.", "global posix.system at byte 17"),
            (b"\x80\x02ctorch\nFloatStorage\n)R.", "REDUCE at byte 23 calls torch.FloatStorage"),
            (b"\x80\x02N)R.", "REDUCE at byte 4 on a None"),
            (b"\x80\x02(ios\nsystem\n.", "opcode 0x69 ('i') at byte 3"),
            (b"\x80\x02\xfe.", "opcode 0xfe at byte 2"),
        ] {
            match read_state_dict(pkl, "evil.pkl") {
                Err(Error::UnsafePickle(m)) => assert!(m.contains(want) && m.starts_with("evil.pkl"), "{m}"),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_pickles_fail_cleanly() {
        for pkl in [
            &b""[..],
            b"\x80\x02",
            b"\x80\x02X\xff\xff\xff\xff",
            b"\x80\x01}.",
            b"\x80\x02K\x01.",
            b"\x80\x02t.",
            b"\x80\x02h\x07.",
        ] {
            assert!(matches!(read_state_dict(pkl, "bad.pkl"), Err(Error::Format { .. })), "{pkl:?}");
        }
    }

    #[test]
    fn shared_values_are_never_copied() {
        // Each `DUP, TUPLE2` doubles the tree a deep copy would make: 2^60 leaves by reference.
        let p = [&b"\x80\x02N"[..], &b"2\x86".repeat(60), b"."].concat();
        let e = read_state_dict(&p, "dup.pkl").unwrap_err().to_string();
        assert!(e.contains("the pickled object is a tuple"), "{e}");
        // One string fetched from the memo a million times.
        let p = [&b"\x80\x02X\x00\x00\x10\x00"[..], &vec![b'a'; 1 << 20], b"q\x00", &b"h\x00".repeat(1 << 20), b"."].concat();
        let e = read_state_dict(&p, "memo.pkl").unwrap_err().to_string();
        assert!(e.contains("is a str"), "{e}");
    }

    #[test]
    fn nesting_and_value_count_are_limited() {
        let p = [&b"\x80\x02)"[..], &vec![0x85; 1_000_000], b"."].concat();
        let e = read_state_dict(&p, "deep.pkl").unwrap_err().to_string();
        assert!(e.contains(&format!("pickle byte {}: nesting deeper than {MAX_DEPTH}", 3 + MAX_DEPTH - 1)), "{e}");
        let p = [&b"\x80\x02"[..], &b"]".repeat(100), &b"a".repeat(99), b"."].concat();
        let e = read_state_dict(&p, "deep-list.pkl").unwrap_err().to_string();
        assert!(e.contains("nesting deeper than"), "{e}");
        let p = [&b"\x80\x02N"[..], &vec![b'2'; MAX_VALUES + 1], b"."].concat();
        let e = read_state_dict(&p, "many.pkl").unwrap_err().to_string();
        assert!(e.contains(&format!("more than {MAX_VALUES} values")), "{e}");
    }

    #[test]
    fn a_huge_shape_tuple_is_refused_not_copied() {
        // A 100-int tuple memoized, then used as a tensor size: refused by rank, before any copy.
        let p = tensor_pickle("w", "FloatStorage", 1, 0, &[1; 100], &[1; 100]);
        let e = read_state_dict(&p, "rank.pkl").unwrap_err().to_string();
        assert!(e.contains("tensor size has 100 dimensions (the limit is 64)"), "{e}");
    }

    #[test]
    fn a_million_deep_value_drops_without_recursion() {
        // Built by hand (the reader refuses this depth); dropping it must not overflow the stack.
        let mut v = Value::None;
        for i in 0..1_000_000 {
            v = match i % 3 {
                0 => Value::Tuple(Rc::new(Tuple { depth: 0, items: vec![v] })),
                1 => Value::List(shared(vec![v], 0)),
                _ => Value::Dict(shared(vec![(Value::None, v)], 0)),
            };
        }
        drop(v);
    }
}
