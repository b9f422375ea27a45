//! The converted model format (docs/format.md): `manifest.json` + safetensors shards +
//! `tokenizer.json`. Reading is tensor by tensor through a `ShardReader` (files natively, OPFS in
//! the browser); writing streams tensors into size-limited shards with their SHA-256.

use super::quant::{Packed, Quant};
use crate::config::ModelConfig;
use crate::io::TensorSource;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "sphinx-web";
pub const FORMAT_VERSION: u32 = 1;

/// A file of the folder with its size and SHA-256 (lower-case hex).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Where one tensor lives and how it is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    pub name: String,
    pub shard: usize,
    /// Absolute byte offset of the data inside the shard file.
    pub offset: u64,
    pub bytes: u64,
    /// Logical shape.
    pub shape: Vec<usize>,
    pub quant: Quant,
    /// The safetensors dtype of the entry (F32, F16 or U8).
    pub dtype: String,
}

impl TensorEntry {
    /// The [rows, cols] matrix view (cols = product of the other dimensions).
    pub fn matrix(&self) -> (usize, usize) {
        matrix_of(&self.shape)
    }
}

/// [rows, cols] view of a shape: the first dimension by all the others.
pub fn matrix_of(shape: &[usize]) -> (usize, usize) {
    match shape.split_first() {
        Some((r, rest)) => (*r, rest.iter().product()),
        None => (1, 1),
    }
}

/// The precision asked for each tensor group.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantChoice {
    pub llm: Quant,
    pub vision: Quant,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub model: ModelConfig,
    pub quantization: QuantChoice,
    pub tokenizer: Option<FileEntry>,
    pub shards: Vec<FileEntry>,
    pub tensors: Vec<TensorEntry>,
}

/// Most shards a manifest may list.
pub const MAX_SHARDS: usize = 1 << 16;
/// Most tensors a manifest may list (SPHINX-MoE has about 10,000).
pub const MAX_TENSORS: usize = 1 << 20;
/// Most dimensions of a tensor.
pub const MAX_RANK: usize = 8;
/// Longest file or tensor name.
const MAX_NAME: usize = 1024;

/// A file name of the manifest must be a plain name inside the model folder: no separator, no
/// `.`/`..`, nothing absolute, no control characters — so no reader (file or URL) leaves the folder.
pub fn check_file_name(name: &str) -> std::result::Result<(), String> {
    let bad = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 255 {
        Some("is longer than 255 bytes")
    } else if name == "." || name == ".." {
        Some("names a folder")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.contains(':') {
        Some("contains ':' (a drive or URL scheme)")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name == "manifest.json" {
        Some("is the manifest itself")
    } else {
        None
    };
    match bad {
        Some(why) => Err(format!("file {name:?} {why}: only plain file names inside the model folder are allowed")),
        None => Ok(()),
    }
}

fn check_file_entry(e: &FileEntry, what: &str) -> std::result::Result<(), String> {
    check_file_name(&e.file).map_err(|m| format!("{what}: {m}"))?;
    if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("{what} {}: sha256 {:?} is not 64 lower-case hex digits", e.file, e.sha256));
    }
    Ok(())
}

impl TensorEntry {
    /// Checks the entry on its own: name, rank, dtype for its quant, and `bytes` for its shape
    /// (checked arithmetic: a shape whose size overflows is refused, not wrapped).
    fn check(&self) -> std::result::Result<(), String> {
        let name = &self.name;
        if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(format!("tensor name {name:?} is empty, too long or has control characters"));
        }
        if self.shape.len() > MAX_RANK {
            return Err(format!("tensor {name}: {} dimensions (the limit is {MAX_RANK})", self.shape.len()));
        }
        if self.dtype != dtype_of(self.quant).to_string() {
            return Err(format!("tensor {name}: dtype {} does not store {} (expected {})", self.dtype, self.quant, dtype_of(self.quant)));
        }
        let dims = self.shape.iter().map(|&d| d as u64);
        let rows = self.shape.first().map_or(1, |&r| r as u64);
        let cols = dims.skip(1).try_fold(1u64, u64::checked_mul);
        let want = cols.and_then(|c| self.quant.checked_bytes(rows, c));
        match want {
            Some(w) if w == self.bytes => Ok(()),
            Some(w) => Err(format!("tensor {name}: {} bytes, but {} {:?} takes {w}", self.bytes, self.quant, self.shape)),
            None => Err(format!("tensor {name}: shape {:?} is too large", self.shape)),
        }
    }
}

