//! Upstream checkpoints: the `torch.save` zip of one `consolidated.RR-of-NN.model.pth` ([`PthFile`]) and
//! the folder of all model-parallel ranks merged back into whole tensors ([`UpstreamCheckpoint`]).
//! Mirrors LLaMA2-Accessory `accessory/util/tensor_parallel.py` (`load_tensor_parallel_model_state_dict`)
//! and the split rules of fairscale's Column/RowParallelLinear and ParallelEmbedding.
//!
//! Reads are streaming: opening parses the zip directory and `data.pkl` only; each tensor read seeks
//! into its stored (uncompressed) `data/<key>` entry and reads only the bytes that tensor spans.
//!
//! Nothing is allocated beyond the bytes that back it: every entry must lie inside the file (a
//! directory may claim any size), `data.pkl` is read up to [`MAX_PICKLE_BYTES`], and a tensor view
//! may not be larger than the file. Every storage entry's CRC-32 is checked when it is read.

use super::pickle::{self, DType};
use crate::{Error, Result};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One tensor of a `.pth` file, as its pickle describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// In elements.
    pub strides: Vec<usize>,
    /// Entry name under `data/` in the archive.
    pub storage_key: String,
    /// In elements.
    pub storage_offset: usize,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Elements from the first to the last one the view touches (0 for an empty tensor).
    fn extent(&self) -> Option<usize> {
        if self.numel() == 0 {
            return Some(0);
        }
        self.shape.iter().zip(&self.strides).try_fold(1usize, |acc, (&n, &s)| acc.checked_add((n - 1).checked_mul(s)?))
    }

    fn is_contiguous(&self) -> bool {
        let mut want = 1;
        for (&n, &s) in self.shape.iter().zip(&self.strides).rev() {
            if n != 1 && s != want {
                return false;
            }
            want *= n;
        }
        true
    }
}

/// Largest `data.pkl` read (a state dict of 10,000 tensors pickles to about 2 MB).
pub const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// A checkpoint archive being opened.
type Zip = zip::ZipArchive<BufReader<File>>;

/// Where a stored entry's bytes lie in the file, and their CRC-32 from the zip directory.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    len: u64,
    crc32: u32,
}

/// Sizes of the zip records read by [`check_central_directory`] (APPNOTE 4.3.14–4.3.16).
const EOCD_LEN: u64 = 22;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_LEN: u64 = 56;
const CENTRAL_HEADER_LEN: u64 = 46;

fn le(b: &[u8], at: usize, n: usize) -> u64 {
    b[at..at + n].iter().rev().fold(0, |v, &x| (v << 8) | x as u64)
}

/// Checks the end records of a zip against the file the way PyTorch's reader does (miniz
/// `mz_zip_reader_read_central_dir`, under `torch.load`): the central directory (its zip64 size and
/// offset where a zip64 locator precedes the end record, as `torch.save` always writes) must lie
/// inside the file, before the end record, and be large enough for the entries it counts. The
/// `zip` crate trusts those fields less strictly, so a file PyTorch refuses would load here.
fn check_central_directory(f: &mut File, file_len: u64) -> std::result::Result<(), String> {
    let read_at = |f: &mut File, at: u64, buf: &mut [u8]| f.seek(SeekFrom::Start(at)).and_then(|_| f.read_exact(buf)).map_err(|e| format!("reading byte {at}: {e}"));
    if file_len < EOCD_LEN {
        return Err(format!("{file_len} bytes, shorter than a zip end record"));
    }
    // The end record is in the last 22 + 65535 (comment) bytes; the last signature wins.
    let tail_len = file_len.min(EOCD_LEN + 0xFFFF);
    let mut tail = vec![0u8; tail_len as usize];
    read_at(f, file_len - tail_len, &mut tail)?;
    let at = (0..=tail.len() - EOCD_LEN as usize).rev().find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06]).ok_or("no end of central directory record")?;
    let eocd_ofs = file_len - tail_len + at as u64;
    let e = &tail[at..at + EOCD_LEN as usize];
    let (mut entries, mut on_disk, mut cdir_size, mut cdir_ofs) = (le(e, 10, 2), le(e, 8, 2), le(e, 12, 4), le(e, 16, 4));
    let mut zip64_records = 0;
    if eocd_ofs >= ZIP64_LOCATOR_LEN + ZIP64_EOCD_LEN {
        let mut loc = [0u8; ZIP64_LOCATOR_LEN as usize];
        read_at(f, eocd_ofs - ZIP64_LOCATOR_LEN, &mut loc)?;
        if loc[..4] == [0x50, 0x4b, 0x06, 0x07] {
            if le(&loc, 16, 4) != 1 {
                return Err(format!("the zip64 locator counts {} disks; only single-file archives are read", le(&loc, 16, 4)));
            }
            // The zip64 end record right before the locator, else where the locator says.
            let mut rec = [0u8; ZIP64_EOCD_LEN as usize];
            read_at(f, eocd_ofs - ZIP64_LOCATOR_LEN - ZIP64_EOCD_LEN, &mut rec)?;
            if rec[..4] != [0x50, 0x4b, 0x06, 0x06] {
                let ofs = le(&loc, 8, 8);
                if ofs > file_len - ZIP64_EOCD_LEN {
                    return Err(format!("the zip64 end record offset {ofs} is past the end of the {file_len}-byte file"));
                }
                read_at(f, ofs, &mut rec)?;
                if rec[..4] != [0x50, 0x4b, 0x06, 0x06] {
                    return Err(format!("no zip64 end record at offset {ofs}"));
                }
            }
            if le(&rec, 4, 8) < ZIP64_EOCD_LEN - 12 {
                return Err(format!("the zip64 end record says it is {} bytes long", le(&rec, 4, 8)));
            }
            (on_disk, entries, cdir_size, cdir_ofs) = (le(&rec, 24, 8), le(&rec, 32, 8), le(&rec, 40, 8), le(&rec, 48, 8));
            zip64_records = ZIP64_LOCATOR_LEN + ZIP64_EOCD_LEN;
        }
    }
    let cdir_end = cdir_ofs.checked_add(cdir_size);
    if cdir_end.is_none_or(|end| end > file_len) {
        return Err(format!("the central directory of {cdir_size} bytes at offset {cdir_ofs} reaches past the end of the {file_len}-byte file (PyTorch's reader refuses it)"));
    }
    if cdir_end.is_some_and(|end| end + zip64_records > eocd_ofs) {
        return Err(format!("the central directory of {cdir_size} bytes at offset {cdir_ofs} overlaps the end records at offset {}", eocd_ofs - zip64_records));
    }
    if entries != on_disk || entries.checked_mul(CENTRAL_HEADER_LEN).is_none_or(|n| cdir_size < n) {
        return Err(format!("the central directory of {cdir_size} bytes cannot hold the {entries} entries it counts ({on_disk} on this disk)"));
    }
    Ok(())
}

