//! Named-tensor access for model loaders, scoped like candle's VarBuilder: `w.pp("layers").pp(3)`.
//!
//! The loader proves coverage: every tensor a model asks for must exist with the expected shape,
//! and `finish()` fails listing every tensor of the checkpoint that no layer used.

use crate::io::quant::Packed;
use crate::io::TensorSource;
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

struct Inner {
    source: Box<dyn TensorSource>,
    used: BTreeSet<String>,
    /// Present in checkpoints but not used by inference (upstream leftovers).
    ignored: BTreeSet<String>,
}

#[derive(Clone)]
pub struct Weights {
    inner: Rc<RefCell<Inner>>,
    prefix: String,
    device: Device,
    precision: super::Precision,
    rows: super::Rows,
}

impl Weights {
    pub fn new(source: Box<dyn TensorSource>, device: Device) -> Weights {
        Weights {
            inner: Rc::new(RefCell::new(Inner { source, used: BTreeSet::new(), ignored: BTreeSet::new() })),
            prefix: String::new(),
            device,
            precision: super::Precision::F32,
            rows: super::Rows::Both,
        }
    }

    /// The same scope, for layers that see `rows` (a hint for autotuning: which row classes of their
    /// matrix products to tune).
    pub fn with_rows(&self, rows: super::Rows) -> Weights {
        Weights { rows, ..self.clone() }
    }

    pub fn rows(&self) -> super::Rows {
        self.rows
    }

    /// The same weights for a model built at `precision`.
    pub fn with_precision(mut self, precision: super::Precision) -> Weights {
        self.precision = precision;
        self
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn precision(&self) -> super::Precision {
        self.precision
    }

    /// A sub-scope: `pp("layers").pp(3)` → names under `layers.3.`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Weights {
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        Weights { inner: self.inner.clone(), prefix, device: self.device.clone(), precision: self.precision, rows: self.rows }
    }

    /// The full name of `name` in this scope.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.inner.borrow().source.shape(&self.path(name)).is_some()
    }

    /// The shape of a tensor, or a "missing tensor" error.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let full = self.path(name);
        let inner = self.inner.borrow();
        inner
            .source
            .shape(&full)
            .ok_or_else(|| Error::Weights(format!("missing tensor {full} in {}", inner.source.describe())))
    }

    /// The first dimension of a tensor (a width the loaders read from the shape), or an error naming
    /// the tensor when it has no dimensions or a zero first one.
    pub fn leading_dim(&self, name: &str) -> Result<usize> {
        match self.shape(name)?.first() {
            Some(&n) if n > 0 => Ok(n),
            _ => Err(Error::Weights(format!("tensor {}: shape {:?} has no leading dimension of at least 1", self.path(name), self.shape(name)?))),
        }
    }

    /// How many numbered children `name.0`, `name.1`, ... exist (layers, blocks); they must be 0..n.
    pub fn count(&self, name: &str) -> Result<usize> {
        let prefix = format!("{}.", self.path(name));
        let inner = self.inner.borrow();
        let mut seen = BTreeSet::new();
        for n in inner.source.names() {
            if let Some(rest) = n.strip_prefix(&prefix) {
                if let Some(idx) = rest.split('.').next().and_then(|s| s.parse::<usize>().ok()) {
                    seen.insert(idx);
                }
            }
        }
        let n = seen.len();
        if seen.iter().copied().ne(0..n) {
            return Err(Error::Weights(format!("{prefix}N: indices {seen:?} are not 0..{n}")));
        }
        Ok(n)
    }

    /// The host values of a tensor, checking its shape.
    pub fn values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = self.path(name);
        let have = self.shape(name)?;
        if have != shape {
            return Err(Error::Weights(format!("tensor {full}: expected shape {shape:?}, checkpoint has {have:?}")));
        }
        let mut inner = self.inner.borrow_mut();
        if !inner.used.insert(full.clone()) {
            return Err(Error::Weights(format!("tensor {full} loaded twice")));
        }
        let v = inner.source.read_f32(&full)?;
        if v.len() != have.iter().product::<usize>() {
            return Err(Error::Weights(format!("tensor {full}: {} values for shape {have:?}", v.len())));
        }
        Ok(v)
    }

    /// A weight as stored (f32, f16, q8 or q4), checking its logical shape; viewed as
    /// [shape[0], product of the rest].
    pub fn packed(&self, name: &str, shape: &[usize]) -> Result<Packed> {
        let full = self.path(name);
        let have = self.shape(name)?;
        if have != shape {
            return Err(Error::Weights(format!("tensor {full}: expected shape {shape:?}, checkpoint has {have:?}")));
        }
        let mut inner = self.inner.borrow_mut();
        if !inner.used.insert(full.clone()) {
            return Err(Error::Weights(format!("tensor {full} loaded twice")));
        }
        inner.source.read_packed(&full)
    }

    /// A tensor on the device, checking its shape.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let v = self.values(name, shape)?;
        Tensor::from_vec(&self.device, shape, v)
    }

    /// Declares a checkpoint tensor that inference does not use (e.g. DINOv2's mask_token).
    pub fn ignore(&self, name: &str) {
        let full = self.path(name);
        self.inner.borrow_mut().ignored.insert(full);
    }

    /// Fails if the source's files do not verify, or, listing them, if tensors of the checkpoint
    /// were never used.
    pub fn finish(&self) -> Result<()> {
        self.inner.borrow_mut().source.finish()?;
        let inner = self.inner.borrow();
        let unused: Vec<String> = inner
            .source
            .names()
            .into_iter()
            .filter(|n| !inner.used.contains(n) && !inner.ignored.contains(n))
            .collect();
        if unused.is_empty() {
            Ok(())
        } else {
            Err(Error::Weights(format!(
                "{} unused tensor(s) in {}: {}",
                unused.len(),
                inner.source.describe(),
                unused.join(", ")
            )))
        }
    }
}