impl Manifest {
    /// Parses and checks a manifest (`origin` names it in errors). The browser calls this too,
    /// before it fetches anything: every name is a plain file of the folder, every tensor lies
    /// inside its shard's listed bytes without overlapping another, in the dtype and size its quant
    /// and shape give, and the counts are bounded.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| Error::format(origin, e))?;
        if m.format != FORMAT || m.format_version != FORMAT_VERSION {
            return Err(Error::format(origin, format!("format {} v{} (this build reads {FORMAT} v{FORMAT_VERSION})", m.format, m.format_version)));
        }
        m.validate().map_err(|msg| Error::format(origin, msg))?;
        Ok(m)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.shards.len() > MAX_SHARDS || self.tensors.len() > MAX_TENSORS {
            return Err(format!("{} shards and {} tensors (the limits are {MAX_SHARDS} and {MAX_TENSORS})", self.shards.len(), self.tensors.len()));
        }
        let mut files = std::collections::HashSet::new();
        for (i, s) in self.shards.iter().enumerate() {
            check_file_entry(s, &format!("shard {i}"))?;
            if !files.insert(s.file.as_str()) {
                return Err(format!("shard {i}: file {} is listed twice", s.file));
            }
        }
        if let Some(t) = &self.tokenizer {
            check_file_entry(t, "tokenizer")?;
            if files.contains(t.file.as_str()) {
                return Err(format!("tokenizer: file {} is also a shard", t.file));
            }
        }
        let mut names = std::collections::HashSet::new();
        // (shard, start, end, tensor index) to find overlaps
        let mut ranges = Vec::with_capacity(self.tensors.len());
        for (i, t) in self.tensors.iter().enumerate() {
            t.check()?;
            if !names.insert(t.name.as_str()) {
                return Err(format!("tensor {} is listed twice", t.name));
            }
            let shard = self.shards.get(t.shard).ok_or_else(|| format!("tensor {} names shard {} of {}", t.name, t.shard, self.shards.len()))?;
            let end = t.offset.checked_add(t.bytes).filter(|&e| t.offset >= 8 && e <= shard.bytes);
            let end = end.ok_or_else(|| format!("tensor {}: {} bytes at offset {} do not fit inside {} ({} bytes)", t.name, t.bytes, t.offset, shard.file, shard.bytes))?;
            ranges.push((t.shard, t.offset, end, i));
        }
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            let ((sa, _, ea, a), (sb, ob, _, b)) = (w[0], w[1]);
            if sa == sb && ob < ea {
                let (a, b) = (&self.tensors[a].name, &self.tensors[b].name);
                return Err(format!("tensors {a} and {b} overlap in {}", self.shards[sa].file));
            }
        }
        Ok(())
    }

    pub fn read(dir: &Path) -> Result<Manifest> {
        let p = dir.join("manifest.json");
        let bytes = read_small_file(&p, MAX_MANIFEST_BYTES)?;
        Manifest::parse(&bytes, &p.display().to_string())
    }

    /// Total bytes of all shards.
    pub fn weight_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum()
    }
}

/// Largest manifest read (a 10,000-tensor manifest is about 3 MB).
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// Reads a whole regular file of at most `limit` bytes.
fn read_small_file(p: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = open_regular(p)?;
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes).map_err(|e| Error::io(p, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::format(p.display(), format!("larger than {limit} bytes")));
    }
    Ok(bytes)
}

/// Opens a file that must be a regular file (not a FIFO, device or folder), checked before
/// opening (opening a FIFO would block) and again on the open handle.
fn open_regular(p: &Path) -> Result<std::fs::File> {
    Ok(super::files::open_regular(p)?.0)
}

/// Opens `dir/name` (a plain name, see [`check_file_name`]) as a regular file inside `dir`: a
/// symlink is followed only when its target stays inside the folder.
pub fn open_in_folder(dir: &Path, name: &str) -> Result<std::fs::File> {
    let p = dir.join(name);
    check_file_name(name).map_err(|m| Error::format(p.display(), m))?;
    let link = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
    if link.file_type().is_symlink() {
        let target = std::fs::canonicalize(&p).map_err(|e| Error::io(&p, e))?;
        let folder = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        if !target.starts_with(&folder) {
            return Err(Error::format(p.display(), format!("is a symlink to {}, outside the model folder", target.display())));
        }
    }
    open_regular(&p)
}

