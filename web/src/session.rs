//! The model session of the browser build: the WebGPU device (`GpuDevice`, opened before any
//! download so that a browser without WebGPU fails at once), the model built from the OPFS shards
//! (`Session::load`), encoded images kept on the GPU by handle, and chat generation streaming each
//! token to a callback. The same `sphinx` code as the native CLI (`crate/src/bin/sphinx.rs` `run`).

use crate::opfs::OpfsShards;
use crate::js_error;
use crate::limits::check_limits;
use sphinx::generate::{generate, Finish, SamplingParams};
use sphinx::image::{from_rgba, padded_resize};
use sphinx::io::converted::{ConvertedSource, Manifest};
use sphinx::kernels::tune::{autotune, self_test, AutotuneMode, TuneCache};
use sphinx::load::{load_with, LoadOptions};
use sphinx::nn::PrecisionChoice;
use sphinx::models::sphinx::Sphinx;
use sphinx::runtime::Gpu;
use sphinx::tensor::{Device, Tensor};
use sphinx::text::{Message, Template, Tokenizer};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;
use web_sys::FileSystemSyncAccessHandle;

/// upstream's `from_pretrained` default context length (positions a chat may use).
const MAX_SEQ_LEN: usize = sphinx::load::DEFAULT_MAX_SEQ_LEN;

/// The WebGPU adapter and device.
#[wasm_bindgen]
pub struct GpuDevice {
    gpu: Arc<Gpu>,
}

#[wasm_bindgen]
impl GpuDevice {
    /// Asks the browser for a high-performance adapter and a device with its limits (f16 and
    /// subgroups enabled only where the adapter has them). Fails with a message a person can act on.
    /// `limits`: "adapter" (everything it offers) or "default" (WebGPU's default limits: 128 MiB per
    /// binding, 256 MiB per buffer, as many phones grant).
    pub async fn open(limits: &str) -> Result<GpuDevice, JsError> {
        let limits = sphinx::runtime::LimitsChoice::parse(limits).map_err(js_error)?;
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| {
                JsError::new(&format!(
                    "WebGPU is available but no GPU adapter was found ({e}); the GPU may be blocklisted \
                     or disabled: check chrome://gpu, or try another browser or machine"
                ))
            })?;
        let gpu = Gpu::from_adapter_with(adapter, limits).await.map_err(js_error)?;
        Ok(GpuDevice { gpu })
    }

    /// JSON: `{adapter, vendor, backend, driver, shaderF16, subgroups, software, timestamps,
    /// maxBufferSize, maxStorageBufferBindingSize}` (`GpuInfo`).
    pub fn info(&self) -> String {
        serde_json::to_string(&self.gpu.info).unwrap_or_default()
    }

    /// Fails, before anything is downloaded, when a tensor of the manifest cannot live on this
    /// adapter even split into row chunks (see `limits`).
    #[wasm_bindgen(js_name = checkManifest)]
    pub fn check_manifest(&self, manifest: &[u8]) -> Result<(), JsError> {
        let m = Manifest::parse(manifest, "manifest.json").map_err(js_error)?;
        check_limits(&m, self.gpu.info.max_buffer_size, self.gpu.info.max_storage_binding).map_err(js_error)
    }

    /// Runs every linear kernel variant the tuner may pick, on every weight format this adapter
    /// reads, against the CPU twin; resolves to JSON `{runs, maxAbsError, failures}`.
    #[wasm_bindgen(js_name = selfTest)]
    pub fn self_test(&self) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        future_to_promise(async move {
            let r = self_test(&gpu).await.map_err(to_js)?;
            Ok(JsValue::from_str(&serde_json::to_string(&r).unwrap_or_default()))
        })
    }

    /// Destroys the GPU device now (`GPUDevice.destroy()`): what a lost device looks like to the
    /// engine, for tests of that path. Everything on the device is gone; load the model again.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) {
        self.gpu.device.destroy();
    }

    /// The first asynchronous GPU error (validation, out of memory, device lost), if any.
    #[wasm_bindgen(js_name = lastError)]
    pub fn last_error(&self) -> Option<String> {
        self.gpu.check_error().err().map(|e| e.to_string())
    }
}

/// Fails, before anything is downloaded, when the model's weights cannot live in the wasm heap
/// (see `limits::check_cpu_memory`).
#[wasm_bindgen(js_name = checkCpuMemory)]
pub fn check_cpu_memory(manifest: &[u8]) -> Result<(), JsError> {
    let m = Manifest::parse(manifest, "manifest.json").map_err(js_error)?;
    crate::limits::check_cpu_memory(&m).map_err(js_error)
}

