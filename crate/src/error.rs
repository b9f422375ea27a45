//! The one error type of the crate. Every message names the file, tensor or field at fault.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// An I/O failure on a named path.
    Io { path: String, source: std::io::Error },
    /// A malformed or unsupported input file (checkpoint, config, image, tokenizer...).
    Format { path: String, msg: String },
    /// A pickle that asks for anything beyond a plain torch state dict.
    UnsafePickle(String),
    /// Tensors missing, unused or misshaped when a model is loaded.
    Weights(String),
    /// A shape mismatch inside the model or a kernel call.
    Shape(String),
    /// A bad configuration value.
    Config(String),
    /// No usable GPU, or a GPU call failed.
    Gpu(String),
    /// Anything else, with a message.
    Msg(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{path}: {source}"),
            Error::Format { path, msg } => write!(f, "{path}: {msg}"),
            Error::UnsafePickle(m) => write!(f, "refused pickle: {m}"),
            Error::Weights(m) => write!(f, "weights: {m}"),
            Error::Shape(m) => write!(f, "shape: {m}"),
            Error::Config(m) => write!(f, "config: {m}"),
            Error::Gpu(m) => write!(f, "gpu: {m}"),
            Error::Msg(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
    pub fn format(path: impl fmt::Display, msg: impl fmt::Display) -> Self {
        Error::Format { path: path.to_string(), msg: msg.to_string() }
    }
}

/// `bail!`-style helper: `return Err(Error::Msg(format!(...)))`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error::Msg(format!($($arg)*))) };
}