/// Random access to the shard files of a manifest.
pub trait ShardReader {
    fn read_at(&mut self, shard: usize, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Called once every tensor has been read: fails if what was read is not what the manifest
    /// lists (the native reader compares each shard's SHA-256 here).
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// One shard file being read, with the SHA-256 of its bytes `[0, hashed)` streamed as they pass.
struct OpenShard {
    path: PathBuf,
    file: std::fs::File,
    entry: FileEntry,
    sha: Sha256,
    hashed: u64,
    verified: bool,
}

impl OpenShard {
    /// Reads `[hashed, to)` through the hash (gaps between the tensors that were read).
    fn hash_to(&mut self, to: u64) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let path = &self.path;
        self.file.seek(SeekFrom::Start(self.hashed)).map_err(|e| Error::io(path, e))?;
        let mut buf = vec![0u8; (to - self.hashed).min(1 << 20) as usize];
        while self.hashed < to {
            let n = buf.len().min((to - self.hashed) as usize);
            self.file.read_exact(&mut buf[..n]).map_err(|e| Error::io(path, e))?;
            self.sha.update(&buf[..n]);
            self.hashed += n as u64;
        }
        Ok(())
    }

    /// Once every byte is hashed: the digest must be the manifest's.
    fn check(&mut self) -> Result<()> {
        if self.verified || self.hashed < self.entry.bytes {
            return Ok(());
        }
        let h = hex(&self.sha.clone().finalize());
        if h != self.entry.sha256 {
            let msg = format!("SHA-256 {h}, manifest says {} (corrupt or changed file)", self.entry.sha256);
            return Err(Error::format(self.path.display(), msg));
        }
        self.verified = true;
        Ok(())
    }
}

/// Shards as files in a folder (native), verified as the browser verifies them: each a regular file
/// of the folder with the listed size, its safetensors header (parsed by the `safetensors` crate)
/// agreeing with the manifest, and its SHA-256, hashed in the same pass that reads the tensors.
pub struct FileShards {
    shards: Vec<OpenShard>,
}

impl FileShards {
    /// Opens and checks every shard (size and header); the hash is compared as reading completes.
    pub fn open(dir: &Path, manifest: &Manifest) -> Result<FileShards> {
        let mut shards = Vec::with_capacity(manifest.shards.len());
        for (i, entry) in manifest.shards.iter().enumerate() {
            let path = dir.join(&entry.file);
            let file = open_in_folder(dir, &entry.file)?;
            let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
            if len != entry.bytes {
                return Err(Error::format(path.display(), format!("{len} bytes, manifest says {}", entry.bytes)));
            }
            let mut s = OpenShard { path, file, entry: entry.clone(), sha: Sha256::new(), hashed: 0, verified: false };
            let header = read_header(&mut s)?;
            check_header(&header, i, manifest).map_err(|m| Error::format(s.path.display(), m))?;
            shards.push(s);
        }
        Ok(FileShards { shards })
    }
}

/// A shard's safetensors header: its length and JSON, read through the shard's hash.
struct Header {
    /// Bytes before the data region (8 + the JSON's length).
    data_start: u64,
    metadata: Metadata,
}

/// safetensors' own limit on the JSON header.
const MAX_HEADER: u64 = 100_000_000;

fn read_header(s: &mut OpenShard) -> Result<Header> {
    use std::io::Read;
    let bad = |m: String| Error::format(s.path.display(), format!("safetensors header: {m}"));
    if s.entry.bytes < 8 {
        return Err(bad(format!("the file has {} bytes, less than the 8-byte header length", s.entry.bytes)));
    }
    let mut n = [0u8; 8];
    s.file.read_exact(&mut n).map_err(|e| Error::io(&s.path, e))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || n > s.entry.bytes - 8 {
        return Err(bad(format!("length {n} is larger than the file ({} bytes) or safetensors' limit ({MAX_HEADER})", s.entry.bytes)));
    }
    let mut json = vec![0u8; n as usize];
    s.file.read_exact(&mut json).map_err(|e| Error::io(&s.path, e))?;
    s.sha.update(n.to_le_bytes());
    s.sha.update(&json);
    s.hashed = 8 + n;
    let metadata: Metadata = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
    Ok(Header { data_start: 8 + n, metadata })
}

/// The safetensors header of shard `index` must describe exactly the manifest's tensors of it.
fn check_header(h: &Header, index: usize, m: &Manifest) -> std::result::Result<(), String> {
    let file_bytes = m.shards[index].bytes;
    let data_end = h.data_start.checked_add(h.metadata.data_len() as u64);
    if data_end != Some(file_bytes) {
        return Err(format!("safetensors header: data end at {data_end:?}, but the file has {file_bytes} bytes"));
    }
    let mine: Vec<&TensorEntry> = m.tensors.iter().filter(|t| t.shard == index).collect();
    let listed = h.metadata.offset_keys().len();
    if listed != mine.len() {
        return Err(format!("safetensors header lists {listed} tensors, the manifest {}", mine.len()));
    }
    let quant_meta = h.metadata.metadata().as_ref();
    for t in mine {
        let info = h.metadata.info(&t.name).ok_or_else(|| format!("tensor {} is not in the safetensors header", t.name))?;
        let dtype = info.dtype.to_string();
        let shape = stored_shape(t.quant, &t.shape, t.bytes as usize);
        let (start, end) = (h.data_start + info.data_offsets.0 as u64, h.data_start + info.data_offsets.1 as u64);
        if dtype != t.dtype || info.shape != shape || start != t.offset || end - start != t.bytes {
            return Err(format!(
                "tensor {}: safetensors header has {dtype} {:?} at {start}..{end}, the manifest {} {shape:?} at {}..{}",
                t.name,
                info.shape,
                t.dtype,
                t.offset,
                t.offset + t.bytes
            ));
        }
        if t.quant.is_block() {
            let (r, c) = t.matrix();
            let want = block_note(t.quant, r, c);
            let have = quant_meta.and_then(|q| q.get(&t.name));
            if have.is_some_and(|h| *h != want) {
                return Err(format!("tensor {}: safetensors metadata says {have:?}, the manifest {want}", t.name));
            }
        }
    }
    Ok(())
}

impl ShardReader for FileShards {
    fn read_at(&mut self, shard: usize, offset: u64, buf: &mut [u8]) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let s = self.shards.get_mut(shard).ok_or_else(|| Error::Msg(format!("no shard {shard}")))?;
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= s.entry.bytes);
        let end = end.ok_or_else(|| Error::format(s.path.display(), format!("{} bytes at {offset} reach past the end", buf.len())))?;
        if offset > s.hashed {
            s.hash_to(offset)?;
        }
        s.file.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(&s.path, e))?;
        s.file.read_exact(buf).map_err(|e| Error::io(&s.path, e))?;
        if offset <= s.hashed && end > s.hashed {
            s.sha.update(&buf[(s.hashed - offset) as usize..]);
            s.hashed = end;
        }
        s.check()
    }

    fn finish(&mut self) -> Result<()> {
        for s in &mut self.shards {
            let to = s.entry.bytes;
            if s.hashed < to {
                s.hash_to(to)?;
            }
            s.check()?;
        }
        Ok(())
    }
}