/// One `torch.save` zip archive, opened for tensor-by-tensor reading.
#[derive(Debug)]
pub struct PthFile {
    path: PathBuf,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    /// `data/<key>` → its bytes in the file.
    storages: HashMap<String, Span>,
    /// Archive root (`<root>/data/<key>` names the entries in messages).
    root: String,
    /// Storage keys whose CRC-32 has been checked.
    crc_checked: RefCell<HashSet<String>>,
}

impl PthFile {
    /// Parses the archive directory and `data.pkl`, and checks every tensor lies inside its storage.
    pub fn open(path: impl AsRef<Path>) -> Result<PthFile> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let (mut file, file_len) = super::files::open_regular(&path)?;
        check_central_directory(&mut file, file_len).map_err(|e| Error::format(&shown, format!("not a torch.save zip archive: {e}")))?;
        let mut zip = zip::ZipArchive::new(BufReader::new(file))
            .map_err(|e| Error::format(&shown, format!("not a torch.save zip archive: {e}")))?;
        let root = archive_root(&zip, &shown)?;
        if let Some(order) = read_small_entry(&mut zip, &format!("{root}byteorder"), &shown)? {
            if order != b"little" {
                return Err(Error::format(
                    &shown,
                    format!("byteorder {:?}: only little-endian checkpoints are read", String::from_utf8_lossy(&order)),
                ));
            }
        }
        let pkl_name = format!("{root}data.pkl");
        let pkl = read_small_entry(&mut zip, &pkl_name, &shown)?.unwrap_or_default();
        let pickled = pickle::read_state_dict(&pkl, &format!("{shown} ({pkl_name})"))?;

        let mut storages = HashMap::new();
        let mut tensors = Vec::with_capacity(pickled.len());
        for (name, t) in pickled {
            let at = |msg: String| Error::format(&shown, format!("tensor {name}: {msg}"));
            let key = t.storage.key.clone();
            if !storages.contains_key(&key) {
                storages.insert(key.clone(), storage_span(&mut zip, &format!("{root}data/{key}"), file_len, &at)?);
            }
            tensors.push(checked_tensor(name.clone(), t, storages[&key], file_len, &at)?);
        }
        let index = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(PthFile { path, tensors, index, storages, root, crc_checked: RefCell::default() })
    }
}

/// The archive root: the folder of the one `<root>/data.pkl` entry (upstream names it after the
/// file, without `.pth`).
fn archive_root(zip: &Zip, shown: &str) -> Result<String> {
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::format(shown, e))?;
    let pkls: Vec<&String> = names.iter().filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1).collect();
    match pkls.as_slice() {
        [one] => Ok(one.trim_end_matches("data.pkl").to_string()),
        [] => Err(Error::format(shown, "no <root>/data.pkl entry (not a torch.save zip checkpoint)")),
        many => Err(Error::format(shown, format!("several data.pkl entries: {many:?}"))),
    }
}

/// A small entry (the pickle, the byte order) read whole, at most [`MAX_PICKLE_BYTES`]; None if absent.
fn read_small_entry(zip: &mut Zip, name: &str, shown: &str) -> Result<Option<Vec<u8>>> {
    let Some(i) = zip.index_for_name(name) else { return Ok(None) };
    let mut v = Vec::new();
    let mut f = zip.by_index(i).map_err(|e| Error::format(shown, format!("{name}: {e}")))?;
    if f.size() > MAX_PICKLE_BYTES {
        let msg = format!("{name}: {} bytes (the limit is {MAX_PICKLE_BYTES})", f.size());
        return Err(Error::format(shown, msg));
    }
    // The zip reader checks the CRC-32 at the end; `take` bounds a lying size field.
    (&mut f).take(MAX_PICKLE_BYTES + 1).read_to_end(&mut v).map_err(|e| Error::format(shown, format!("{name}: {e}")))?;
    if v.len() as u64 > MAX_PICKLE_BYTES {
        return Err(Error::format(shown, format!("{name}: more than {MAX_PICKLE_BYTES} bytes")));
    }
    Ok(Some(v))
}

