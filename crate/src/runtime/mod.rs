//! The GPU runtime: the only module that touches wgpu types directly.
//!
//! It owns the device and queue, a pool of storage buffers (no per-op create/destroy), a pipeline
//! cache keyed by kernel + override constants, and one open command encoder into which kernels are
//! recorded back to back; the batch is submitted when it is full or when something is read back.
//! Kernel parameters go into one uniform "arena" buffer written once per submission.
//! Native and wasm differ only in how the device is obtained and how a readback is awaited.

use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A WGSL kernel with a `main` entry point, put together from `parts` (an accessor, parameters, a
/// body: each `.wgsl` file stored once in the binary however many kernels share it) when its
/// pipeline is first made. Binding 0 is the `Params` uniform, bindings 1.. are storage buffers in
/// the order the caller passes them.
pub struct Kernel {
    pub name: &'static str,
    pub parts: &'static [&'static str],
}

/// Dispatches recorded into one command buffer before it is submitted.
const MAX_BATCH: usize = 256;
/// Bytes reserved per dispatch in the params arena (WebGPU's minimum uniform offset alignment).
const PARAMS_SLOT: u64 = 256;

/// What the adapter gave us, for messages and for choosing fast paths (serialized as the
/// browser's `info.adapter`).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuInfo {
    #[serde(rename = "adapter")]
    pub name: String,
    /// PCI vendor and device ids as hex ("10de:2330"; 0000:0000 where the platform hides them).
    pub vendor: String,
    pub backend: String,
    pub driver: String,
    pub shader_f16: bool,
    pub subgroups: bool,
    /// A CPU implementation (lavapipe, SwiftShader: the browser's fallback adapter). Barriers and
    /// workgroup memory cost far more there than repeated loads, so some kernels have a variant.
    pub software: bool,
    /// GPU timestamp queries (used to time kernels when autotuning).
    pub timestamps: bool,
    pub max_buffer_size: u64,
    #[serde(rename = "maxStorageBufferBindingSize")]
    pub max_storage_binding: u64,
}

struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

struct Batch {
    encoder: Option<wgpu::CommandEncoder>,
    /// Params of the dispatches recorded so far, one `PARAMS_SLOT` each.
    params: Vec<u8>,
    arena: wgpu::Buffer,
    dispatches: usize,
    /// While kernels are being timed with timestamp queries: the query set (0: start of the first
    /// pass, 1: end of the last) and whether the first pass is still to come.
    timing: Option<(wgpu::QuerySet, bool)>,
}

/// Bytes of GPU buffers that exist now, and the most that ever existed at once.
#[derive(Default)]
struct Memory {
    now: AtomicU64,
    peak: AtomicU64,
}