/// Tensors of a converted folder, read one at a time.
pub struct ConvertedSource {
    pub manifest: Manifest,
    reader: Box<dyn ShardReader>,
    index: HashMap<String, usize>,
    origin: String,
}

impl ConvertedSource {
    pub fn new(manifest: Manifest, reader: Box<dyn ShardReader>, origin: &str) -> ConvertedSource {
        let index = manifest.tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        ConvertedSource { manifest, reader, index, origin: origin.to_string() }
    }

    /// Opens a folder on disk: checks the manifest, the tokenizer's size and SHA-256, and every
    /// shard's size and header; shard hashes are compared as the tensors are read ([`TensorSource::finish`]).
    pub fn open(dir: &Path) -> Result<ConvertedSource> {
        let manifest = Manifest::read(dir)?;
        if let Some(t) = &manifest.tokenizer {
            verify_small(dir, t)?;
        }
        let reader = FileShards::open(dir, &manifest)?;
        Ok(ConvertedSource::new(manifest, Box::new(reader), &dir.display().to_string()))
    }

    fn entry(&self, name: &str) -> Result<&TensorEntry> {
        self.index
            .get(name)
            .map(|&i| &self.manifest.tensors[i])
            .ok_or_else(|| Error::Weights(format!("missing tensor {name} in {}", self.origin)))
    }
}