/// Where a storage entry's bytes lie in the file: stored (not compressed), inside the file.
fn storage_span(zip: &mut Zip, entry: &str, file_len: u64, at: &dyn Fn(String) -> Error) -> Result<Span> {
    let i = zip.index_for_name(entry).ok_or_else(|| at(format!("storage entry {entry} is missing")))?;
    let f = zip.by_index_raw(i).map_err(|e| at(format!("storage entry {entry}: {e}")))?;
    if f.compression() != zip::CompressionMethod::Stored {
        return Err(at(format!("storage entry {entry} is compressed ({:?}); torch.save stores entries", f.compression())));
    }
    let start = f.data_start().ok_or_else(|| at(format!("storage entry {entry}: no data offset")))?;
    let len = f.size();
    if start.checked_add(len).is_none_or(|end| end > file_len || f.compressed_size() != len) {
        return Err(at(format!("storage entry {entry} claims {len} bytes at offset {start}, past the end of the {file_len}-byte file")));
    }
    Ok(Span { start, len, crc32: f.crc32() })
}

/// A pickled tensor whose storage entry holds what the pickle says and whose view lies inside it
/// (an expanded, stride-0 view may repeat its storage, but not beyond the file's size).
fn checked_tensor(name: String, t: pickle::PickledTensor, span: Span, file_len: u64, at: &dyn Fn(String) -> Error) -> Result<TensorInfo> {
    let key = &t.storage.key;
    let dtype = t
        .storage
        .dtype
        .ok_or_else(|| at(format!("unsupported dtype torch.{} (only BFloat16, Half and Float storages are read)", t.storage.class)))?;
    let want = (t.storage.numel as u64).checked_mul(dtype.size() as u64);
    if want != Some(span.len) {
        return Err(at(format!(
            "storage data/{key} holds {} bytes, but the pickle says {} {} elements (truncated or corrupt file)",
            span.len,
            t.storage.numel,
            dtype.name()
        )));
    }
    let info = TensorInfo { name, dtype, shape: t.shape, strides: t.strides, storage_key: key.clone(), storage_offset: t.storage_offset };
    let numel = info.shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n));
    let end = numel.and(info.extent()).and_then(|e| e.checked_add(info.storage_offset));
    if end.is_none_or(|end| numel != Some(0) && end > t.storage.numel) {
        return Err(at(format!(
            "shape {:?} strides {:?} at offset {} reaches past its storage data/{key} of {} elements",
            info.shape, info.strides, info.storage_offset, t.storage.numel
        )));
    }
    let view_bytes = numel.and_then(|n| n.checked_mul(dtype.size())).map(|b| b as u64);
    if view_bytes.is_none_or(|b| b > file_len) {
        return Err(at(format!("shape {:?} of {} is larger than the {file_len}-byte file", info.shape, dtype.name())));
    }
    Ok(info)
}

impl PthFile {

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.get(name).ok_or_else(|| Error::format(self.path.display(), format!("no tensor {name}")))
    }

    /// One tensor's values, contiguous row-major, in its stored dtype (little-endian bytes). Reads only
    /// the bytes from its first to its last element; strided views are gathered.
    pub fn read_raw(&self, name: &str) -> Result<Vec<u8>> {
        let t = self.info(name)?;
        let es = t.dtype.size();
        // Bounds were checked at open: the view lies inside its storage entry.
        let extent = t.extent().unwrap_or(0);
        if extent == 0 {
            return Ok(Vec::new());
        }
        let span = self.storages[&t.storage_key];
        let start = span.start + (t.storage_offset * es) as u64;
        let mut bytes = vec![0u8; extent * es];
        let mut f = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        f.seek(SeekFrom::Start(start)).and_then(|_| f.read_exact(&mut bytes)).map_err(|e| {
            let msg = format!("tensor {name}: reading storage data/{}: {e}", t.storage_key);
            Error::format(self.path.display(), msg)
        })?;
        if !self.crc_checked.borrow().contains(&t.storage_key) {
            // The usual view spans its whole storage: check what was read; otherwise stream the entry.
            let crc = if start == span.start && bytes.len() as u64 == span.len {
                crc32fast::hash(&bytes)
            } else {
                self.entry_crc32(&mut f, span).map_err(|e| Error::io(&self.path, e))?
            };
            if crc != span.crc32 {
                let msg = format!(
                    "zip member {}data/{}: CRC-32 {crc:08x}, the directory says {:08x} (corrupt file)",
                    self.root, t.storage_key, span.crc32
                );
                return Err(Error::format(self.path.display(), msg));
            }
            self.crc_checked.borrow_mut().insert(t.storage_key.clone());
        }
        if t.is_contiguous() {
            return Ok(bytes);
        }
        Ok(gather(&bytes, es, &t.shape, &t.strides))
    }

    /// CRC-32 of a stored entry, streamed in 1 MiB pieces.
    fn entry_crc32(&self, f: &mut File, span: Span) -> std::io::Result<u32> {
        f.seek(SeekFrom::Start(span.start))?;
        let mut h = crc32fast::Hasher::new();
        let mut buf = vec![0u8; (1 << 20).min(span.len as usize)];
        let mut left = span.len;
        while left > 0 {
            let n = buf.len().min(left as usize);
            f.read_exact(&mut buf[..n])?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(h.finalize())
    }

    /// One tensor's values as f32 (bf16 and f16 widen exactly), contiguous row-major.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.info(name)?;
        Ok(to_f32(t.dtype, &self.read_raw(name)?))
    }
}

