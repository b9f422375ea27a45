//! Minimal protobuf wire-format reader and writer: just what sentencepiece's `ModelProto`
//! (google/sentencepiece `src/sentencepiece_model.proto`) needs. No schema, no protobuf crate.
//!
//! Wire types handled: 0 (varint), 1 (64-bit), 2 (length-delimited), 5 (32-bit). Groups (3, 4) are
//! long deprecated and never used by sentencepiece; they are refused.

use crate::error::{Error, Result};

/// One field value as it sits on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    /// A varint read as proto `int32` (negative values are sign-extended 10-byte varints).
    pub fn as_i32(&self, name: &str, field: &str) -> Result<i32> {
        match *self {
            Value::Varint(v) => Ok(v as i64 as i32),
            _ => Err(Error::format(name, format!("field {field}: expected a varint, got {self:?}"))),
        }
    }

    pub fn as_u64(&self, name: &str, field: &str) -> Result<u64> {
        match *self {
            Value::Varint(v) => Ok(v),
            _ => Err(Error::format(name, format!("field {field}: expected a varint, got {self:?}"))),
        }
    }

    pub fn as_bool(&self, name: &str, field: &str) -> Result<bool> {
        Ok(self.as_u64(name, field)? != 0)
    }

    pub fn as_f32(&self, name: &str, field: &str) -> Result<f32> {
        match *self {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            _ => Err(Error::format(name, format!("field {field}: expected a 32-bit float, got {self:?}"))),
        }
    }

    pub fn as_bytes(&self, name: &str, field: &str) -> Result<&'a [u8]> {
        match *self {
            Value::Bytes(b) => Ok(b),
            _ => Err(Error::format(name, format!("field {field}: expected bytes, got {self:?}"))),
        }
    }

    pub fn as_string(&self, name: &str, field: &str) -> Result<String> {
        let b = self.as_bytes(name, field)?;
        String::from_utf8(b.to_vec()).map_err(|e| Error::format(name, format!("field {field}: not UTF-8 ({e})")))
    }
}

/// Iterates over the fields of one message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// File name (or message path) used in error messages.
    name: &'a str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], name: &'a str) -> Self {
        Reader { buf, pos: 0, name }
    }

    fn varint(&mut self) -> Result<u64> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(Error::format(self.name, format!("truncated varint at byte {start}")));
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(Error::format(self.name, format!("varint overflows 64 bits at byte {start}")));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Error::format(self.name, format!("varint longer than 10 bytes at byte {start}")))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            Error::format(
                self.name,
                format!("field of {n} bytes at byte {} runs past the end ({} bytes)", self.pos, self.buf.len()),
            )
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next `(field number, value)`, or `None` at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let at = self.pos;
        let key = self.varint()?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::format(self.name, format!("bad field number {} at byte {at}", key >> 3)))?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len)
                    .map_err(|_| Error::format(self.name, format!("length {len} too large at byte {at}")))?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Value::Fixed32(u32::from_le_bytes(a))
            }
            w => {
                return Err(Error::format(
                    self.name,
                    format!("unsupported wire type {w} (field {number}) at byte {at}; not a protobuf ModelProto?"),
                ))
            }
        };
        Ok(Some((number, value)))
    }
}

/// Appends protobuf fields to a buffer (used to re-serialise a `ModelProto`).
#[derive(Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(b);
                return;
            }
            self.buf.push(b | 0x80);
        }
    }

    fn key(&mut self, number: u32, wire: u64) {
        self.varint((u64::from(number) << 3) | wire);
    }

    pub fn uint(&mut self, number: u32, v: u64) {
        self.key(number, 0);
        self.varint(v);
    }

    /// proto `int32`: negative values are written sign-extended to 64 bits, as protoc does.
    pub fn int32(&mut self, number: u32, v: i32) {
        self.uint(number, v as i64 as u64);
    }

    pub fn bool(&mut self, number: u32, v: bool) {
        self.uint(number, u64::from(v));
    }

    pub fn float(&mut self, number: u32, v: f32) {
        self.key(number, 5);
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    pub fn bytes(&mut self, number: u32, b: &[u8]) {
        self.key(number, 2);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_wire_types() -> Result<()> {
        let mut w = Writer::default();
        w.int32(1, -1);
        w.uint(2, 300);
        w.float(3, -2.5);
        w.bytes(4, b"\xe2\x96\x81t");
        w.bool(5, true);
        let mut r = Reader::new(&w.buf, "test");
        let mut got = vec![];
        while let Some(f) = r.next_field()? {
            got.push(f);
        }
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].1.as_i32("t", "a")?, -1);
        assert_eq!(got[1].1.as_u64("t", "b")?, 300);
        assert_eq!(got[2].1.as_f32("t", "c")?, -2.5);
        assert_eq!(got[3].1.as_string("t", "d")?, "▁t");
        assert!(got[4].1.as_bool("t", "e")?);
        Ok(())
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut w = Writer::default();
        w.bytes(1, b"hello");
        for cut in 0..w.buf.len() {
            let mut r = Reader::new(&w.buf[..cut], "cut.model");
            let mut res = Ok(None);
            for _ in 0..3 {
                res = r.next_field();
                if !matches!(res, Ok(Some(_))) {
                    break;
                }
            }
            if cut > 0 {
                let e = res.expect_err("truncated field must fail");
                assert!(e.to_string().starts_with("cut.model:"), "{e}");
            }
        }
        // Group wire types are refused with a message.
        let e = Reader::new(&[0x0b], "g.model").next_field().expect_err("group");
        assert!(e.to_string().contains("wire type 3"), "{e}");
    }
}
