//! The byte layouts of the host ABI (`sdk/ABI.md`), host side: little-endian,
//! length-prefixed. Mirrors `sdk/go/internal/wire`.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Appends to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// A writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    /// Appends a u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Appends a u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Appends bytes with a u16 length (cut at 65535).
    pub fn str16(&mut self, s: &[u8]) {
        let s = &s[..s.len().min(0xffff)];
        self.buf.extend_from_slice(&(s.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(s);
    }
    /// Appends bytes with a u32 length.
    pub fn str32(&mut self, s: &[u8]) {
        self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(s);
    }
    /// Appends a header block.
    pub fn headers(&mut self, h: &HeaderMap) {
        self.u32(h.len() as u32);
        for (k, v) in h {
            self.str16(k.as_str().as_bytes());
            self.str32(v.as_bytes());
        }
    }
}

/// Reads a buffer; every read fails once the input is short.
#[derive(Debug)]
pub struct Reader<'a> {
    b: &'a [u8],
    off: usize,
}

/// The input was truncated or malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("truncated or malformed data")]
pub struct Malformed;

impl<'a> Reader<'a> {
    /// Reads `b`.
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, off: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.off.checked_add(n).ok_or(Malformed)?;
        let s = self.b.get(self.off..end).ok_or(Malformed)?;
        self.off = end;
        Ok(s)
    }
    /// Reads a u16.
    pub fn u16(&mut self) -> Result<u16, Malformed> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    /// Reads a u32.
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// Reads u16-length bytes.
    pub fn str16(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    /// Reads u32-length bytes.
    pub fn str32(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// Reads a header block; invalid names or values are an error.
    pub fn headers(&mut self) -> Result<HeaderMap, Malformed> {
        let n = self.u32()? as usize;
        if n > 10_000 {
            return Err(Malformed);
        }
        let mut h = HeaderMap::with_capacity(n);
        for _ in 0..n {
            let k = HeaderName::from_bytes(self.str16()?).map_err(|_| Malformed)?;
            let v = HeaderValue::from_bytes(self.str32()?).map_err(|_| Malformed)?;
            h.append(k, v);
        }
        Ok(h)
    }
}

/// Encodes key/value pairs (u32 count, then str32 key, str32 value).
pub fn pairs<'a>(items: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(items.len() as u32);
    for (k, v) in items {
        w.str32(k.as_bytes());
        w.str32(v.as_bytes());
    }
    w.buf
}

/// Encodes a list of strings (u32 count, then str32 items).
pub fn strings(items: &[String]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(items.len() as u32);
    for s in items {
        w.str32(s.as_bytes());
    }
    w.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_truncation_fails() {
        let mut h = HeaderMap::new();
        h.append("set-cookie", HeaderValue::from_static("a=1"));
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        let mut w = Writer::default();
        w.headers(&h);
        assert_eq!(Reader::new(&w.buf).headers().unwrap(), h);
        for i in 0..w.buf.len() {
            assert!(Reader::new(&w.buf[..i]).headers().is_err());
        }
        let mut bad = Writer::default();
        bad.u32(1);
        bad.str16(b"bad name");
        bad.str32(b"x");
        assert!(Reader::new(&bad.buf).headers().is_err());
    }
}