impl TensorSource for ConvertedSource {
    fn describe(&self) -> String {
        self.origin.clone()
    }
    fn names(&self) -> Vec<String> {
        self.manifest.tensors.iter().map(|t| t.name.clone()).collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entry(name).ok().map(|t| t.shape.clone())
    }
    fn quant(&self, name: &str) -> Quant {
        self.entry(name).map(|t| t.quant).unwrap_or(Quant::F32)
    }
    fn read_packed(&mut self, name: &str) -> Result<Packed> {
        let t = self.entry(name)?.clone();
        let mut bytes = vec![0u8; t.bytes as usize];
        self.reader.read_at(t.shard, t.offset, &mut bytes)?;
        let (rows, cols) = t.matrix();
        Packed::new(t.quant, rows, cols, bytes).map_err(|e| Error::Weights(format!("tensor {name} in {}: {e}", self.origin)))
    }
    fn read_f32(&mut self, name: &str) -> Result<Vec<f32>> {
        Ok(self.read_packed(name)?.to_f32())
    }
    fn finish(&mut self) -> Result<()> {
        self.reader.finish()
    }
}

/// Safetensors dtype name of a stored precision.
pub fn dtype_of(q: Quant) -> Dtype {
    match q {
        Quant::F32 => Dtype::F32,
        Quant::F16 => Dtype::F16,
        Quant::Q8 | Quant::Q4 => Dtype::U8,
    }
}

/// The shape the safetensors header gives a stored tensor: its own, or its bytes for the block
/// formats (U8).
fn stored_shape(q: Quant, shape: &[usize], bytes: usize) -> Vec<usize> {
    if q.is_block() {
        vec![bytes]
    } else {
        shape.to_vec()
    }
}

/// The safetensors metadata entry of a block-format tensor: `q8:rows,cols`.
fn block_note(q: Quant, rows: usize, cols: usize) -> String {
    format!("{q}:{rows},{cols}")
}

/// Writes tensors in order into shards of at most `shard_limit` bytes (a larger tensor gets a
/// shard of its own), then the manifest — all inside a fresh temporary folder beside the target,
/// synced, and renamed into place last: an interrupted or failed run leaves the target as it was
/// (and a half-written folder never has the target's name).
pub struct ModelWriter {
    /// The folder asked for.
    target: PathBuf,
    /// Where the files are written until `finish` renames it to `target`.
    dir: PathBuf,
    shard_limit: u64,
    pending: Vec<(String, Vec<usize>, Packed)>,
    pending_bytes: u64,
    /// (temporary path, entry) of written shards
    shards: Vec<(PathBuf, FileEntry)>,
    tensors: Vec<TensorEntry>,
    /// Set once the folder is in place (else dropping removes the temporary folder).
    done: bool,
}

/// Test only: `SPHINX_TEST_ABORT_WRITE=N` aborts the process (as a kill would: nothing is cleaned
/// up) once N shards are written, `=rename` just before the folder is moved into place.
fn abort_for_test(point: &str) {
    if std::env::var("SPHINX_TEST_ABORT_WRITE").is_ok_and(|v| v == point) {
        eprintln!("SPHINX_TEST_ABORT_WRITE={point}: aborting");
        std::process::abort();
    }
}

/// A sibling of `target` named `.NAME.TAG-PID`.
fn sibling(target: &Path, tag: &str) -> Result<PathBuf> {
    let name = target.file_name().ok_or_else(|| Error::Config(format!("{}: not a folder name", target.display())))?;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{}.{tag}-{}", name.to_string_lossy(), std::process::id())))
}

fn sync_path(p: &Path) -> Result<()> {
    // Folders are synced where the platform allows opening them (Unix); files everywhere.
    match std::fs::File::open(p) {
        Ok(f) => match f.sync_all() {
            Err(e) if p.is_file() => Err(Error::io(p, e)),
            _ => Ok(()),
        },
        Err(e) if p.is_file() => Err(Error::io(p, e)),
        Err(_) => Ok(()),
    }
}

