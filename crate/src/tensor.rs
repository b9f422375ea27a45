//! `Tensor`: a contiguous row-major f32 array on the CPU or in a GPU buffer, and the `Device` it lives on.
//!
//! Kernels (`crate::kernels`) take tensors and dispatch on where they live: the WGSL kernel for GPU
//! tensors, its CPU twin for CPU tensors. Views are expressed as offsets/strides in kernel calls,
//! never as aliasing tensors.

use crate::runtime::{Gpu, GpuBuffer};
use crate::{Error, Result};
use std::sync::Arc;

/// Where tensors live and kernels run.
#[derive(Clone)]
pub enum Device {
    Cpu,
    Gpu(Arc<Gpu>),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Gpu(g) => write!(f, "gpu ({}, {})", g.info.name, g.info.backend),
        }
    }
}

/// Which device a run asks for (`--device`, `loadSphinx`'s `device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The GPU unless there is none or only a software one ([`Device::choose`]).
    Auto,
    Gpu,
    Cpu,
}

impl DeviceChoice {
    pub fn parse(s: &str) -> Result<DeviceChoice> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "gpu" => Ok(DeviceChoice::Gpu),
            "cpu" => Ok(DeviceChoice::Cpu),
            other => Err(Error::Config(format!("device {other:?}: expected auto, gpu or cpu"))),
        }
    }
}

impl Device {
    /// `"cpu"` or `"gpu"`; `gpu` fails when no adapter exists (never a silent CPU fall-back).
    pub async fn from_name(name: &str) -> Result<Device> {
        Device::from_name_with(name, crate::runtime::LimitsChoice::Adapter).await
    }

    /// [`Device::from_name`]; a GPU device is opened with the limits `limits` asks for.
    pub async fn from_name_with(name: &str, limits: crate::runtime::LimitsChoice) -> Result<Device> {
        Ok(Device::choose(name, limits).await?.0)
    }

    /// The device `name` asks for, and why it was chosen: "gpu" (an error when no adapter exists),
    /// "cpu", or "auto" — the GPU unless there is no adapter or only a software one (llvmpipe,
    /// SwiftShader, WARP: the CPU backend is faster than an emulated GPU).
    pub async fn choose(name: &str, limits: crate::runtime::LimitsChoice) -> Result<(Device, String)> {
        match DeviceChoice::parse(name)? {
            DeviceChoice::Cpu => Ok((Device::Cpu, "the CPU was asked for".into())),
            DeviceChoice::Gpu => Ok((Device::Gpu(Gpu::new_with(limits).await?), "the GPU was asked for".into())),
            DeviceChoice::Auto => Ok(match Gpu::new_with(limits).await {
                Err(e) => (Device::Cpu, format!("no usable GPU ({e})")),
                Ok(g) if g.info.software => {
                    let why = format!("the only GPU adapter is a software one ({}), slower than the CPU backend", g.info.name);
                    (Device::Cpu, why)
                }
                Ok(g) => {
                    let why = format!("a GPU adapter ({})", g.info.name);
                    (Device::Gpu(g), why)
                }
            }),
        }
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }

    /// Runs one phase of work (an image encode, a prefill, a decode step) on this device: on the
    /// CPU from a thread of its pool ([`crate::cpu::on_pool`]), on a GPU where it is called.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        match self {
            Device::Cpu => crate::cpu::on_pool(f),
            Device::Gpu(_) => f(),
        }
    }

    /// Frees the GPU's idle pooled buffers. The models call it between phases whose shapes differ
    /// (ConvNeXt stages, vision towers, the decoder) so one phase's sizes do not pile up under the
    /// next's and the peak is the largest phase's working set; nothing to do on the CPU.
    pub fn release_idle(&self) {
        if let Device::Gpu(g) = self {
            g.flush(); // recorded work is submitted, so the freed buffers go once it has run
            g.trim_pool();
        }
    }

    /// Waits for queued GPU work (for timing); nothing to do on the CPU.
    pub fn sync(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Gpu(g) => g.sync(),
        }
    }
}

pub enum Data {
    Cpu(Vec<f32>),
    Gpu(GpuBuffer),
}