/// The CPU backend of this build, JSON `{isa, threads, threaded}`: the SIMD level its kernels use
/// (wasm-simd128, or wasm-relaxed-simd in a build made with it), the threads they split over (1
/// unless the threaded build's pool was started) and whether this is the threaded build.
#[wasm_bindgen(js_name = cpuInfo)]
pub fn cpu_info() -> String {
    /// `cpuInfo`'s answer.
    #[derive(serde::Serialize)]
    struct CpuInfo {
        isa: &'static str,
        threads: usize,
        threaded: bool,
    }
    serde_json::to_string(&CpuInfo { isa: sphinx::cpu::isa().name(), threads: sphinx::cpu::threads(), threaded: cfg!(feature = "threads") }).unwrap_or_default()
}

/// An encoded image: [image_words, dim] on the model's device (shared with a chat that is using it).
type EncodedImage = Rc<Tensor>;

/// A chat request as the worker sends it (JSON).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatRequest {
    /// Replaces the template's system line (`conversation::SYSTEM`) when given.
    #[serde(default)]
    system: Option<String>,
    messages: Vec<Message>,
    /// 0: no image
    image: u32,
    max_tokens: usize,
    temperature: f32,
    top_p: f32,
    seed: u64,
    /// OpenAI's `stop`: texts that end the answer before them (checked by the engine).
    #[serde(default)]
    stop: Vec<String>,
}

struct Inner {
    model: Sphinx,
    tokenizer: Tokenizer,
    /// The GPU the model lives on; None on the CPU backend.
    gpu: Option<Arc<Gpu>>,
    images: RefCell<HashMap<u32, EncodedImage>>,
    next_image: Cell<u32>,
}

/// A loaded model.
#[wasm_bindgen]
pub struct Session {
    inner: Rc<Inner>,
}

impl Inner {
    /// The first asynchronous GPU error, if any (nothing to check on the CPU).
    fn check_gpu(&self) -> Result<(), JsValue> {
        match &self.gpu {
            Some(g) => g.check_error().map_err(to_js),
            None => Ok(()),
        }
    }
}

fn to_js(e: sphinx::Error) -> JsValue {
    JsValue::from(js_error(e))
}

#[wasm_bindgen]
impl Session {
    /// Builds the model from the shards stored in OPFS on the GPU: `handles` are open
    /// `FileSystemSyncAccessHandle`s, one per shard of the manifest, in order; tensors are read one
    /// at a time and uploaded to the GPU. `on_read(bytesRead, totalBytes)` reports progress.
    /// `precision`: auto (f16 where the adapter has shader-f16), f32 or f16.
    pub fn load(
        device: &GpuDevice,
        manifest: &[u8],
        tokenizer_json: &[u8],
        handles: js_sys::Array,
        on_read: js_sys::Function,
        precision: &str,
    ) -> Result<Session, JsError> {
        Session::load_on(Device::Gpu(device.gpu.clone()), manifest, tokenizer_json, handles, on_read, precision).map_err(|mut msg| {
            if msg.contains("maxBufferSize") || msg.contains("binding") {
                let i = &device.gpu.info;
                msg.push_str(&format!(" (adapter {}: maxBufferSize {} MiB, maxStorageBufferBindingSize {} MiB)", i.name, i.max_buffer_size >> 20, i.max_storage_binding >> 20));
            }
            JsError::new(&msg)
        })
    }

    /// [`Session::load`] on the CPU backend: the weights are read into wasm memory as stored (q4 and
    /// q8 stay packed) and the CPU kernels run them (on a pool of workers in the threaded build).
    #[wasm_bindgen(js_name = loadCpu)]
    pub fn load_cpu(manifest: &[u8], tokenizer_json: &[u8], handles: js_sys::Array, on_read: js_sys::Function, precision: &str) -> Result<Session, JsError> {
        Session::load_on(Device::Cpu, manifest, tokenizer_json, handles, on_read, precision).map_err(|msg| JsError::new(&msg))
    }

    fn load_on(device: Device, manifest: &[u8], tokenizer_json: &[u8], handles: js_sys::Array, on_read: js_sys::Function, precision: &str) -> Result<Session, String> {
        let precision = PrecisionChoice::parse(precision).map_err(|e| e.to_string())?;
        let m = Manifest::parse(manifest, "manifest.json").map_err(|e| e.to_string())?;
        if handles.length() as usize != m.shards.len() {
            return Err(format!("{} shard handles for {} shards", handles.length(), m.shards.len()));
        }
        let handles: Vec<FileSystemSyncAccessHandle> = handles.iter().map(|h| h.unchecked_into()).collect();
        let names = m.shards.iter().map(|s| s.file.clone()).collect();
        let reader = OpfsShards::new(handles, names, m.weight_bytes(), on_read);
        let tokenizer = Tokenizer::from_bytes(tokenizer_json, "tokenizer.json").map_err(|e| e.to_string())?;
        let config = m.model.clone();
        let source = ConvertedSource::new(m, Box::new(reader), "OPFS cache");
        let opts = LoadOptions { max_seq_len: MAX_SEQ_LEN, precision };
        let model = load_with(&config, Box::new(source), &device, &opts).map_err(|e| e.to_string())?;
        let gpu = match device {
            Device::Gpu(g) => Some(g),
            Device::Cpu => None,
        };
        Ok(Session { inner: Rc::new(Inner { model, tokenizer, gpu, images: RefCell::new(HashMap::new()), next_image: Cell::new(1) }) })
    }

