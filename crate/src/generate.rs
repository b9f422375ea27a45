//! Token generation (LLaMA2-Accessory `MetaModel.generate` / `stream_generate`): prefill with the
//! image after BOS, then one decode step per token, greedy or temperature + top-p sampling, stopping
//! at EOS or the conversation's stop sequence (spec §2.8).

use crate::models::sphinx::Sphinx;
use crate::tensor::Tensor;
use crate::text::{StopCriteria, StopReason, StopStream, Tokenizer};
use crate::{Error, Result};

/// How to pick tokens. `temperature == 0` is greedy.
#[derive(Clone, Copy, Debug)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub max_tokens: usize,
}

impl Default for SamplingParams {
    /// `MetaModel.generate`'s defaults: greedy, top_p 0.95, 512 tokens.
    fn default() -> Self {
        SamplingParams { temperature: 0.0, top_p: 0.95, seed: 0, max_tokens: 512 }
    }
}

/// Lets the host's event loop run: in the browser a task of its own (a MessageChannel message, not
/// clamped like setTimeout), so that a worker reads a cancel request between tokens; natively
/// nothing.
pub async fn yield_to_host() {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            let channel = js_sys::Reflect::get(&js_sys::global(), &"MessageChannel".into())
                .ok()
                .and_then(|c| c.dyn_into::<js_sys::Function>().ok())
                .and_then(|c| js_sys::Reflect::construct(&c, &js_sys::Array::new()).ok());
            let Some(channel) = channel else {
                let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
                return;
            };
            let get = |o: &wasm_bindgen::JsValue, k: &str| js_sys::Reflect::get(o, &k.into()).unwrap_or_default();
            let (port1, port2) = (get(&channel, "port1"), get(&channel, "port2"));
            let _ = js_sys::Reflect::set(&port1, &"onmessage".into(), &resolve);
            if let Ok(post) = get(&port2, "postMessage").dyn_into::<js_sys::Function>() {
                let _ = post.call1(&port2, &wasm_bindgen::JsValue::NULL);
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
}

/// Index of the largest logit (the first one on ties, like `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Seeded sampler: a PCG32 stream per generation, so a seed reproduces an answer.
pub struct Sampler {
    params: SamplingParams,
    state: u64,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let mut s = Sampler { params, state: 0 };
        s.state = params.seed.wrapping_add(0x853c_49e6_748f_ea9b);
        s.next_u32();
        s
    }

    fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        xorshifted.rotate_right((old >> 59) as u32)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.next_u32() as f64 / 4_294_967_296.0
    }

    /// Picks the next token: argmax when temperature is 0, else softmax(logits / T), the smallest
    /// prefix of the sorted distribution whose mass reaches top_p (a token is dropped when the mass
    /// before it already exceeds top_p), renormalised, one draw.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = self.params;
        if p.temperature <= 0.0 {
            return argmax(logits);
        }
        let t = p.temperature as f64;
        let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(u32, f64)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, ((l as f64 - m) / t).exp())).collect();
        let z: f64 = probs.iter().map(|x| x.1).sum();
        probs.iter_mut().for_each(|x| x.1 /= z);
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut cum = 0.0;
        let mut keep = 0;
        for &(_, pr) in &probs {
            if cum > p.top_p as f64 {
                break;
            }
            cum += pr;
            keep += 1;
        }
        let kept = &probs[..keep.max(1)];
        let total: f64 = kept.iter().map(|x| x.1).sum();
        let mut r = self.uniform() * total;
        for &(id, pr) in kept {
            if r < pr {
                return id;
            }
            r -= pr;
        }
        kept[kept.len() - 1].0
    }
}

/// Result of one generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated ids (stop sequence included when one ended it).
    pub ids: Vec<u32>,
    /// The answer text (before any stop sequence).
    pub text: String,
    pub finish: Finish,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// EOS, the conversation's stop sequence or one of the caller's stop texts.
    Stop(StopReason),
    /// The token budget (max_tokens, or max_seq_len) ran out.
    Length,
    /// The caller cancelled.
    Cancelled,
}

/// Generates an answer to `prompt_ids` (BOS first) with an optional encoded image; the answer also
/// ends before the first of the caller's `stop` texts (OpenAI's `stop`, [`StopCriteria::with_texts`]).
/// `on_text(id, delta)` receives each id with the text it makes final; returning false cancels.
pub async fn generate(
    model: &Sphinx,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    image: Option<&Tensor>,
    params: SamplingParams,
    stop: &[String],
    mut on_text: impl FnMut(u32, &str) -> bool,
) -> Result<Generation> {
    let image_words = image.map_or(0, |t| t.rows());
    let used = prompt_ids.len() + image_words;
    let max_seq = model.llm.max_seq_len;
    if used >= max_seq {
        return Err(Error::Config(format!(
            "prompt of {} tokens + {image_words} image positions does not fit max_seq_len {max_seq}",
            prompt_ids.len()
        )));
    }
    let budget = params.max_tokens.min(max_seq - used);
    let mut cache = model.llm.new_cache(used + budget)?;
    let mut sampler = Sampler::new(params);
    let mut stream = StopStream::new(tokenizer, StopCriteria::upstream(tokenizer)?.with_texts(stop)?);
    let mut text = String::new();
    let mut ids = Vec::new();
    let mut logits = model.prefill(&mut cache, prompt_ids, image)?;
    for step in 0..budget {
        let row = logits.to_vec().await?;
        let id = sampler.sample(&row);
        ids.push(id);
        let s = stream.push(id)?;
        text.push_str(&s.text);
        let go_on = on_text(id, &s.text);
        if let Some(why) = s.stop {
            return Ok(Generation { ids, text, finish: Finish::Stop(why) });
        }
        if !go_on {
            return Ok(Generation { ids, text, finish: Finish::Cancelled });
        }
        if step + 1 < budget {
            if !model.device().is_gpu() {
                // a GPU readback yields to the host's event loop; the CPU backend must do it itself
                yield_to_host().await;
            }
            logits = model.decode(&mut cache, id)?;
        }
    }
    let tail = stream.finish()?;
    on_text(u32::MAX, &tail);
    text.push_str(&tail);
    Ok(Generation { ids, text, finish: Finish::Length })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_p() {
        let logits = [2.0f32, 1.0, 0.5, -3.0];
        let p = SamplingParams { temperature: 0.7, top_p: 0.5, seed: 7, max_tokens: 1 };
        // top_p 0.5: the first token alone holds > 0.5 of the mass, so it is always drawn.
        let mut s = Sampler::new(p);
        assert!((0..50).all(|_| s.sample(&logits) == 0));
        let p = SamplingParams { top_p: 1.0, ..p };
        let draws = |seed| {
            let mut s = Sampler::new(SamplingParams { seed, ..p });
            (0..64).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
        let d = draws(5);
        assert!(d.contains(&0) && d.contains(&1), "{d:?}");
    }
}