pub struct Tensor {
    shape: Vec<usize>,
    data: Data,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match &self.data {
            Data::Cpu(_) => "cpu",
            Data::Gpu(_) => "gpu",
        };
        write!(f, "Tensor{:?} on {place}", self.shape)
    }
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A tensor holding `data` on `device`.
    pub fn from_vec(device: &Device, shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        if numel(shape) != data.len() {
            return Err(Error::Shape(format!("shape {shape:?} needs {} values, got {}", numel(shape), data.len())));
        }
        let data = match device {
            Device::Cpu => Data::Cpu(data),
            Device::Gpu(g) => Data::Gpu(g.upload(bytemuck::cast_slice(&data))?),
        };
        Ok(Tensor { shape: shape.to_vec(), data })
    }

    pub fn from_slice(device: &Device, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        match device {
            Device::Cpu => Tensor::from_vec(device, shape, data.to_vec()),
            Device::Gpu(g) => {
                if numel(shape) != data.len() {
                    return Err(Error::Shape(format!("shape {shape:?} needs {} values, got {}", numel(shape), data.len())));
                }
                Ok(Tensor { shape: shape.to_vec(), data: Data::Gpu(g.upload(bytemuck::cast_slice(data))?) })
            }
        }
    }

    /// A tensor from little-endian f32 bytes; on the GPU the bytes are uploaded as they are (no
    /// f32 copy on the host).
    pub fn from_le_bytes(device: &Device, shape: &[usize], bytes: &[u8]) -> Result<Tensor> {
        if numel(shape) * 4 != bytes.len() {
            return Err(Error::Shape(format!("shape {shape:?} needs {} bytes, got {}", numel(shape) * 4, bytes.len())));
        }
        let data = match device {
            Device::Cpu => Data::Cpu(bytemuck::pod_collect_to_vec(bytes)),
            Device::Gpu(g) => Data::Gpu(g.upload(bytes)?),
        };
        Ok(Tensor { shape: shape.to_vec(), data })
    }

    /// An uninitialised (GPU: pooled, contents undefined; CPU: zeroed) tensor for a kernel to fill.
    pub fn empty(device: &Device, shape: &[usize]) -> Result<Tensor> {
        let n = numel(shape);
        let data = match device {
            Device::Cpu => Data::Cpu(vec![0.0; n]),
            Device::Gpu(g) => Data::Gpu(g.alloc((n * 4) as u64).map_err(|e| Error::Gpu(format!("tensor {shape:?}: {e}")))?),
        };
        Ok(Tensor { shape: shape.to_vec(), data })
    }

    /// A zero-filled tensor.
    pub fn zeros(device: &Device, shape: &[usize]) -> Result<Tensor> {
        match device {
            Device::Cpu => Tensor::empty(device, shape),
            Device::Gpu(_) => Tensor::from_vec(device, shape, vec![0.0; numel(shape)]),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Size of the last dimension (the contiguous one).
    pub fn last_dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Number of rows when viewed as a matrix [rows, last_dim].
    pub fn rows(&self) -> usize {
        self.numel() / self.last_dim().max(1)
    }

    pub fn device(&self) -> Device {
        match &self.data {
            Data::Cpu(_) => Device::Cpu,
            Data::Gpu(b) => Device::Gpu(b.gpu().clone()),
        }
    }

    pub fn data(&self) -> &Data {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut Data {
        &mut self.data
    }

    /// The CPU values (None for a GPU tensor).
    pub fn cpu(&self) -> Option<&[f32]> {
        match &self.data {
            Data::Cpu(v) => Some(v),
            Data::Gpu(_) => None,
        }
    }
    pub fn cpu_mut(&mut self) -> Option<&mut Vec<f32>> {
        match &mut self.data {
            Data::Cpu(v) => Some(v),
            Data::Gpu(_) => None,
        }
    }
    pub fn gpu(&self) -> Option<&GpuBuffer> {
        match &self.data {
            Data::Gpu(b) => Some(b),
            Data::Cpu(_) => None,
        }
    }

    /// Same data, new shape with the same number of elements.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::Shape(format!("cannot reshape {:?} to {shape:?}", self.shape)));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Test support: a smaller view of the same buffer (the rest is a guard region).
    #[cfg(test)]
    pub(crate) fn reshape_unchecked(mut self, shape: &[usize]) -> Tensor {
        self.shape = shape.to_vec();
        self
    }

    /// Checks the shape, naming `what` in the error.
    pub fn expect_shape(&self, what: &str, shape: &[usize]) -> Result<()> {
        if self.shape != shape {
            return Err(Error::Shape(format!("{what}: expected {shape:?}, got {:?}", self.shape)));
        }
        Ok(())
    }

    /// Copies the values to the host.
    pub async fn to_vec(&self) -> Result<Vec<f32>> {
        match &self.data {
            Data::Cpu(v) => Ok(v.clone()),
            Data::Gpu(b) => {
                let bytes = b.gpu().read(b.buffer(), 0, (self.numel() * 4) as u64).await?;
                Ok(bytemuck::pod_collect_to_vec(&bytes))
            }
        }
    }

    /// Copies rows `start..start+n` of the [rows, last_dim] view to the host.
    pub async fn rows_to_vec(&self, start: usize, n: usize) -> Result<Vec<f32>> {
        let c = self.last_dim();
        if start + n > self.rows() {
            return Err(Error::Shape(format!("rows {start}..{} of {:?}", start + n, self.shape)));
        }
        match &self.data {
            Data::Cpu(v) => Ok(v[start * c..(start + n) * c].to_vec()),
            Data::Gpu(b) => {
                let bytes = b.gpu().read(b.buffer(), (start * c * 4) as u64, (n * c * 4) as u64).await?;
                Ok(bytemuck::pod_collect_to_vec(&bytes))
            }
        }
    }

    /// Overwrites the values from the host (sizes must match).
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        if values.len() != self.numel() {
            return Err(Error::Shape(format!("write of {} values into {:?}", values.len(), self.shape)));
        }
        match &mut self.data {
            Data::Cpu(v) => v.copy_from_slice(values),
            Data::Gpu(b) => b.gpu().write(b.buffer(), 0, bytemuck::cast_slice(values)),
        }
        Ok(())
    }

    /// A deep copy on the same device.
    pub fn try_clone(&self) -> Result<Tensor> {
        match &self.data {
            Data::Cpu(v) => Ok(Tensor { shape: self.shape.clone(), data: Data::Cpu(v.clone()) }),
            Data::Gpu(b) => {
                let out = b.gpu().alloc(b.len)?;
                b.gpu().copy(b.buffer(), 0, out.buffer(), 0, b.len.div_ceil(4) * 4);
                Ok(Tensor { shape: self.shape.clone(), data: Data::Gpu(out) })
            }
        }
    }
}

/// All tensors of one kernel call on the same device: returns it, or a clear error.
pub fn same_device(op: &str, tensors: &[&Tensor]) -> Result<Device> {
    let first = tensors.first().map(|t| t.device()).unwrap_or(Device::Cpu);
    for t in tensors {
        if t.device().is_gpu() != first.is_gpu() {
            return Err(Error::Shape(format!("{op}: tensors on different devices")));
        }
    }
    Ok(first)
}