impl Memory {
    fn add(&self, bytes: u64) {
        let now = self.now.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
    fn sub(&self, bytes: u64) {
        self.now.fetch_sub(bytes, Ordering::Relaxed);
    }
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: GpuInfo,
    pub limits: wgpu::Limits,
    pipelines: Mutex<HashMap<String, Arc<Pipeline>>>,
    pool: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    batch: Mutex<Batch>,
    /// First uncaptured wgpu error (validation, out of memory, device lost); reported at readback.
    error: Arc<Mutex<Option<String>>>,
    /// Per-kernel wall times (kernel and grid → calls, seconds), when `SPHINX_PROFILE=1`.
    profile: Option<Mutex<HashMap<String, (u32, f64)>>>,
    /// State a layer above keeps per device without the runtime knowing its type: the kernel
    /// tuner's shapes and choices (`kernels::tune`), made on first use.
    state: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
    memory: Memory,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which device limits to ask the adapter for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LimitsChoice {
    /// Everything the adapter offers.
    #[default]
    Adapter,
    /// WebGPU's default limits (128 MiB per storage binding, 256 MiB per buffer, ...): what many
    /// phones and iOS Safari grant. Models must fit them by splitting weights and activations.
    Default,
}

impl LimitsChoice {
    pub fn parse(s: &str) -> Result<LimitsChoice> {
        match s {
            "adapter" => Ok(LimitsChoice::Adapter),
            "default" => Ok(LimitsChoice::Default),
            other => Err(Error::Config(format!("limits {other:?}: expected adapter or default"))),
        }
    }
}

/// The device's first uncaptured error or loss, kept for [`Gpu::check_error`].
fn error_slot(device: &wgpu::Device) -> Arc<Mutex<Option<String>>> {
    let error = Arc::new(Mutex::new(None::<String>));
    let first = |slot: &Arc<Mutex<Option<String>>>, msg: String| {
        let mut slot = lock(slot);
        if slot.is_none() {
            *slot = Some(msg);
        }
    };
    let e = error.clone();
    device.on_uncaptured_error(Arc::new(move |err: wgpu::Error| first(&e, err.to_string())));
    let e = error.clone();
    device.set_device_lost_callback(move |reason, msg| first(&e, format!("device lost ({reason:?}): {msg}")));
    error
}

impl GpuInfo {
    /// What the engine reports of an adapter opened with `features` and `limits`.
    fn of(a: &wgpu::AdapterInfo, features: wgpu::Features, limits: &wgpu::Limits) -> GpuInfo {
        GpuInfo {
            name: a.name.clone(),
            vendor: format!("{:04x}:{:04x}", a.vendor, a.device),
            backend: format!("{:?}", a.backend),
            driver: format!("{} {}", a.driver, a.driver_info),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            software: a.device_type == wgpu::DeviceType::Cpu,
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            max_buffer_size: limits.max_buffer_size,
            max_storage_binding: limits.max_storage_buffer_binding_size as u64,
        }
    }
}

impl Gpu {
    /// Asks for a high-performance adapter and a device with the adapter's own limits.
    /// Fails (never falls back to the CPU) when there is none.
    pub async fn new() -> Result<Arc<Gpu>> {
        Self::new_with(LimitsChoice::Adapter).await
    }

    /// [`Gpu::new`] with the limits `limits` asks for.
    pub async fn new_with(limits: LimitsChoice) -> Result<Arc<Gpu>> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| Error::Gpu(format!("no GPU adapter found ({e}); use --device cpu to run on the CPU")))?;
        Self::from_adapter_with(adapter, limits).await
    }

    pub async fn from_adapter(adapter: wgpu::Adapter) -> Result<Arc<Gpu>> {
        Self::from_adapter_with(adapter, LimitsChoice::Adapter).await
    }

    /// Opens a device on `adapter` with its own limits or WebGPU's defaults.
    pub async fn from_adapter_with(adapter: wgpu::Adapter, limits: LimitsChoice) -> Result<Arc<Gpu>> {
        let ainfo = adapter.get_info();
        let alimits = match limits {
            LimitsChoice::Adapter => adapter.limits(),
            LimitsChoice::Default => wgpu::Limits::default(),
        };
        let afeatures = adapter.features();
        let mut features = wgpu::Features::empty();
        for f in [wgpu::Features::SHADER_F16, wgpu::Features::SUBGROUP, wgpu::Features::TIMESTAMP_QUERY] {
            if afeatures.contains(f) {
                features |= f;
            }
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("sphinx"),
                required_features: features,
                required_limits: alimits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Gpu(format!("request_device on {}: {e}", ainfo.name)))?;
        let error = error_slot(&device);
        let info = GpuInfo::of(&ainfo, features, &alimits);
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params arena"),
            size: PARAMS_SLOT * MAX_BATCH as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let slot = alimits.min_uniform_buffer_offset_alignment as u64;
        if slot > PARAMS_SLOT {
            return Err(Error::Gpu(format!(
                "adapter {} needs uniform offsets aligned to {slot} bytes (> {PARAMS_SLOT})",
                ainfo.name
            )));
        }
        Ok(Arc::new(Gpu {
            device,
            queue,
            info,
            limits: alimits,
            pipelines: Mutex::new(HashMap::new()),
            pool: Mutex::new(HashMap::new()),
            batch: Mutex::new(Batch { encoder: None, params: Vec::new(), arena, dispatches: 0, timing: None }),
            error,
            profile: (cfg!(not(target_arch = "wasm32")) && std::env::var("SPHINX_PROFILE").is_ok_and(|v| v == "1"))
                .then(|| Mutex::new(HashMap::new())),
            state: std::sync::OnceLock::new(),
            memory: Memory::default(),
        }))
    }