impl ModelWriter {
    /// Starts writing the folder `target`. A target that exists and is not empty is refused unless
    /// `replace` and it holds only a model this tool wrote ([`super::outputs::replaceable`]); then
    /// its old contents are replaced, all at once, by `finish`.
    pub fn new(target: &Path, shard_limit: u64, replace: bool) -> Result<ModelWriter> {
        super::outputs::replaceable(target, replace)?;
        let dir = sibling(target, "partial")?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(ModelWriter {
            target: target.to_path_buf(),
            dir,
            shard_limit: shard_limit.max(1),
            pending: Vec::new(),
            pending_bytes: 0,
            shards: Vec::new(),
            tensors: Vec::new(),
            done: false,
        })
    }

    /// Appends a tensor (its logical shape, its stored form).
    pub fn add(&mut self, name: &str, shape: &[usize], packed: Packed) -> Result<()> {
        let n = packed.bytes.len() as u64;
        if !self.pending.is_empty() && self.pending_bytes + n > self.shard_limit {
            self.flush()?;
        }
        self.pending_bytes += n;
        self.pending.push((name.to_string(), shape.to_vec(), packed));
        Ok(())
    }

    /// The safetensors header of the pending tensors, in their order, built and checked by the
    /// `safetensors` crate, padded to 8 bytes. Written through `serde_json::Value`, whose maps keep
    /// their keys sorted, so the same tensors give the same bytes (and shard hash) on every run.
    fn header(&self) -> Result<Vec<u8>> {
        let mut infos = Vec::with_capacity(self.pending.len());
        let mut notes = HashMap::from([("format".to_string(), FORMAT.to_string())]);
        let mut at = 0;
        for (name, shape, p) in &self.pending {
            let len = p.bytes.len();
            infos.push((name.clone(), TensorInfo { dtype: dtype_of(p.quant), shape: stored_shape(p.quant, shape, len), data_offsets: (at, at + len) }));
            if p.quant.is_block() {
                notes.insert(name.clone(), block_note(p.quant, p.rows, p.cols));
            }
            at += len;
        }
        let msg = |e: &dyn std::fmt::Display| Error::Msg(format!("safetensors header: {e}"));
        let header = Metadata::new(Some(notes), infos).map_err(|e| msg(&e))?;
        let mut json = serde_json::to_value(&header).and_then(|v| serde_json::to_vec(&v)).map_err(|e| msg(&e))?;
        json.resize(json.len().next_multiple_of(8), b' ');
        Ok(json)
    }

