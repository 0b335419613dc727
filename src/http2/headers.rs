//! A header list as it came off (or goes onto) the wire: one byte buffer
//! and the fields' spans in order. Two allocations per block, whatever the
//! number of fields, and lookups by linear scan (gRPC blocks are short).

use std::ops::Range;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    buf: Vec<u8>,
    fields: Vec<(u32, u32, u32)>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    pub fn with_capacity(bytes: usize, fields: usize) -> Headers {
        Headers { buf: Vec::with_capacity(bytes), fields: Vec::with_capacity(fields) }
    }

    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(value);
        self.fields.push((start, name.len() as u32, value.len() as u32));
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn spans(&self, &(start, name_len, value_len): &(u32, u32, u32)) -> (Range<usize>, Range<usize>) {
        let (s, n, v) = (start as usize, name_len as usize, value_len as usize);
        (s..s + n, s + n..s + n + v)
    }

    /// Every field in order, pseudo-headers included.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields.iter().map(|f| {
            let (n, v) = self.spans(f);
            (&self.buf[n], &self.buf[v])
        })
    }

    /// Regular fields only (no `:` pseudo-headers).
    pub fn regular(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.iter().filter(|(n, _)| !n.starts_with(b":"))
    }

    /// The first value of `name` (lower-case, as HTTP/2 requires).
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// [`get`](Self::get) as text.
    pub fn get_str(&self, name: &[u8]) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Drops every field named `name` (its bytes stay in the buffer).
    pub fn remove(&mut self, name: &[u8]) {
        let buf = &self.buf;
        self.fields.retain(|&(start, name_len, _)| &buf[start as usize..(start + name_len) as usize] != name);
    }

    pub fn extend(&mut self, other: &Headers) {
        for (n, v) in other.iter() {
            self.push(n, v);
        }
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter().map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v)))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_finds_first() {
        let mut h = Headers::new();
        h.push(b":path", b"/a/B");
        h.push(b"x-k", b"1");
        h.push(b"x-k", b"2");
        assert_eq!(h.get(b"x-k"), Some(&b"1"[..]));
        assert_eq!(h.get_str(b":path"), Some("/a/B"));
        assert_eq!(h.regular().count(), 2);
        assert_eq!(h.iter().map(|(_, v)| v.to_vec()).collect::<Vec<_>>(), [b"/a/B".to_vec(), b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(h.get(b"missing"), None);
    }
}