/// An in-memory source (tests, the demo model generator).
pub struct MemorySource {
    pub name: String,
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl TensorSource for MemorySource {
    fn describe(&self) -> String {
        self.name.clone()
    }
    fn names(&self) -> Vec<String> {
        self.tensors.iter().map(|t| t.0.clone()).collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.iter().find(|t| t.0 == name).map(|t| t.1.clone())
    }
    fn read_f32(&mut self, name: &str) -> Result<Vec<f32>> {
        self.tensors
            .iter()
            .find(|t| t.0 == name)
            .map(|t| t.2.clone())
            .ok_or_else(|| Error::Weights(format!("missing tensor {name} in {}", self.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Box<dyn TensorSource> {
        Box::new(MemorySource {
            name: "mem".into(),
            tensors: vec![
                ("a.layers.0.w".into(), vec![2, 3], vec![0.0; 6]),
                ("a.layers.1.w".into(), vec![2, 3], vec![0.0; 6]),
                ("a.extra".into(), vec![1], vec![0.0]),
            ],
        })
    }

    #[test]
    fn scoping_counting_and_coverage() {
        let w = Weights::new(source(), Device::Cpu);
        let a = w.pp("a");
        assert_eq!(a.count("layers").unwrap(), 2);
        assert!(a.pp("layers").pp(0).tensor("w", &[2, 3]).is_ok());
        let e = a.pp("layers").pp(1).tensor("w", &[3, 2]).unwrap_err().to_string();
        assert!(e.contains("a.layers.1.w") && e.contains("[3, 2]") && e.contains("[2, 3]"), "{e}");
        let e = a.tensor("missing", &[1]).unwrap_err().to_string();
        assert_eq!(a.pp("layers").pp(0).leading_dim("w").unwrap(), 2);
        assert!(e.contains("missing tensor a.missing"), "{e}");
        let e = w.finish().unwrap_err().to_string();
        assert!(e.contains("a.extra") && e.contains("a.layers.1.w"), "{e}");
        a.ignore("extra");
        a.pp("layers").pp(1).tensor("w", &[2, 3]).unwrap();
        w.finish().unwrap();
    }
}