/// Copies the strided view `shape`/`strides` (in elements of `es` bytes) of `src` into a contiguous buffer.
fn gather(src: &[u8], es: usize, shape: &[usize], strides: &[usize]) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n * es);
    if n == 0 {
        return out;
    }
    let mut idx = vec![0usize; shape.len()];
    let mut at = 0usize; // element offset in `src` of the multi-index `idx`
    loop {
        out.extend_from_slice(&src[at * es..(at + 1) * es]);
        // Odometer step over the dims, last fastest.
        let mut d = shape.len();
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            at += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            at -= strides[d] * shape[d];
            idx[d] = 0;
        }
    }
}

/// Little-endian `dtype` bytes → f32 (exact for bf16 and f16).
/// Widens stored values to little-endian f32 bytes (`out` holds 4 bytes per value).
pub fn widen_into(dtype: DType, bytes: &[u8], out: &mut [u8]) {
    let es = dtype.size();
    for (o, c) in out.chunks_exact_mut(4).zip(bytes.chunks_exact(es)) {
        let v = match dtype {
            DType::BF16 => f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16),
            DType::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
            DType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        };
        o.copy_from_slice(&v.to_le_bytes());
    }
}

pub fn to_f32(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DType::BF16 => {
            bytes.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect()
        }
        DType::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        DType::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
    }
}

/// How model parallelism splits a tensor across the `consolidated.RR-of-NN` ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Whole in every rank (norms, start/end_img, visual_proj, every vision tower).
    Replicated,
    /// Rank r holds the r-th contiguous chunk along this dim.
    Concat(usize),
}

/// The LLaMA2-Accessory rule for a key, with or without the `llma.` prefix: ColumnParallelLinear weights
/// (wq, wk, wv, w1, w3, output) split dim 0; RowParallelLinear (wo, w2) and ParallelEmbedding
/// (tok_embeddings) dim 1; everything else is replicated. Only the LLM's exact key patterns match, so
/// e.g. `dinov2_vitg14.blocks.0.mlp.w3.weight` stays replicated.
pub fn split_rule(name: &str) -> Split {
    let key = name.strip_prefix("llma.").unwrap_or(name);
    match key {
        "output.weight" => return Split::Concat(0),
        "tok_embeddings.weight" => return Split::Concat(1),
        _ => {}
    }
    let Some((layer, rest)) = key.strip_prefix("layers.").and_then(|k| k.split_once('.')) else {
        return Split::Replicated;
    };
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return Split::Replicated;
    }
    match rest {
        "attention.wq.weight"
        | "attention.wk.weight"
        | "attention.wv.weight"
        | "feed_forward.w1.weight"
        | "feed_forward.w3.weight" => Split::Concat(0),
        "attention.wo.weight" | "feed_forward.w2.weight" => Split::Concat(1),
        _ => Split::Replicated,
    }
}

/// A merged tensor of an [`UpstreamCheckpoint`].
#[derive(Debug, Clone, PartialEq)]
pub struct MergedInfo {
    pub name: String,
    pub dtype: DType,
    /// The whole tensor's shape, after merging the ranks.
    pub shape: Vec<usize>,
    pub split: Split,
}

/// A folder of `consolidated.RR-of-NN.model.pth`, read as whole (merged) tensors one at a time.
#[derive(Debug)]
pub struct UpstreamCheckpoint {
    dir: PathBuf,
    /// Indexed by rank.
    shards: Vec<PthFile>,
    tensors: Vec<MergedInfo>,
    index: HashMap<String, usize>,
}

/// `consolidated.RR-of-NN.model.pth` → (RR, NN); None for other names.
fn shard_name(file: &str) -> Option<(usize, usize)> {
    let (rr, nn) = file.strip_prefix("consolidated.")?.strip_suffix(".model.pth")?.split_once("-of-")?;
    let two = |s: &str| (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten();
    Some((two(rr)?, two(nn)?))
}

/// The checkpoint's `consolidated.RR-of-NN.model.pth` files, by rank: all NN of them, no more.
fn rank_files(dir: &Path) -> Result<Vec<String>> {
    let shown = dir.display().to_string();
    let mut found: Vec<(usize, usize, String)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let file = e.file_name().to_string_lossy().into_owned();
        if file.starts_with("consolidated.") && file.ends_with(".model.pth") {
            let (r, n) = shard_name(&file).ok_or_else(|| {
                Error::format(&shown, format!("{file}: expected consolidated.RR-of-NN.model.pth"))
            })?;
            found.push((r, n, file));
        }
    }
    found.sort();
    let Some(&(_, mp, _)) = found.first() else {
        return Err(Error::format(&shown, "no consolidated.RR-of-NN.model.pth checkpoint files"));
    };
    if let Some((_, _, odd)) = found.iter().find(|(_, n, _)| *n != mp) {
        let all: Vec<&str> = found.iter().map(|(_, _, f)| f.as_str()).collect();
        return Err(Error::format(&shown, format!("{odd} disagrees on the model-parallel size: {all:?}")));
    }
    let missing: Vec<String> = (0..mp)
        .filter(|r| !found.iter().any(|(fr, _, _)| fr == r))
        .map(|r| format!("consolidated.{r:02}-of-{mp:02}.model.pth"))
        .collect();
    if mp == 0 || !missing.is_empty() {
        return Err(Error::format(&shown, format!("model-parallel size {mp}: missing {missing:?}")));
    }
    if let Some((_, _, extra)) = found.iter().find(|(r, _, _)| *r >= mp) {
        return Err(Error::format(&shown, format!("{extra}: rank beyond the model-parallel size {mp}")));
    }
    Ok(found.into_iter().map(|(_, _, f)| f).collect())
}

