//! `sphinx trace`: runs prefill + greedy decode steps like the golden data's decode protocol and
//! collects every intermediate tensor under the reference names, written as one safetensors file.

use crate::generate::argmax;
use crate::image::ImageTensor;
use crate::models::sphinx::Sphinx;
use crate::{Error, Result};
use std::path::Path;

/// One traced tensor.
pub enum TraceData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

pub struct Traced {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TraceData,
}

impl Traced {
    fn f32(name: &str, shape: Vec<usize>, data: Vec<f32>) -> Traced {
        Traced { name: name.to_string(), shape, data: TraceData::F32(data) }
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TraceData::F32(v) => Some(v),
            TraceData::I64(_) => None,
        }
    }
}

/// Prefill (with the image when given) then `steps - 1` greedy decode steps.
/// Tensors: `padded_resize`, the towers' features, `visual_proj_out`, `image_tokens` (with an image),
/// `logits` [steps, vocab] (row 0 = prefill's last position, row k = after feeding greedy token k-1)
/// and `greedy_ids` [steps] (I64).
pub async fn trace(model: &Sphinx, padded: Option<&ImageTensor>, prompt_ids: &[u32], steps: usize) -> Result<Vec<Traced>> {
    if steps == 0 {
        return Err(Error::Config("--steps must be at least 1".into()));
    }
    let mut out = Vec::new();
    let image = match padded {
        Some(p) => {
            out.push(Traced::f32("padded_resize", p.shape().to_vec(), p.data().to_vec()));
            let enc = model.encode_image(p, true)?;
            for (name, shape, t) in &enc.intermediates {
                out.push(Traced::f32(name, shape.clone(), t.to_vec().await?));
            }
            out.push(Traced::f32("image_tokens", enc.tokens.shape().to_vec(), enc.tokens.to_vec().await?));
            Some(enc.tokens)
        }
        None => None,
    };
    let image_words = image.as_ref().map_or(0, |t| t.rows());
    let positions = prompt_ids.len().saturating_add(image_words).saturating_add(steps);
    let mut cache = model.llm.new_cache(positions)?; // refuses more than max_seq_len
    let vocab = model.config.llm.vocab_size;
    let mut logits = Vec::with_capacity(steps * vocab);
    let mut ids = Vec::with_capacity(steps);
    let mut row = model.prefill(&mut cache, prompt_ids, image.as_ref())?.to_vec().await?;
    for k in 0..steps {
        let id = argmax(&row);
        logits.extend_from_slice(&row);
        ids.push(id as i64);
        if k + 1 < steps {
            row = model.decode(&mut cache, id)?.to_vec().await?;
        }
    }
    out.push(Traced::f32("logits", vec![steps, vocab], logits));
    out.push(Traced { name: "greedy_ids".into(), shape: vec![steps], data: TraceData::I64(ids) });
    Ok(out)
}

/// Writes traced tensors as a safetensors file.
pub fn write_safetensors(path: &Path, tensors: &[Traced]) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, safetensors::Dtype, Vec<usize>)> = tensors
        .iter()
        .map(|t| match &t.data {
            TraceData::F32(v) => (t.name.clone(), bytemuck::cast_slice(v).to_vec(), safetensors::Dtype::F32, t.shape.clone()),
            TraceData::I64(v) => (t.name.clone(), bytemuck::cast_slice(v).to_vec(), safetensors::Dtype::I64, t.shape.clone()),
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, b, dt, s)| {
            safetensors::tensor::TensorView::new(*dt, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Msg(format!("trace tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| Error::format(path.display(), e))
}

/// Logit rows for a prompt (with an optional image) followed by `forced` ids (teacher forcing):
/// row 0 = after the prompt, row k = after feeding forced[k-1]. Used to compare precisions step by step.
pub async fn forced_logits(model: &Sphinx, padded: Option<&ImageTensor>, prompt_ids: &[u32], forced: &[u32]) -> Result<Vec<Vec<f32>>> {
    let image = match padded {
        Some(p) => Some(model.encode_image(p, false)?.tokens),
        None => None,
    };
    let words = image.as_ref().map_or(0, |t| t.rows());
    let mut cache = model.llm.new_cache(prompt_ids.len() + words + forced.len() + 1)?;
    let mut rows = vec![model.prefill(&mut cache, prompt_ids, image.as_ref())?.to_vec().await?];
    for &id in forced {
        rows.push(model.decode(&mut cache, id)?.to_vec().await?);
    }
    Ok(rows)
}