    /// The per-device state of type `T` (one type per device: the kernel tuner's), made with
    /// `T::default()` on first use.
    pub fn state<T: Default + Send + Sync + 'static>(&self) -> &T {
        let any = self.state.get_or_init(|| Box::new(T::default()));
        any.downcast_ref::<T>().expect("Gpu::state: one type of per-device state")
    }

    /// (bytes of GPU buffers now, the peak since the device was opened): weights, pooled
    /// activations and scratch, the params arena.
    pub fn memory(&self) -> (u64, u64) {
        (self.memory.now.load(Ordering::Relaxed), self.memory.peak.load(Ordering::Relaxed))
    }

    fn create_storage(&self, size: u64) -> wgpu::Buffer {
        self.memory.add(size);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// The first asynchronous GPU error seen so far, as an `Error`.
    pub fn check_error(&self) -> Result<()> {
        match lock(&self.error).clone() {
            Some(e) => Err(Error::Gpu(e)),
            None => Ok(()),
        }
    }

    /// A storage buffer of at least `size` bytes from the pool (contents undefined).
    pub fn alloc(self: &Arc<Self>, size: u64) -> Result<GpuBuffer> {
        let class = size_class(size);
        if class > self.limits.max_buffer_size {
            return Err(Error::Gpu(format!(
                "buffer of {size} bytes exceeds the adapter's maxBufferSize {}",
                self.limits.max_buffer_size
            )));
        }
        let reused = lock(&self.pool).get_mut(&class).and_then(|v| v.pop());
        let buffer = match reused {
            Some(b) => b,
            None => self.create_storage(class),
        };
        Ok(GpuBuffer { buffer: Some(buffer), len: size, pooled: true, gpu: self.clone() })
    }

    /// A buffer holding `data`, sized exactly (weights: never pooled).
    pub fn upload(self: &Arc<Self>, data: &[u8]) -> Result<GpuBuffer> {
        let len = data.len() as u64;
        let size = len.max(4).div_ceil(4) * 4;
        if size > self.limits.max_buffer_size {
            return Err(Error::Gpu(format!(
                "buffer of {size} bytes exceeds the adapter's maxBufferSize {}",
                self.limits.max_buffer_size
            )));
        }
        let buffer = self.create_storage(size);
        self.write(&buffer, 0, data);
        Ok(GpuBuffer { buffer: Some(buffer), len, pooled: false, gpu: self.clone() })
    }

    /// Writes bytes into a buffer; ordered after everything recorded so far.
    pub fn write(&self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        // Recorded kernels must see the old contents: submit them first.
        self.flush();
        if data.len() % 4 == 0 {
            self.queue.write_buffer(buffer, offset, data);
        } else {
            let mut padded = data.to_vec();
            padded.resize(data.len().div_ceil(4) * 4, 0);
            self.queue.write_buffer(buffer, offset, &padded);
        }
    }

    /// Drops every pooled buffer (after a model is released, say).
    pub fn trim_pool(&self) {
        let freed: u64 = lock(&self.pool).drain().flat_map(|(_, v)| v).map(|b| b.size()).sum();
        self.memory.sub(freed);
    }

    fn pipeline(&self, kernel: &Kernel, overrides: &[(&str, f64)]) -> Arc<Pipeline> {
        let mut key = kernel.name.to_string();
        for (k, v) in overrides {
            key.push_str(&format!(" {k}={v}"));
        }
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return p.clone();
        }
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name),
            source: wgpu::ShaderSource::Wgsl(kernel.parts.concat().into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.name),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions { constants: overrides, ..Default::default() },
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        let p = Arc::new(Pipeline { pipeline, layout });
        lock(&self.pipelines).insert(key, p.clone());
        p
    }

    /// Records one dispatch of `kernel` with `params` (a `#[repr(C)]` Pod struct) and storage
    /// `buffers` bound at 1.., over `groups` workgroups.
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        kernel: &Kernel,
        overrides: &[(&str, f64)],
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let bound: Vec<Bound> = buffers.iter().map(|b| Bound::Buffer(b)).collect();
        self.dispatch_bound(kernel, overrides, params, &bound, groups)
    }

    /// [`Gpu::dispatch`] with storage buffers or texture views bound at 1...
    pub fn dispatch_bound<P: bytemuck::Pod>(
        &self,
        kernel: &Kernel,
        overrides: &[(&str, f64)],
        params: &P,
        bound: &[Bound],
        groups: [u32; 3],
    ) -> Result<()> {
        self.check_dispatch(kernel, bound, groups)?;
        if groups.contains(&0) {
            return Ok(());
        }
        let bytes = bytemuck::bytes_of(params);
        assert!(bytes.len() as u64 <= PARAMS_SLOT, "{}: params larger than a slot", kernel.name);
        let pipeline = self.pipeline(kernel, overrides);
        let mut batch = lock(&self.batch);
        if batch.dispatches == MAX_BATCH {
            self.submit(&mut batch);
        }
        let offset = batch.params.len() as u64;
        batch.params.extend_from_slice(bytes);
        batch.params.resize((offset + PARAMS_SLOT) as usize, 0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &batch.arena,
                offset,
                size: std::num::NonZeroU64::new(PARAMS_SLOT),
            }),
        }];
        for (i, b) in bound.iter().enumerate() {
            let resource = match b {
                Bound::Buffer(b) => b.as_entire_binding(),
                Bound::Texture(t) => wgpu::BindingResource::TextureView(&t.view),
            };
            entries.push(wgpu::BindGroupEntry { binding: 1 + i as u32, resource });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &pipeline.layout,
            entries: &entries,
        });
        let b = &mut *batch;
        let encoder = self.encoder(&mut b.encoder);
        {
            let timestamp_writes = b.timing.as_mut().map(|(set, first)| {
                let begin = std::mem::take(first).then_some(0);
                wgpu::ComputePassTimestampWrites { query_set: &*set, beginning_of_pass_write_index: begin, end_of_pass_write_index: Some(1) }
            });
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(kernel.name), timestamp_writes });
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        batch.dispatches += 1;
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(profile) = &self.profile {
            // Each dispatch runs alone and is waited for: its wall time is its own.
            let key = format!("{} {groups:?}", kernel.name);
            self.submit(&mut batch);
            drop(batch);
            let t = std::time::Instant::now();
            self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("poll: {e}")))?;
            let mut p = lock(profile);
            let e = p.entry(key).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += t.elapsed().as_secs_f64();
        }
        Ok(())
    }

    /// The grid within the device's workgroup limit and every bound buffer within its binding limit.
    fn check_dispatch(&self, kernel: &Kernel, bound: &[Bound], groups: [u32; 3]) -> Result<()> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Gpu(format!("{}: dispatch {groups:?} exceeds {max} workgroups per dimension", kernel.name)));
        }
        let binding = self.limits.max_storage_buffer_binding_size as u64;
        let mut buffers = bound.iter().filter_map(|b| if let Bound::Buffer(b) = b { Some(b) } else { None });
        if let Some(b) = buffers.find(|b| b.size() > binding) {
            return Err(Error::Gpu(format!(
                "{}: a buffer of {} MiB is bound, over the device's maxStorageBufferBindingSize of {} MiB",
                kernel.name,
                b.size() >> 20,
                binding >> 20
            )));
        }
        Ok(())
    }

    /// The per-dispatch times recorded since the device was opened with `SPHINX_PROFILE=1` (native
    /// only; each dispatch is then submitted and waited for on its own, which serialises the GPU —
    /// for finding slow kernels, not for throughput):
    /// `(kernel and grid, calls, seconds)`, slowest first.
    pub fn profile_report(&self) -> Vec<(String, u32, f64)> {
        let mut rows: Vec<_> = match &self.profile {
            Some(p) => lock(p).iter().map(|(k, v)| (k.clone(), v.0, v.1)).collect(),
            None => Vec::new(),
        };
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        rows
    }

    /// Records a buffer-to-buffer copy (byte offsets and size multiples of 4).
    pub fn copy(&self, src: &wgpu::Buffer, src_offset: u64, dst: &wgpu::Buffer, dst_offset: u64, size: u64) {
        if size == 0 {
            return;
        }
        let mut batch = lock(&self.batch);
        self.encoder(&mut batch.encoder).copy_buffer_to_buffer(src, src_offset, dst, dst_offset, size);
    }

    /// The command encoder work is being recorded into (a new one after a submit).
    fn encoder<'a>(&self, slot: &'a mut Option<wgpu::CommandEncoder>) -> &'a mut wgpu::CommandEncoder {
        slot.get_or_insert_with(|| self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }))
    }

    fn submit(&self, batch: &mut Batch) {
        if let Some(encoder) = batch.encoder.take() {
            if !batch.params.is_empty() {
                self.queue.write_buffer(&batch.arena, 0, &batch.params);
            }
            self.queue.submit([encoder.finish()]);
        }
        batch.params.clear();
        batch.dispatches = 0;
    }

    /// Submits everything recorded so far.
    pub fn flush(&self) {
        let mut batch = lock(&self.batch);
        self.submit(&mut batch);
    }

    /// Reads `len` bytes at `offset` of a buffer back to the host, after all recorded work.
    pub async fn read(&self, buffer: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<u8>> {
        let size = len.div_ceil(4) * 4;
        if size == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut batch = lock(&self.batch);
            self.encoder(&mut batch.encoder).copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
            self.submit(&mut batch);
        }
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("poll: {e}")))?;
        let mapped = rx.await.map_err(|_| Error::Gpu("readback cancelled".into()))?;
        self.check_error()?;
        mapped.map_err(|e| Error::Gpu(format!("map_async: {e}")))?;
        let data = {
            let view = staging.get_mapped_range(..).map_err(|e| Error::Gpu(format!("mapped range: {e}")))?;
            view[..len as usize].to_vec()
        };
        staging.unmap();
        Ok(data)
    }

    /// Waits until the GPU has finished everything recorded so far (native only; a no-op in wasm).
    pub fn sync(&self) -> Result<()> {
        self.flush();
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("poll: {e}")))?;
        self.check_error()
    }

    /// How [`Gpu::time`] measures: "timestamp-query" or "wall-clock".
    pub fn timer_name(&self) -> &'static str {
        if self.info.timestamps {
            "timestamp-query"
        } else {
            "wall-clock"
        }
    }

    /// Seconds the GPU spends on the dispatches `record` makes: from the start of the first compute
    /// pass to the end of the last by timestamp queries where the adapter has them, else the wall
    /// time from submitting to completion (everything recorded before is finished first).
    pub async fn time<F: FnMut() -> Result<()>>(&self, mut record: F) -> Result<f64> {
        self.idle().await?;
        if !self.info.timestamps {
            let t0 = web_time::Instant::now();
            record()?;
            self.idle().await?;
            return Ok(t0.elapsed().as_secs_f64());
        }
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("timing"), ty: wgpu::QueryType::Timestamp, count: 2 });
        lock(&self.batch).timing = Some((set, true));
        let recorded = record();
        let Some((set, _)) = lock(&self.batch).timing.take() else {
            return Err(Error::Gpu("timing state lost".into()));
        };
        recorded?;
        let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        {
            let mut batch = lock(&self.batch);
            self.encoder(&mut batch.encoder).resolve_query_set(&set, 0..2, &resolved, 0);
        }
        let bytes = self.read(&resolved, 0, 16).await?;
        let t: &[u64] = bytemuck::cast_slice(&bytes);
        Ok(t[1].saturating_sub(t[0]) as f64 * self.queue.get_timestamp_period() as f64 * 1e-9)
    }

    /// Waits until everything recorded so far has run (natively by polling, in the browser through
    /// the queue's completion callback).
    pub async fn idle(&self) -> Result<()> {
        self.flush();
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("poll: {e}")))?;
        rx.await.map_err(|_| Error::Gpu("the GPU queue was dropped".into()))?;
        self.check_error()
    }

    /// Workgroup counts for `threads` invocations in groups of `wg`, folded into x/y so that no
    /// dimension passes the limit. Kernels rebuild the index as `gid.x + gid.y * nwg.x * wg`.
    pub fn grid(&self, threads: u64, wg: u32) -> [u32; 3] {
        let groups = threads.div_ceil(wg as u64);
        let max = self.limits.max_compute_workgroups_per_dimension as u64;
        if groups <= max {
            [groups as u32, 1, 1]
        } else {
            let y = groups.div_ceil(max);
            [groups.div_ceil(y) as u32, y as u32, 1]
        }
    }
}