/// Tensor `t` of rank 0 merged with the same tensor of the `others` ranks (its shape concatenated
/// along the split dim), which must agree with it.
fn merged(t: &TensorInfo, first: &PthFile, others: &[PthFile]) -> Result<MergedInfo> {
    let split = split_rule(&t.name);
    let mut shape = t.shape.clone();
    if let Split::Concat(d) = split {
        if d >= shape.len() {
            let msg = format!("tensor {}: shape {shape:?} has no dim {d} to merge ranks along", t.name);
            return Err(Error::format(first.path.display(), msg));
        }
    }
    for s in others {
        let o = s.info(&t.name)?;
        let agrees = o.dtype == t.dtype
            && match split {
                Split::Replicated => o.shape == t.shape,
                Split::Concat(d) => {
                    o.shape.len() == t.shape.len()
                        && (0..t.shape.len()).all(|i| i == d || o.shape[i] == t.shape[i])
                }
            };
        if !agrees {
            let msg = format!(
                "tensor {} is {} {:?}, rank 0 has {} {:?} ({split:?})",
                t.name,
                o.dtype.name(),
                o.shape,
                t.dtype.name(),
                t.shape
            );
            return Err(Error::format(s.path.display(), msg));
        }
        if let Split::Concat(d) = split {
            shape[d] += o.shape[d];
        }
    }
    Ok(MergedInfo { name: t.name.clone(), dtype: t.dtype, shape, split })
}

impl UpstreamCheckpoint {
    /// Finds every rank's file, checks the set is complete and consistent, and merges the tensor lists.
    pub fn open(dir: impl AsRef<Path>) -> Result<UpstreamCheckpoint> {
        let dir = dir.as_ref().to_path_buf();
        let found = rank_files(&dir)?;
        let shards = found.iter().map(|f| PthFile::open(dir.join(f))).collect::<Result<Vec<_>>>()?;
        // Every rank holds the same keys; split tensors agree off the split dim, replicated ones entirely.
        let first = &shards[0];
        for s in &shards[1..] {
            let extra: Vec<&str> =
                s.tensors.iter().filter(|t| first.get(&t.name).is_none()).map(|t| t.name.as_str()).collect();
            let missing: Vec<&str> =
                first.tensors.iter().filter(|t| s.get(&t.name).is_none()).map(|t| t.name.as_str()).collect();
            if !extra.is_empty() || !missing.is_empty() {
                return Err(Error::format(
                    s.path.display(),
                    format!("keys differ from rank 0: missing {missing:?}, extra {extra:?}"),
                ));
            }
        }
        let tensors = first.tensors.iter().map(|t| merged(t, first, &shards[1..])).collect::<Result<Vec<_>>>()?;
        let index = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(UpstreamCheckpoint { dir, shards, tensors, index })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model-parallel size NN.
    pub fn mp_size(&self) -> usize {
        self.shards.len()
    }

    /// All tensors (merged shapes) in rank 0's file order.
    pub fn tensors(&self) -> &[MergedInfo] {
        &self.tensors
    }

    /// Tensor names in rank 0's file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    pub fn get(&self, name: &str) -> Option<&MergedInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    fn info(&self, name: &str) -> Result<&MergedInfo> {
        self.get(name).ok_or_else(|| Error::Weights(format!("{}: no tensor {name}", self.dir.display())))
    }

