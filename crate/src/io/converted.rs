//! The converted model format (docs/format.md): `manifest.json` + safetensors shards +
//! `tokenizer.json`. Reading is tensor by tensor through a `ShardReader` (files natively, OPFS in
//! the browser); writing streams tensors into size-limited shards with their SHA-256.

use super::quant::{Packed, Quant};
use crate::config::ModelConfig;
use crate::nn::TensorSource;
use crate::{Error, Result};
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

impl Manifest {
    /// Parses and checks a manifest (`origin` names it in errors).
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| Error::format(origin, e))?;
        if m.format != FORMAT || m.format_version != FORMAT_VERSION {
            return Err(Error::format(origin, format!("format {} v{} (this build reads {FORMAT} v{FORMAT_VERSION})", m.format, m.format_version)));
        }
        for t in &m.tensors {
            let Some(shard) = m.shards.get(t.shard) else {
                return Err(Error::format(origin, format!("tensor {} names shard {} of {}", t.name, t.shard, m.shards.len())));
            };
            let (rows, cols) = t.matrix();
            if t.bytes != t.quant.bytes(rows, cols) as u64 || t.offset + t.bytes > shard.bytes {
                return Err(Error::format(origin, format!("tensor {}: {} bytes at {} do not fit {} {:?} in {}", t.name, t.bytes, t.offset, t.quant, t.shape, shard.file)));
            }
        }
        Ok(m)
    }

    pub fn read(dir: &Path) -> Result<Manifest> {
        let p = dir.join("manifest.json");
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        Manifest::parse(&bytes, &p.display().to_string())
    }

    /// Total bytes of all shards.
    pub fn weight_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum()
    }
}

/// Random access to the shard files of a manifest.
pub trait ShardReader {
    fn read_at(&mut self, shard: usize, offset: u64, buf: &mut [u8]) -> Result<()>;
}

/// Shards as files in a folder (native).
pub struct FileShards {
    dir: PathBuf,
    files: Vec<String>,
    open: HashMap<usize, std::fs::File>,
}

impl FileShards {
    pub fn new(dir: &Path, manifest: &Manifest) -> FileShards {
        FileShards { dir: dir.to_path_buf(), files: manifest.shards.iter().map(|s| s.file.clone()).collect(), open: HashMap::new() }
    }
}

impl ShardReader for FileShards {
    fn read_at(&mut self, shard: usize, offset: u64, buf: &mut [u8]) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.dir.join(&self.files[shard]);
        if !self.open.contains_key(&shard) {
            let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            self.open.insert(shard, f);
        }
        let f = self.open.get_mut(&shard).expect("opened above");
        f.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(&path, e))?;
        f.read_exact(buf).map_err(|e| Error::io(&path, e))
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

    /// Opens a folder on disk.
    pub fn open(dir: &Path) -> Result<ConvertedSource> {
        let manifest = Manifest::read(dir)?;
        let reader = FileShards::new(dir, &manifest);
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
}

/// Safetensors dtype name of a stored precision.
pub fn dtype_of(q: Quant) -> &'static str {
    match q {
        Quant::F32 => "F32",
        Quant::F16 => "F16",
        Quant::Q8 | Quant::Q4 => "U8",
    }
}

/// Writes tensors in order into shards of at most `shard_limit` bytes (a larger tensor gets a
/// shard of its own), then the manifest.
pub struct ModelWriter {
    dir: PathBuf,
    shard_limit: u64,
    pending: Vec<(String, Vec<usize>, Packed)>,
    pending_bytes: u64,
    /// (temporary path, entry) of written shards
    shards: Vec<(PathBuf, FileEntry)>,
    tensors: Vec<TensorEntry>,
}

impl ModelWriter {
    pub fn new(dir: &Path, shard_limit: u64) -> Result<ModelWriter> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(ModelWriter { dir: dir.to_path_buf(), shard_limit: shard_limit.max(1), pending: Vec::new(), pending_bytes: 0, shards: Vec::new(), tensors: Vec::new() })
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

    /// Writes the pending tensors as one safetensors shard.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let index = self.shards.len();
        let mut header = serde_json::Map::new();
        let mut meta = serde_json::Map::new();
        let mut at = 0u64;
        for (name, shape, p) in &self.pending {
            let len = p.bytes.len() as u64;
            let st_shape: Vec<usize> = if p.quant.is_block() { vec![p.bytes.len()] } else { shape.clone() };
            header.insert(name.clone(), serde_json::json!({ "dtype": dtype_of(p.quant), "shape": st_shape, "data_offsets": [at, at + len] }));
            if p.quant.is_block() {
                meta.insert(name.clone(), serde_json::Value::String(format!("{}:{},{}", p.quant, p.rows, p.cols)));
            }
            at += len;
        }
        meta.insert("format".into(), serde_json::Value::String(FORMAT.into()));
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
        let mut hjson = serde_json::to_vec(&serde_json::Value::Object(header)).map_err(|e| Error::Msg(e.to_string()))?;
        while hjson.len() % 8 != 0 {
            hjson.push(b' ');
        }
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
        let entry = FileEntry { file: String::new(), bytes: base + at, sha256: hex(&sha.finalize()) };
        self.shards.push((path, entry));
        self.pending_bytes = 0;
        Ok(())
    }

    /// Names the shards `model-0000i-of-0000N.safetensors`, writes `tokenizer.json` and `manifest.json`.
    pub fn finish(mut self, model: &ModelConfig, quantization: QuantChoice, tokenizer_json: Option<&[u8]>) -> Result<Manifest> {
        self.flush()?;
        let n = self.shards.len();
        let mut shards = Vec::with_capacity(n);
        for (i, (tmp, mut entry)) in self.shards.into_iter().enumerate() {
            entry.file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
            let dst = self.dir.join(&entry.file);
            std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
            shards.push(entry);
        }
        let tokenizer = match tokenizer_json {
            Some(bytes) => {
                let p = self.dir.join("tokenizer.json");
                std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
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
            tensors: self.tensors,
        };
        let p = self.dir.join("manifest.json");
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Msg(e.to_string()))?;
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
        Ok(manifest)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    Ok(hex(&sha.finalize()))
}

/// Checks every shard's size and SHA-256 against the manifest.
pub fn verify_folder(dir: &Path, manifest: &Manifest) -> Result<()> {
    for s in manifest.shards.iter().chain(manifest.tokenizer.iter()) {
        let p = dir.join(&s.file);
        let len = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len();
        if len != s.bytes {
            return Err(Error::format(p.display(), format!("{len} bytes, manifest says {}", s.bytes)));
        }
        let h = sha256_file(&p)?;
        if h != s.sha256 {
            return Err(Error::format(p.display(), format!("SHA-256 {h}, manifest says {}", s.sha256)));
        }
    }
    Ok(())
}