    /// Tunes the kernels for this model's shapes (`mode`: cached, fresh or off) with the stored
    /// cache `cache_json` (any text: unusable or another engine's is empty); resolves to JSON
    /// `{cache, report}` — the cache to store back and what was done.
    pub fn autotune(&self, mode: &str, cache_json: &str) -> js_sys::Promise {
        let inner = self.inner.clone();
        let mode = AutotuneMode::parse(mode);
        let mut cache = TuneCache::parse(cache_json);
        future_to_promise(async move {
            let mode = mode.map_err(to_js)?;
            let gpu = inner.gpu.as_ref().ok_or_else(|| JsError::new("autotune: the model is on the CPU"))?;
            let report = autotune(gpu, mode, &mut cache).await.map_err(to_js)?;
            let out = serde_json::json!({ "cache": cache.to_json(), "report": report });
            Ok(JsValue::from_str(&out.to_string()))
        })
    }

    /// Runs BOS through the decoder once: compiles the decoder's pipelines and surfaces any GPU
    /// error of the upload before the first question. Resolves when the GPU has finished.
    pub fn warmup(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let m = &inner.model;
            let mut cache = m.llm.new_cache(1).map_err(to_js)?;
            let logits = m.prefill(&mut cache, &[inner.tokenizer.bos_id()], None).map_err(to_js)?;
            logits.rows_to_vec(0, 1).await.map_err(to_js)?;
            inner.check_gpu()?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// JSON: `{llamaType, release, imageSize, imageWords, vocabSize, maxSeqLen, precision, device}`
    /// (`device`: "gpu" or "cpu").
    pub fn info(&self) -> String {
        /// `info`'s answer.
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ModelInfo {
            device: &'static str,
            precision: sphinx::nn::Precision,
            llama_type: &'static str,
            release: &'static str,
            image_size: usize,
            image_words: usize,
            vocab_size: usize,
            max_seq_len: usize,
            limits: Limits,
        }
        /// What the engine refuses past (the package checks requests against these before work).
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Limits {
            max_image_side: usize,
            max_image_pixels: usize,
            max_image_file_bytes: u64,
            /// The most tokens an answer may ask for: the longest context.
            max_tokens: usize,
            max_stop_texts: usize,
            max_stop_text_bytes: usize,
        }
        let (m, t) = (&self.inner.model, self.inner.model.llama_type());
        let info = ModelInfo {
            device: if self.inner.gpu.is_some() { "gpu" } else { "cpu" },
            precision: m.precision(),
            llama_type: t.name(),
            release: t.release(),
            image_size: t.image_size(),
            image_words: m.image_words(),
            vocab_size: m.config.llm.vocab_size,
            max_seq_len: m.llm.max_seq_len,
            limits: Limits {
                max_image_side: sphinx::image::MAX_IMAGE_SIDE,
                max_image_pixels: sphinx::image::MAX_IMAGE_PIXELS,
                max_image_file_bytes: sphinx::image::MAX_IMAGE_FILE_BYTES,
                max_tokens: sphinx::models::llama::MAX_SEQ_LEN,
                max_stop_texts: sphinx::text::stop::MAX_STOP_TEXTS,
                max_stop_text_bytes: sphinx::text::stop::MAX_STOP_TEXT_BYTES,
            },
        };
        serde_json::to_string(&info).unwrap_or_default()
    }

    /// Encodes canvas pixels (`rgba`: `width * height * 4` bytes, alpha dropped like PIL's
    /// `convert('RGB')`) and keeps the embeddings on the GPU; resolves to the image's handle once
    /// the GPU has finished.
    #[wasm_bindgen(js_name = encodeImage)]
    pub fn encode_image(&self, rgba: &[u8], width: u32, height: u32) -> js_sys::Promise {
        let inner = self.inner.clone();
        let prepared = from_rgba(rgba, width as usize, height as usize)
            .and_then(|rgb| padded_resize(&rgb, inner.model.llama_type().image_size()));
        future_to_promise(async move {
            let padded = prepared.map_err(to_js)?;
            inner.check_gpu()?;
            let enc = inner.model.encode_image(&padded, false).map_err(to_js)?;
            drop(padded);
            // One row back: waits for the towers to finish and reports any GPU error now.
            enc.tokens.rows_to_vec(0, 1).await.map_err(to_js)?;
            let id = inner.next_image.get();
            inner.next_image.set(id + 1);
            inner.images.borrow_mut().insert(id, Rc::new(enc.tokens));
            Ok(JsValue::from(id))
        })
    }

    /// The bench page's run (`sphinx::bench::model_bench`, as `sphinx bench --model --json`): the
    /// phases of one question about the `width` x `height` RGBA pixels (none when empty) as the
    /// JSON `plan_json` says (`{tokens, promptTokens, reps, text?}`: `text`, tokenized with BOS, replaces
    /// the prompt of `promptTokens` ids), and every linear shape of the model with its kernel variant. Resolves
    /// to the report as JSON.
    pub fn bench(&self, rgba: &[u8], width: u32, height: u32, plan_json: &str) -> js_sys::Promise {
        let inner = self.inner.clone();
        let plan: Result<sphinx::bench::BenchPlan, JsValue> = serde_json::from_str(plan_json).map_err(|e| JsError::new(&format!("bench plan: {e}")).into());
        let padded = (!rgba.is_empty()).then(|| from_rgba(rgba, width as usize, height as usize).and_then(|rgb| padded_resize(&rgb, inner.model.llama_type().image_size())));
        future_to_promise(async move {
            let padded = padded.transpose().map_err(to_js)?;
            let plan = plan?;
            let ids = plan.prompt_ids(Some(&inner.tokenizer)).map_err(to_js)?;
            let report = sphinx::bench::model_bench(&inner.model, padded.as_ref(), &plan, &ids, None, None).await.map_err(to_js)?;
            Ok(JsValue::from_str(&serde_json::to_string(&report).unwrap_or_default()))
        })
    }

    /// JSON `{allocatedBytes, peakBytes}`: the GPU buffers that exist now (weights, activations,
    /// KV cache, scratch) and the most there ever were.
    #[wasm_bindgen(js_name = gpuMemory)]
    pub fn gpu_memory(&self) -> String {
        let (now, peak) = self.inner.gpu.as_ref().map_or((0, 0), |g| g.memory());
        serde_json::json!({ "allocatedBytes": now, "peakBytes": peak }).to_string()
    }

    /// Frees an encoded image's embeddings.
    #[wasm_bindgen(js_name = freeImage)]
    pub fn free_image(&self, id: u32) -> bool {
        self.inner.images.borrow_mut().remove(&id).is_some()
    }

    /// Answers a chat. `request_json`: `{system?, messages: [{role: "user"|"assistant", content}], image (0:
    /// none), maxTokens, temperature, topP, seed, stop?: [text]}`; the upstream conversation template, the image
    /// after BOS. `on_token(id, text)` receives each generated id with the text it makes final (id
    /// -1: the final flush); returning `false` cancels. Resolves to JSON `{finish:
    /// "stop"|"length"|"cancelled", tokens, promptTokens}`.
    pub fn chat(&self, request_json: &str, on_token: js_sys::Function) -> js_sys::Promise {
        let inner = self.inner.clone();
        let request: Result<ChatRequest, JsValue> =
            serde_json::from_str(request_json).map_err(|e| JsError::new(&format!("chat request: {e}")).into());
        future_to_promise(async move {
            let ChatRequest { system, messages, image, max_tokens, temperature, top_p, seed, stop } = request?;
            inner.check_gpu()?;
            let mut template = Template::v1_2();
            if let Some(system) = system {
                template.system = system;
            }
            let text = template.prompt(&messages).map_err(to_js)?;
            let ids = inner.tokenizer.encode_prompt(&text).map_err(to_js)?;
            let tokens: Option<EncodedImage> = match image {
                0 => None,
                id => Some(
                    inner.images.borrow().get(&id).cloned().ok_or_else(|| JsError::new(&format!("image handle {id} was freed or never encoded")))?,
                ),
            };
            let tokens = tokens.as_deref();
            let params = SamplingParams { temperature, top_p, seed, max_tokens };
            let mut callback_error = None;
            let g = generate(&inner.model, &inner.tokenizer, &ids, tokens, params, &stop, |id, delta| {
                let id = if id == u32::MAX { JsValue::from(-1) } else { JsValue::from(id) };
                match on_token.call2(&JsValue::NULL, &id, &JsValue::from_str(delta)) {
                    Ok(v) => v.as_bool() != Some(false),
                    Err(e) => {
                        callback_error = Some(e);
                        false
                    }
                }
            })
            .await
            .map_err(to_js)?;
            if let Some(e) = callback_error {
                return Err(e);
            }
            let finish = match g.finish {
                Finish::Stop(_) => "stop",
                Finish::Length => "length",
                Finish::Cancelled => "cancelled",
            };
            Ok(JsValue::from_str(&serde_json::json!({ "finish": finish, "tokens": g.ids.len(), "promptTokens": ids.len() }).to_string()))
        })
    }
}