    /// The merged shape.
    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        Ok(&self.info(name)?.shape)
    }

    /// The stored dtype.
    pub fn dtype(&self, name: &str) -> Result<DType> {
        Ok(self.info(name)?.dtype)
    }

    /// The whole tensor in its stored dtype (contiguous row-major, little-endian), merged from the ranks.
    /// Peak memory: the tensor plus one rank's chunk.
    pub fn read_raw(&self, name: &str) -> Result<(DType, Vec<usize>, Vec<u8>)> {
        let t = self.info(name)?;
        let d = match t.split {
            Split::Concat(d) if self.shards.len() > 1 => d,
            _ => return Ok((t.dtype, t.shape.clone(), self.shards[0].read_raw(name)?)),
        };
        // (outer, shape[d], inner) view: rank r's chunk (outer, n_r, inner) lands at [:, o_r..o_r + n_r, :].
        let es = t.dtype.size();
        let outer: usize = t.shape[..d].iter().product();
        let row = t.shape[d..].iter().product::<usize>() * es; // bytes per outer index, merged
        let mut out = vec![0u8; outer * row];
        let mut at = 0; // byte offset of this rank's chunk inside one merged row
        for s in &self.shards {
            let part = s.read_raw(name)?;
            let chunk = part.len() / outer.max(1); // bytes per outer index in this rank
            for o in 0..outer {
                out[o * row + at..o * row + at + chunk].copy_from_slice(&part[o * chunk..(o + 1) * chunk]);
            }
            at += chunk;
        }
        Ok((t.dtype, t.shape.clone(), out))
    }

    /// The whole tensor as little-endian f32 bytes, merged from the ranks. Each rank's chunk is
    /// widened as it is placed, so the host holds the output and one rank's raw chunk — never two
    /// copies of the tensor.
    pub fn read_f32_bytes(&self, name: &str) -> Result<(Vec<usize>, Vec<u8>)> {
        let t = self.info(name)?;
        let es = t.dtype.size();
        let n: usize = t.shape.iter().product();
        let mut out = vec![0u8; n * 4];
        match t.split {
            Split::Concat(d) if self.shards.len() > 1 => {
                let outer: usize = t.shape[..d].iter().product();
                let row = t.shape[d..].iter().product::<usize>() * 4; // f32 bytes per outer index, merged
                let mut at = 0;
                for s in &self.shards {
                    let part = s.read_raw(name)?;
                    let chunk = part.len() / outer.max(1); // raw bytes per outer index in this rank
                    let wide = chunk / es * 4;
                    for o in 0..outer {
                        widen_into(t.dtype, &part[o * chunk..(o + 1) * chunk], &mut out[o * row + at..o * row + at + wide]);
                    }
                    at += wide;
                }
            }
            _ => widen_into(t.dtype, &self.shards[0].read_raw(name)?, &mut out),
        }
        Ok((t.shape.clone(), out))
    }

    /// The whole tensor as f32 (bf16/f16 widen exactly), with its merged shape.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let (dtype, shape, raw) = self.read_raw(name)?;
        Ok((shape, to_f32(dtype, &raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::pickle::tests::tensor_pickle;
    use crate::testing::{fixtures_dir, golden_dir};
    use sha2::{Digest, Sha256};
    use std::io::Write;

    fn expected() -> serde_json::Value {
        let p = fixtures_dir().join("pth_expected.json");
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    fn sha256_f32(v: &[f32]) -> String {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        format!("{:x}", Sha256::digest(&bytes))
    }

    fn shape_of(v: &serde_json::Value) -> Vec<usize> {
        v.as_array().unwrap().iter().map(|n| n.as_u64().unwrap() as usize).collect()
    }

    /// An empty scratch folder under the system temp dir.
    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sphinx-io-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A torch.save-like stored zip: `<root>/data.pkl`, `<root>/data/<key>`, `<root>/version`.
    fn write_pth(path: &Path, root: &str, pkl: &[u8], storages: &[(&str, &[u8])]) {
        let mut z = zip::ZipWriter::new(File::create(path).unwrap());
        let opt = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let entries = [("data.pkl".to_string(), pkl), ("version".to_string(), &b"3\n"[..])];
        let data = storages.iter().map(|(k, d)| (format!("data/{k}"), *d));
        for (name, bytes) in entries.into_iter().chain(data) {
            z.start_file(format!("{root}/{name}"), opt).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }

    fn bf16_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect()
    }

    #[test]
    fn golden_checkpoints_match_reference_keys_and_torch_values() {
        let exp = expected();
        for name in ["sphinx-tiny-1k-dev", "sphinx-1k-dev"] {
            let dir = golden_dir(name);
            let ckpt = UpstreamCheckpoint::open(&dir).unwrap();
            assert_eq!(ckpt.mp_size(), 1);
            let keys = crate::testing::reference_json(&dir)["checkpoint"]["keys_in_order"].clone();
            let keys = keys.as_array().unwrap();
            let names: Vec<&str> = ckpt.names().collect();
            let want: Vec<&str> = keys.iter().map(|k| k[0].as_str().unwrap()).collect();
            assert_eq!(names, want, "{name}: key order");
            for k in keys {
                let key = k[0].as_str().unwrap();
                assert_eq!(ckpt.shape(key).unwrap(), shape_of(&k[1]), "{name} {key}");
                assert_eq!(ckpt.dtype(key).unwrap(), DType::BF16, "{name} {key}");
                let (shape, v) = ckpt.read_f32(key).unwrap();
                let e = &exp[name][key];
                assert_eq!(shape, shape_of(&e["shape"]), "{name} {key}");
                assert_eq!(sha256_f32(&v), e["sha256_f32"].as_str().unwrap(), "{name} {key}: values differ from torch");
                let head: Vec<f32> = e["head"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
                assert_eq!(&v[..head.len()], head.as_slice(), "{name} {key}");
            }
        }
    }

    #[test]
    fn views_fixture_reads_strides_offsets_and_dtypes_like_torch() {
        // torch.save(pickle_protocol=4) of a bare OrderedDict with `_metadata` (FRAME, MEMOIZE,
        // STACK_GLOBAL, BUILD, LONG1, BINFLOAT, lists...), a Parameter, shared and offset storages.
        let f = PthFile::open(fixtures_dir().join("views.p4.pth")).unwrap();
        let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["f32_base", "f32_t", "f16", "bf16_slice", "expanded", "param", "scalar", "empty"]);
        let exp = expected();
        for t in f.tensors() {
            let e = &exp["views.p4.pth"][&t.name];
            assert_eq!(t.dtype.name(), e["dtype"].as_str().unwrap(), "{}", t.name);
            assert_eq!(t.shape, shape_of(&e["shape"]), "{}", t.name);
            assert_eq!(t.strides, shape_of(&e["strides"]), "{}", t.name);
            assert_eq!(t.storage_offset as u64, e["storage_offset"].as_u64().unwrap(), "{}", t.name);
            let want: Vec<f32> = e["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            assert_eq!(f.read_f32(&t.name).unwrap(), want, "{}", t.name);
        }
        assert_eq!(f.get("f32_t").unwrap().storage_key, f.get("f32_base").unwrap().storage_key);
    }

    #[test]
    fn mp2_fixture_merges_bit_exact_to_the_single_file() {
        let one = UpstreamCheckpoint::open(golden_dir("sphinx-tiny-1k-dev")).unwrap();
        let two = UpstreamCheckpoint::open(fixtures_dir().join("sphinx-tiny-1k-dev-mp2")).unwrap();
        assert_eq!(two.mp_size(), 2);
        assert_eq!(one.names().collect::<Vec<_>>(), two.names().collect::<Vec<_>>());
        let mut split = 0;
        for t in two.tensors() {
            if let Split::Concat(d) = t.split {
                // Really split: each rank holds half along d.
                assert_eq!(two.shards[0].get(&t.name).unwrap().shape[d] * 2, t.shape[d], "{}", t.name);
                split += 1;
            }
            let (a, b) = (one.read_raw(&t.name).unwrap(), two.read_raw(&t.name).unwrap());
            assert!(a == b, "{}: merged mp2 tensor differs from the single file", t.name);
        }
        assert_eq!(split, 2 * 7 + 2, "7 split weights per layer (2 layers), tok_embeddings, output");
    }

    #[test]
    fn split_rule_matches_only_llm_keys() {
        for (key, want) in [
            ("llma.layers.0.attention.wq.weight", Split::Concat(0)),
            ("layers.21.attention.wk.weight", Split::Concat(0)),
            ("llma.layers.3.attention.wv.weight", Split::Concat(0)),
            ("llma.layers.3.feed_forward.w1.weight", Split::Concat(0)),
            ("llma.layers.3.feed_forward.w3.weight", Split::Concat(0)),
            ("llma.output.weight", Split::Concat(0)),
            ("llma.layers.10.attention.wo.weight", Split::Concat(1)),
            ("llma.layers.10.feed_forward.w2.weight", Split::Concat(1)),
            ("tok_embeddings.weight", Split::Concat(1)),
            ("llma.layers.0.attention_norm.weight", Split::Replicated),
            ("llma.norm.weight", Split::Replicated),
            ("llma.dinov2_vitg14.blocks.0.mlp.w3.weight", Split::Replicated),
            ("llma.dinov2_vitg14.blocks.0.mlp.w12.weight", Split::Replicated),
            ("llma.qformer.qformer.encoder.layer.0.output.dense.weight", Split::Replicated),
            ("llma.clip.visual.transformer.resblocks.0.attn.out_proj.weight", Split::Replicated),
            ("llma.layers.x.attention.wq.weight", Split::Replicated),
            ("llma.layers.0.attention.wq.bias", Split::Replicated),
            ("llma.visual_proj.0.weight", Split::Replicated),
        ] {
            assert_eq!(split_rule(key), want, "{key}");
        }
    }

    #[test]
    fn hostile_pickles_are_refused_and_run_nothing() {
        let dir = scratch("hostile");
        let marker = dir.join("pwned");
        let cmd = format!("touch {}", marker.display());
        let s = |s: &str| [&b"X"[..], &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat();
        let cases: [(&str, Vec<u8>, &str); 4] = [
            ("os", [&b"\x80\x02cos\nsystem\n("[..], &s(&cmd), b"tR."].concat(), "global os.system at byte 2"),
            (
                "eval",
                [&b"\x80\x02cbuiltins\neval\n("[..], &s(&format!("__import__('os').system('{cmd}')")), b"tR."].concat(),
                "global builtins.eval at byte 2",
            ),
            // The same global hidden inside a tensor entry, after a valid start.
            (
                "nested",
                [&b"\x80\x02}(X\x01\x00\x00\x00wcposix\nsystem\n("[..], &s(&cmd), b"tRu."].concat(),
                "global posix.system at byte 10",
            ),
            ("opcode", b"\x80\x02}\xf0.".to_vec(), "opcode 0xf0 at byte 3"),
        ];
        for (name, pkl, want) in cases {
            let path = dir.join(format!("{name}.pth"));
            write_pth(&path, "archive", &pkl, &[]);
            match PthFile::open(&path) {
                Err(Error::UnsafePickle(m)) => {
                    assert!(m.contains(want) && m.contains("archive/data.pkl"), "{name}: {m}")
                }
                other => panic!("{name}: expected UnsafePickle, got {other:?}"),
            }
        }
        assert!(!marker.exists(), "a refused pickle ran a command");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unsupported_dtype_names_the_tensor() {
        let err = PthFile::open(fixtures_dir().join("double.pth")).unwrap_err().to_string();
        assert!(err.contains("tensor w") && err.contains("unsupported dtype torch.DoubleStorage"), "{err}");
    }

    #[test]
    fn hand_made_strided_view_and_storage_checks() {
        let dir = scratch("storage");
        // 12 bf16 values 0..11; view: offset 2, shape [2, 5], strides [1, 2] (a transposed slice).
        let data = bf16_bytes(&(0..12).map(|x| x as f32).collect::<Vec<_>>());
        let ok = dir.join("ok.pth");
        write_pth(
            &ok,
            "any_root_name",
            &tensor_pickle("w", "BFloat16Storage", 12, 2, &[2, 5], &[1, 2]),
            &[("0", &data)],
        );
        let v = PthFile::open(&ok).unwrap().read_f32("w").unwrap();
        assert_eq!(v, [2., 4., 6., 8., 10., 3., 5., 7., 9., 11.]);

        let truncated = dir.join("truncated.pth");
        write_pth(&truncated, "t", &tensor_pickle("w", "BFloat16Storage", 12, 0, &[12], &[1]), &[("0", &data[..20])]);
        let err = PthFile::open(&truncated).unwrap_err().to_string();
        assert!(err.contains("tensor w") && err.contains("holds 20 bytes") && err.contains("12 bfloat16"), "{err}");

        let past = dir.join("past.pth");
        write_pth(&past, "t", &tensor_pickle("w", "BFloat16Storage", 12, 3, &[2, 5], &[1, 2]), &[("0", &data)]);
        let err = PthFile::open(&past).unwrap_err().to_string();
        assert!(err.contains("tensor w") && err.contains("reaches past its storage"), "{err}");

        let missing = dir.join("missing.pth");
        write_pth(&missing, "t", &tensor_pickle("w", "HalfStorage", 12, 0, &[12], &[1]), &[]);
        let err = PthFile::open(&missing).unwrap_err().to_string();
        assert!(err.contains("tensor w") && err.contains("storage entry t/data/0 is missing"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn shard_sets_must_be_complete_and_consistent() {
        let open_err = |files: &[&str]| {
            let dir = scratch(&format!("shards{}", files.len()));
            for f in files {
                File::create(dir.join(f)).unwrap();
            }
            let e = UpstreamCheckpoint::open(&dir).unwrap_err().to_string();
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        let e = open_err(&[]);
        assert!(e.contains("no consolidated.RR-of-NN.model.pth"), "{e}");
        let e = open_err(&["consolidated.00-of-02.model.pth"]);
        assert!(e.contains("missing [\"consolidated.01-of-02.model.pth\"]"), "{e}");
        let e = open_err(&["consolidated.00-of-02.model.pth", "consolidated.01-of-03.model.pth"]);
        assert!(e.contains("consolidated.01-of-03.model.pth disagrees on the model-parallel size"), "{e}");
        let e = open_err(&["consolidated.00-of-01.model.pth", "consolidated.01-of-01.model.pth", "x.json"]);
        assert!(e.contains("consolidated.01-of-01.model.pth: rank beyond"), "{e}");
        let e = open_err(&["consolidated.0-of-1.model.pth"]);
        assert!(e.contains("consolidated.0-of-1.model.pth: expected consolidated.RR-of-NN"), "{e}");

        // Ranks whose key sets or shapes disagree.
        let dir = scratch("keys");
        let data = bf16_bytes(&[0.0; 4]);
        let pth = |rank: usize, name: &str, n: u8| {
            let p = dir.join(format!("consolidated.{rank:02}-of-02.model.pth"));
            write_pth(
                &p,
                "r",
                &tensor_pickle(name, "BFloat16Storage", n as u32, 0, &[n], &[1]),
                &[("0", &data[..2 * n as usize])],
            );
        };
        pth(0, "llma.norm.weight", 4);
        pth(1, "llma.norm.bias", 4);
        let e = UpstreamCheckpoint::open(&dir).unwrap_err().to_string();
        assert!(e.contains("missing [\"llma.norm.weight\"], extra [\"llma.norm.bias\"]"), "{e}");
        pth(1, "llma.norm.weight", 2);
        let e = UpstreamCheckpoint::open(&dir).unwrap_err().to_string();
        assert!(e.contains("tensor llma.norm.weight is bfloat16 [2], rank 0 has bfloat16 [4] (Replicated)"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_storage_fails_its_crc_naming_the_member() {
        let dir = scratch("crc");
        let data = bf16_bytes(&(0..12).map(|x| x as f32).collect::<Vec<_>>());
        let p = dir.join("crc.pth");
        write_pth(&p, "r", &tensor_pickle("w", "BFloat16Storage", 12, 0, &[12], &[1]), &[("0", &data)]);
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.windows(data.len()).position(|w| w == data.as_slice()).unwrap();
        bytes[at + 3] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        let e = PthFile::open(&p).unwrap().read_raw("w").unwrap_err().to_string();
        assert!(e.contains("zip member r/data/0: CRC-32"), "{e}");
        // A partial view streams the whole entry to check it.
        write_pth(&p, "r", &tensor_pickle("w", "BFloat16Storage", 12, 2, &[3], &[1]), &[("0", &data)]);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[at + 23] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        let e = PthFile::open(&p).unwrap().read_raw("w").unwrap_err().to_string();
        assert!(e.contains("zip member r/data/0: CRC-32"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_expanded_view_larger_than_the_file_is_refused() {
        let dir = scratch("expand");
        let p = dir.join("x.pth");
        write_pth(&p, "r", &tensor_pickle("w", "FloatStorage", 1, 0, &[255, 255, 255, 255], &[0, 0, 0, 0]), &[("0", &[0; 4])]);
        let e = PthFile::open(&p).unwrap_err().to_string();
        assert!(e.contains("tensor w: shape [255, 255, 255, 255] of float32 is larger than the"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
