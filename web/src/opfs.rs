//! Shard reads from the Origin Private File System: a `ShardReader` over one
//! `FileSystemSyncAccessHandle` per shard (synchronous reads, available in dedicated workers), so that
//! the model is built tensor by tensor straight from the browser's storage while each tensor is
//! uploaded to the GPU — the wasm heap holds one tensor at a time, never the model.

use sphinx::io::converted::ShardReader;
use sphinx::{Error, Result};
use wasm_bindgen::prelude::*;
use web_sys::{FileSystemReadWriteOptions, FileSystemSyncAccessHandle};

pub struct OpfsShards {
    /// One open handle per shard of the manifest, in order.
    handles: Vec<FileSystemSyncAccessHandle>,
    names: Vec<String>,
    /// Called with (bytes read so far, total bytes) after every read.
    on_read: js_sys::Function,
    read: f64,
    total: f64,
}

impl OpfsShards {
    pub fn new(handles: Vec<FileSystemSyncAccessHandle>, names: Vec<String>, total: u64, on_read: js_sys::Function) -> OpfsShards {
        OpfsShards { handles, names, on_read, read: 0.0, total: total as f64 }
    }
}

fn js_message(v: &JsValue) -> String {
    js_sys::Reflect::get(v, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_else(|| format!("{v:?}"))
}

impl ShardReader for OpfsShards {
    fn read_at(&mut self, shard: usize, offset: u64, buf: &mut [u8]) -> Result<()> {
        let (Some(handle), Some(name)) = (self.handles.get(shard), self.names.get(shard)) else {
            return Err(Error::Msg(format!("shard {shard} is not open ({} shards)", self.handles.len())));
        };
        let opts = FileSystemReadWriteOptions::new();
        let mut done = 0usize;
        while done < buf.len() {
            opts.set_at((offset + done as u64) as f64);
            // SAFETY: the view aliases `buf` inside wasm memory and lives only for this call, during
            // which nothing allocates in wasm (so the memory cannot grow and detach it).
            let view = unsafe { js_sys::Uint8Array::view_mut_raw(buf[done..].as_mut_ptr(), buf.len() - done) };
            let n = handle
                .read_with_js_u8_array_and_options(&view, &opts)
                .map_err(|e| Error::Msg(format!("{name}: OPFS read at {}: {}", offset + done as u64, js_message(&e))))?;
            if n <= 0.0 {
                return Err(Error::Msg(format!(
                    "{name}: the stored shard ends at {} (wanted {} bytes at {offset}); clear the cache and load again",
                    offset + done as u64,
                    buf.len()
                )));
            }
            done += n as usize;
        }
        self.read += buf.len() as f64;
        let _ = self.on_read.call2(&JsValue::NULL, &JsValue::from_f64(self.read), &JsValue::from_f64(self.total));
        Ok(())
    }
}
