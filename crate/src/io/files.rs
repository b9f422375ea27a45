//! Opening input files without being held by them: regular files only, opened without blocking.
//! A FIFO, a character device or a socket named where a file is expected (a model shard, an
//! `--image`, a served path) is refused before a byte is read: `open` with `O_NONBLOCK` (Unix)
//! returns at once even for a FIFO with no writer, and the type is then checked on the open file,
//! so nothing swapped in between the check and the read can block the caller.

use crate::{Error, Result};
use std::fs::{File, Metadata, OpenOptions};
use std::path::Path;

/// What a non-regular file is, in words.
pub fn kind_of(meta: &Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else if meta.is_file() {
        "a regular file"
    } else {
        "not a file"
    }
}

/// Opens `p` for reading without blocking (`O_NONBLOCK` on Unix: a FIFO with no writer opens at
/// once instead of waiting for one). Regular files read as usual with the flag set.
pub fn open_nonblocking(p: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(p)
}

/// Opens `p` as a regular file, refusing folders, devices, FIFOs and sockets before reading (and
/// before opening them where `stat` already tells). Returns the file and its size.
pub fn open_regular(p: &Path) -> Result<(File, u64)> {
    let not_regular = |what: &str| Error::format(p.display(), format!("is {what}, not a regular file"));
    let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
    if !meta.is_file() {
        return Err(not_regular(if meta.is_dir() { "a folder" } else { "a device, FIFO or socket" }));
    }
    let f = open_nonblocking(p).map_err(|e| Error::io(p, e))?;
    let meta = f.metadata().map_err(|e| Error::io(p, e))?;
    if !meta.is_file() {
        return Err(not_regular(&format!("no longer a file ({})", kind_of(&meta))));
    }
    Ok((f, meta.len()))
}

/// Reads up to `buf.len()` bytes from the start of `f` (fewer only at its end).
pub fn read_head(f: &mut File, p: &Path, buf: &mut [u8]) -> Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(p, e)),
        }
    }
    Ok(n)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn fifos_are_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("sphinx-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // opening a FIFO with no writer returns at once
        let f = open_nonblocking(&fifo).unwrap();
        assert_eq!(kind_of(&f.metadata().unwrap()), "a FIFO");
        let e = open_regular(&fifo).unwrap_err().to_string();
        assert!(e.ends_with("fifo: is a device, FIFO or socket, not a regular file"), "{e}");
        let e = open_regular(&dir).unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");
        std::fs::write(dir.join("f"), b"0123456789").unwrap();
        let (mut f, len) = open_regular(&dir.join("f")).unwrap();
        let mut head = [0u8; 4];
        assert_eq!((len, read_head(&mut f, &dir, &mut head).unwrap(), &head), (10, 4, b"0123"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