    /// Writes the pending tensors as one safetensors shard.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let index = self.shards.len();
        let hjson = self.header()?;
        let path = self.dir.join(format!("shard-{index:05}.tmp"));
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut out = std::io::BufWriter::new(file);
        let mut sha = Sha256::new();
        let mut put = |bytes: &[u8]| -> Result<()> {
            sha.update(bytes);
            out.write_all(bytes).map_err(|e| Error::io(&path, e))
        };
        put(&(hjson.len() as u64).to_le_bytes())?;
        put(&hjson)?;
        let base = 8 + hjson.len() as u64;
        let mut at = 0u64;
        for (name, shape, p) in self.pending.drain(..) {
            put(&p.bytes)?;
            self.tensors.push(TensorEntry {
                name,
                shard: index,
                offset: base + at,
                bytes: p.bytes.len() as u64,
                shape,
                quant: p.quant,
                dtype: dtype_of(p.quant).to_string(),
            });
            at += p.bytes.len() as u64;
        }
        out.flush().map_err(|e| Error::io(&path, e))?;
        out.get_ref().sync_all().map_err(|e| Error::io(&path, e))?;
        let entry = FileEntry { file: String::new(), bytes: base + at, sha256: hex(&sha.finalize()) };
        self.shards.push((path, entry));
        abort_for_test(&self.shards.len().to_string());
        self.pending_bytes = 0;
        Ok(())
    }

    /// Names the shards `model-0000i-of-0000N.safetensors`, writes `tokenizer.json` and
    /// `manifest.json`, syncs them, then moves the folder into place (replacing the old one).
    pub fn finish(mut self, model: &ModelConfig, quantization: QuantChoice, tokenizer_json: Option<&[u8]>) -> Result<Manifest> {
        self.flush()?;
        let n = self.shards.len();
        let mut shards = Vec::with_capacity(n);
        for (i, (tmp, mut entry)) in std::mem::take(&mut self.shards).into_iter().enumerate() {
            entry.file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
            let dst = self.dir.join(&entry.file);
            std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
            shards.push(entry);
        }
        let write = |name: &str, bytes: &[u8]| -> Result<()> {
            let p = self.dir.join(name);
            let mut f = std::fs::File::create(&p).map_err(|e| Error::io(&p, e))?;
            f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| Error::io(&p, e))
        };
        let tokenizer = match tokenizer_json {
            Some(bytes) => {
                write("tokenizer.json", bytes)?;
                Some(FileEntry { file: "tokenizer.json".into(), bytes: bytes.len() as u64, sha256: sha256_hex(bytes) })
            }
            None => None,
        };
        let manifest = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            model: model.clone(),
            quantization,
            tokenizer,
            shards,
            tensors: std::mem::take(&mut self.tensors),
        };
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Msg(e.to_string()))?;
        write("manifest.json", text.as_bytes())?;
        sync_path(&self.dir)?;
        self.move_into_place()?;
        Ok(manifest)
    }

    /// Renames the finished folder to the target; an old target is moved aside first and removed
    /// after (so the target name only ever holds a complete folder).
    fn move_into_place(&mut self) -> Result<()> {
        abort_for_test("rename");
        let target = self.target.clone();
        let old = sibling(&target, "old")?;
        let had_old = std::fs::symlink_metadata(&target).is_ok();
        if had_old {
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(&target, &old).map_err(|e| Error::io(&target, e))?;
        }
        std::fs::rename(&self.dir, &target).map_err(|e| Error::io(&target, e))?;
        self.done = true;
        if had_old {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        if let Some(parent) = target.parent() {
            sync_path(parent)?;
        }
        Ok(())
    }
}