/// The bytes of the pooled buffer `alloc` hands out for `size` bytes, the class it is reused by: at
/// most 1/8 of the power of two above the size is wasted.
pub fn size_class(size: u64) -> u64 {
    let b = size.max(256);
    let hi = b.next_power_of_two();
    let step = (hi / 8).max(256);
    b.div_ceil(step) * step
}

/// What a dispatch binds after its params: a storage buffer or a texture.
pub enum Bound<'a> {
    Buffer(&'a wgpu::Buffer),
    Texture(&'a Texels),
}

/// A 2D texture of 4 × u32 texels (`texture_2d<u32>` in WGSL) holding bytes written row by row.
pub struct Texels {
    pub texture: wgpu::Texture,
    pub view: wgpu::TextureView,
    pub width: u32,
    pub height: u32,
}

impl Gpu {
    /// A `width` × `height` texture of 16-byte texels (contents undefined), within the device's
    /// texture side and the WebGPU row-pitch alignment (256 bytes: `width` a multiple of 16).
    fn texture(&self, width: u32, height: u32) -> Result<Texels> {
        let side = self.limits.max_texture_dimension_2d;
        if width == 0 || height == 0 || width.max(height) > side || !width.is_multiple_of(16) {
            return Err(Error::Gpu(format!("texels {width}x{height}: sides past {side}, empty, or rows not a multiple of 256 bytes")));
        }
        let texture = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("texels"),
            size: wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Uint,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        Ok(Texels { texture, view, width, height })
    }

    fn texel_layout(t: &Texels) -> (wgpu::TexelCopyBufferLayout, wgpu::Extent3d) {
        let layout = wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(t.width * 16), rows_per_image: Some(t.height) };
        (layout, wgpu::Extent3d { width: t.width, height: t.height, depth_or_array_layers: 1 })
    }

    /// A texture holding `data` (exactly `width` × `height` texels of 16 bytes, row by row).
    pub fn texels(&self, width: u32, height: u32, data: &[u8]) -> Result<Texels> {
        if data.len() as u64 != width as u64 * height as u64 * 16 {
            return Err(Error::Gpu(format!("texels {width}x{height} of 16 bytes for {} bytes", data.len())));
        }
        let t = self.texture(width, height)?;
        let (layout, size) = Self::texel_layout(&t);
        self.flush();
        self.queue.write_texture(t.texture.as_image_copy(), data, layout, size);
        Ok(t)
    }

    /// A texture holding the first `width` × `height` × 16 bytes of `src`, copied in the order of
    /// the recorded work (what the kernels recorded so far wrote there is what it holds).
    pub fn texels_from(&self, src: &wgpu::Buffer, width: u32, height: u32) -> Result<Texels> {
        if width as u64 * height as u64 * 16 > src.size() {
            return Err(Error::Gpu(format!("texels {width}x{height} from a buffer of {} bytes", src.size())));
        }
        let t = self.texture(width, height)?;
        let (layout, size) = Self::texel_layout(&t);
        let mut batch = lock(&self.batch);
        self.encoder(&mut batch.encoder).copy_buffer_to_texture(wgpu::TexelCopyBufferInfo { buffer: src, layout }, t.texture.as_image_copy(), size);
        Ok(t)
    }
}

/// A storage buffer that goes back to the pool when dropped (pooled) or is freed (weights).
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    /// Bytes in use (the buffer itself may be larger).
    pub len: u64,
    pooled: bool,
    gpu: Arc<Gpu>,
}

impl GpuBuffer {
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }
    /// The allocated size in bytes (≥ len).
    pub fn capacity(&self) -> u64 {
        self.buffer().size()
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            // Not destroyed: recorded or in-flight work may still read it; wgpu frees it after.
            if self.pooled {
                lock(&self.gpu.pool).entry(b.size()).or_default().push(b);
            } else {
                self.gpu.memory.sub(b.size());
            }
        }
    }
}
