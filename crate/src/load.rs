//! Opening a model folder: a converted one (`manifest.json`, docs/format.md) or an upstream checkpoint (`consolidated.*.pth` + `config.json`/`params.json`
//! + `meta.json` [+ `vision.json`]) becomes a `ModelConfig` and a tensor-by-tensor `TensorSource`;
//! then the model is built on a device.

use crate::config::{read_llama_type, ModelArgs, ModelConfig, VisionConfig};
use crate::io::converted::{matrix_of, ConvertedSource};
use crate::io::quant::{Packed, Quant};
use crate::io::UpstreamCheckpoint;
use crate::models::sphinx::Sphinx;
use crate::io::TensorSource;
use crate::nn::{PrecisionChoice, Weights};
use crate::tensor::Device;
use crate::{Error, Result};
use std::path::Path;

/// The context-length limits are the decoder's (re-exported for the callers that open models).
pub use crate::models::llama::{check_max_seq_len, DEFAULT_MAX_SEQ_LEN, MAX_SEQ_LEN};

impl TensorSource for UpstreamCheckpoint {
    fn describe(&self) -> String {
        format!("{}", self.dir().display())
    }
    fn names(&self) -> Vec<String> {
        UpstreamCheckpoint::names(self).map(str::to_string).collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        UpstreamCheckpoint::shape(self, name).ok().map(<[usize]>::to_vec)
    }
    fn read_f32(&mut self, name: &str) -> Result<Vec<f32>> {
        Ok(UpstreamCheckpoint::read_f32(self, name)?.1)
    }
    /// Widened straight into the bytes the GPU upload takes (one copy of the tensor on the host).
    fn read_packed(&mut self, name: &str) -> Result<Packed> {
        let (shape, bytes) = self.read_f32_bytes(name)?;
        let (rows, cols) = matrix_of(&shape);
        Packed::new(Quant::F32, rows, cols, bytes)
    }
}

/// Reads the configuration of an upstream folder: llama_type, LLM sizes (vocabulary from the
/// embedding's shape), vision sizes (`vision.json` or the variant's presets).
pub fn upstream_config(dir: &Path, ckpt: &UpstreamCheckpoint) -> Result<ModelConfig> {
    let llama_type = read_llama_type(dir)?;
    let (args, source) = ModelArgs::read(dir)?;
    let emb = "llma.tok_embeddings.weight";
    let shape = ckpt
        .shape(emb)
        .map_err(|_| Error::Weights(format!("missing tensor {emb} in {}", dir.display())))?;
    if shape.len() != 2 || shape[1] != args.dim {
        return Err(Error::Weights(format!("tensor {emb}: shape {shape:?}, config dim {}", args.dim)));
    }
    let llm = args.resolve(shape[0], &source)?;
    let vision = VisionConfig::read(dir, llama_type)?;
    let config = ModelConfig { llama_type, llm, vision };
    config.validate().map_err(|e| Error::format(dir.display(), e))?;
    Ok(config)
}

/// A model folder opened for loading.
pub struct ModelDir {
    pub config: ModelConfig,
    pub source: Box<dyn TensorSource>,
}

/// Opens a model folder: converted (`manifest.json`) or upstream (`consolidated.*.pth`).
pub fn open(dir: &Path) -> Result<ModelDir> {
    if !dir.is_dir() {
        return Err(Error::Config(format!("{}: not a folder", dir.display())));
    }
    if dir.join("manifest.json").is_file() {
        let src = ConvertedSource::open(dir)?;
        return Ok(ModelDir { config: src.manifest.model.clone(), source: Box::new(src) });
    }
    let ckpt = UpstreamCheckpoint::open(dir)?;
    let config = upstream_config(dir, &ckpt)?;
    Ok(ModelDir { config, source: Box::new(ckpt) })
}

/// How to build a model.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Longest sequence (positions) a chat may use.
    pub max_seq_len: usize,
    pub precision: PrecisionChoice,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { max_seq_len: DEFAULT_MAX_SEQ_LEN, precision: PrecisionChoice::F32 }
    }
}

/// Builds the model on `device` from any tensor source (tensor by tensor), in f32.
pub fn load_from_source(config: &ModelConfig, source: Box<dyn TensorSource>, device: &Device, max_seq_len: usize) -> Result<Sphinx> {
    load_with(config, source, device, &LoadOptions { max_seq_len, ..Default::default() })
}

/// Builds the model on `device` from any tensor source, as `opts` say.
pub fn load_with(config: &ModelConfig, source: Box<dyn TensorSource>, device: &Device, opts: &LoadOptions) -> Result<Sphinx> {
    let precision = opts.precision.resolve(device)?;
    let w = Weights::new(source, device.clone()).with_precision(precision);
    Sphinx::load(&w, config, opts.max_seq_len)
}

/// Opens a folder and builds the model on `device` (in f32).
pub fn load_model(dir: &Path, device: &Device, max_seq_len: usize) -> Result<Sphinx> {
    load_model_with(dir, device, &LoadOptions { max_seq_len, ..Default::default() })
}

/// Opens a folder and builds the model on `device` as `opts` say.
pub fn load_model_with(dir: &Path, device: &Device, opts: &LoadOptions) -> Result<Sphinx> {
    let m = open(dir)?;
    load_with(&m.config, m.source, device, opts)
}