impl Drop for ModelWriter {
    /// A writer dropped before `finish` completed (an error, a panic) removes its temporary folder.
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Largest tokenizer file read whole (LLaMA's tokenizer.json is 1.8 MB).
const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

/// Checks a small listed file (the tokenizer): a regular file of the folder, its size and SHA-256.
fn verify_small(dir: &Path, e: &FileEntry) -> Result<()> {
    use std::io::Read;
    let p = dir.join(&e.file);
    let f = open_in_folder(dir, &e.file)?;
    let len = f.metadata().map_err(|err| Error::io(&p, err))?.len();
    if len != e.bytes || len > MAX_TOKENIZER_BYTES {
        return Err(Error::format(p.display(), format!("{len} bytes, manifest says {} (at most {MAX_TOKENIZER_BYTES})", e.bytes)));
    }
    let mut bytes = Vec::new();
    f.take(len).read_to_end(&mut bytes).map_err(|err| Error::io(&p, err))?;
    let h = sha256_hex(&bytes);
    if h != e.sha256 {
        return Err(Error::format(p.display(), format!("SHA-256 {h}, manifest says {}", e.sha256)));
    }
    Ok(())
}

/// Checks a whole folder the way loading does (every file regular and inside the folder, sizes,
/// safetensors headers against the manifest, SHA-256s), reading each shard once.
pub fn verify_folder(dir: &Path, manifest: &Manifest) -> Result<()> {
    if let Some(t) = &manifest.tokenizer {
        verify_small(dir, t)?;
    }
    FileShards::open(dir, manifest)?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-tensor folder written by `ModelWriter` (f32 [2, 3] and q8 [2, 32]) and its manifest.
    fn written(name: &str) -> (PathBuf, Manifest) {
        let dir = std::env::temp_dir().join(format!("sphinx-conv-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = ModelWriter::new(&dir, 1 << 20, false).unwrap();
        w.add("a.weight", &[2, 3], Packed::quantize(Quant::F32, &[1.0; 6], 2, 3)).unwrap();
        w.add("b.weight", &[2, 32], Packed::quantize(Quant::Q8, &[0.5; 64], 2, 32)).unwrap();
        let m = w.finish(&crate::convert::demo_config(), QuantChoice { llm: Quant::Q8, vision: Quant::Q8 }, Some(b"{}")).unwrap();
        (dir, m)
    }

    /// The header comes from the safetensors crate in the order the tensors were added, and the
    /// same tensors give the same bytes on every run (the block notes are a hash map in the crate).
    #[test]
    fn shards_are_the_same_bytes_on_every_run_with_the_tensors_in_order() {
        let shards: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                let (dir, m) = written(&format!("again{i}"));
                let bytes = std::fs::read(dir.join(&m.shards[0].file)).unwrap();
                let _ = std::fs::remove_dir_all(&dir);
                bytes
            })
            .collect();
        assert!(shards.iter().all(|s| *s == shards[0]), "shards differ between runs");
        let n = u64::from_le_bytes(shards[0][..8].try_into().unwrap()) as usize;
        let header: Metadata = serde_json::from_slice(&shards[0][8..8 + n]).unwrap();
        let (a, b) = (header.info("a.weight").unwrap(), header.info("b.weight").unwrap());
        assert_eq!((a.dtype, a.shape.clone(), a.data_offsets), (Dtype::F32, vec![2, 3], (0, 24)));
        assert_eq!((b.dtype, b.data_offsets.0), (Dtype::U8, 24));
        let notes = header.metadata().clone().unwrap();
        assert_eq!((notes["format"].as_str(), notes["b.weight"].as_str()), (FORMAT, "q8:2,32"));
    }

    fn parse_err(m: &Manifest) -> String {
        Manifest::parse(&serde_json::to_vec(m).unwrap(), "m.json").unwrap_err().to_string()
    }

    #[test]
    fn written_folders_parse_and_verify() {
        let (dir, m) = written("ok");
        assert_eq!(Manifest::read(&dir).unwrap(), m);
        verify_folder(&dir, &m).unwrap();
        let mut src = ConvertedSource::open(&dir).unwrap();
        assert_eq!(src.read_f32("a.weight").unwrap(), [1.0; 6]);
        src.read_packed("b.weight").unwrap();
        src.finish().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parse_refuses_inconsistent_manifests() {
        let (dir, m) = written("bad");
        let cases: Vec<(Box<dyn Fn(&mut Manifest)>, &str)> = vec![
            (Box::new(|m| m.shards[0].file = "a/b".into()), "contains a path separator"),
            (Box::new(|m| m.shards[0].file = "manifest.json".into()), "is the manifest itself"),
            (Box::new(|m| m.shards[0].file = "x\0y".into()), "control character"),
            (Box::new(|m| m.shards[0].sha256 = "AB".into()), "is not 64 lower-case hex digits"),
            (Box::new(|m| m.tokenizer.as_mut().unwrap().file = m.shards[0].file.clone()), "is also a shard"),
            (Box::new(|m| m.tensors[1].name = "a.weight".into()), "tensor a.weight is listed twice"),
            (Box::new(|m| m.tensors[0].shard = 7), "names shard 7 of 1"),
            (Box::new(|m| m.tensors[0].offset = u64::MAX), "do not fit inside"),
            (Box::new(|m| m.tensors[0].offset = 0), "do not fit inside"),
            (Box::new(|m| m.tensors[1].offset -= 1), "tensors a.weight and b.weight overlap"),
            (Box::new(|m| m.tensors[0].bytes += 4), "takes 24"),
            (Box::new(|m| m.tensors[1].dtype = "F32".into()), "dtype F32 does not store q8"),
            (Box::new(|m| m.tensors[0].shape = vec![1 << 40, 1 << 40]), "is too large"),
            (Box::new(|m| m.tensors[0].shape = vec![1; 9]), "9 dimensions"),
        ];
        for (edit, want) in cases {
            let mut bad = m.clone();
            edit(&mut bad);
            let e = parse_err(&bad);
            assert!(e.starts_with("m.json: ") && e.contains(want), "{want}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writer_refuses_a_non_empty_target_unless_replacing() {
        let (dir, _) = written("replace");
        let e = ModelWriter::new(&dir, 1, false).err().unwrap().to_string();
        assert!(e.contains("not empty; pass --force"), "{e}");
        // a writer dropped before finishing leaves the target as it was and no temporary folder
        let w = ModelWriter::new(&dir, 1, true).unwrap();
        let tmp = w.dir.clone();
        assert!(tmp.is_dir());
        drop(w);
        assert!(!tmp.exists());
        verify_folder(&dir, &Manifest::read(&dir).unwrap()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
