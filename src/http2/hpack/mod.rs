//! HPACK header compression (RFC 7541) for Massa's HTTP/2 connections.
//!
//! [`Decoder`] reads the peer's header blocks and keeps the dynamic table
//! they build. [`Encoder`] is stateless: it never adds to the peer's dynamic
//! table, so encoding needs no per-connection table and a constant block can
//! be encoded once ([`encode_static_block`]) and reused.
//!
//! Layout: `table` (static table, dynamic table), `huffman` (string code).

mod huffman;
mod table;

pub use huffman::HuffmanError;
use table::{StaticMatch, Table, ENTRY_OVERHEAD};

/// The table size both sides assume before any SETTINGS (RFC 9113 §6.5.2).
const DEFAULT_TABLE_SIZE: usize = 4096;

/// Continuation bytes an integer may take: 5 carry 35 bits, enough for any
/// value up to `u32::MAX` after the prefix.
const MAX_CONTINUATION_BYTES: usize = 5;

/// Why a header block could not be decoded: a connection error
/// (COMPRESSION_ERROR) in HTTP/2, since the dynamic table is now out of step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("header block ends inside a field representation")]
    Truncated,
    #[error("header block integer exceeds 2^32 - 1 or takes more than {MAX_CONTINUATION_BYTES} continuation bytes")]
    IntegerOverflow,
    #[error("header table index {0} is 0 or past the end of the table")]
    BadIndex(usize),
    #[error("header block string: {0}")]
    Huffman(#[from] HuffmanError),
    #[error("dynamic table size update to {size} exceeds our SETTINGS_HEADER_TABLE_SIZE {max}")]
    TableSizeUpdateTooLarge { size: usize, max: usize },
    #[error("dynamic table size update after the first field of a header block")]
    TableSizeUpdateNotAtStart,
}

/// Decodes the header blocks of one direction of a connection.
pub struct Decoder {
    table: Table,
    /// Our SETTINGS_HEADER_TABLE_SIZE: the most a size update may ask for.
    max_table_size: usize,
    /// Reused for field names that are Huffman-coded or copied out of the
    /// dynamic table, and for Huffman-coded values.
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

/// What decoding a header block found out about its header list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The header list size (RFC 9113 §6.5.2) of the whole block: name,
    /// value and 32 per field, saturating.
    pub list_size: usize,
    /// `list_size` passed the limit: the fields from the one that passed it
    /// on were decoded but not reported.
    pub oversize: bool,
}

impl Decoded {
    /// Counts a field; whether to report it.
    fn count(&mut self, max_list_size: usize, name: &[u8], value: &[u8]) -> bool {
        self.list_size = self.list_size.saturating_add(name.len() + value.len() + ENTRY_OVERHEAD);
        self.oversize = self.list_size > max_list_size;
        !self.oversize
    }
}

impl Decoder {
    /// `max_table_size`: our SETTINGS_HEADER_TABLE_SIZE (4096 default); size
    /// updates above it are errors. The table starts at that size, so a peer
    /// that never sends an update may use all of it.
    pub fn new(max_table_size: usize) -> Decoder {
        Decoder { table: Table::new(max_table_size), max_table_size, name_buf: Vec::new(), value_buf: Vec::new() }
    }

    /// Decodes one complete header block (HEADERS + CONTINUATION payloads
    /// already joined), calling `field(name, value)` for each field in order.
    /// Fields are borrowed from the block, the tables or the decoder's
    /// reused buffers (Huffman strings, copied names), so fields allocate
    /// nothing once those buffers have grown. Once the header list size
    /// (RFC 9113 §6.5.2) passes `max_list_size`, later fields are not
    /// reported but the block is still decoded to the end so the dynamic
    /// table stays in sync, and the result says so: that bounds HPACK bombs,
    /// tiny references to a big dynamic entry. After an error the fields
    /// already reported are moot: the connection must end.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<Decoded, DecodeError> {
        let mut input = Input { rest: block };
        let mut decoded = Decoded { list_size: 0, oversize: false };
        let mut at_start = true;
        while let Some(&first) = input.rest.first() {
            match first {
                // 1xxxxxxx: indexed field (§6.1).
                0x80..=0xff => {
                    let index = input.integer(7)?;
                    let (name, value) = self.table.get(index).ok_or(DecodeError::BadIndex(index))?;
                    if decoded.count(max_list_size, name, value) {
                        field(name, value);
                    }
                }
                // 001xxxxx: dynamic table size update (§6.3).
                0x20..=0x3f => {
                    if !at_start {
                        return Err(DecodeError::TableSizeUpdateNotAtStart);
                    }
                    let size = input.integer(5)?;
                    if size > self.max_table_size {
                        return Err(DecodeError::TableSizeUpdateTooLarge { size, max: self.max_table_size });
                    }
                    self.table.set_capacity(size);
                    continue;
                }
                // 01xxxxxx: literal with incremental indexing (§6.2.1);
                // 0000xxxx, 0001xxxx: without indexing, never indexed.
                _ => self.literal(&mut input, first & 0x40 != 0, max_list_size, &mut decoded, &mut field)?,
            }
            at_start = false;
        }
        Ok(decoded)
    }

    /// A literal field representation (§6.2), `indexing` if it adds the
    /// field to the dynamic table.
    fn literal(
        &mut self,
        input: &mut Input,
        indexing: bool,
        max_list_size: usize,
        decoded: &mut Decoded,
        field: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        let name_index = input.integer(if indexing { 6 } else { 4 })?;
        let name = if name_index == 0 {
            input.string(&mut self.name_buf)?
        } else if let Some((name, _)) = table::static_entry(name_index) {
            name
        } else {
            // Copied: inserting may evict the entry it comes from (§4.4).
            let (name, _) = self.table.get(name_index).ok_or(DecodeError::BadIndex(name_index))?;
            self.name_buf.clear();
            self.name_buf.extend_from_slice(name);
            &self.name_buf
        };
        let value = input.string(&mut self.value_buf)?;
        if decoded.count(max_list_size, name, value) {
            field(name, value);
        }
        if indexing {
            self.table.insert(name, value);
        }
        Ok(())
    }

    /// Heap bytes held, for the tests that check decoding does not grow it.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.table.heap_bytes() + self.name_buf.capacity() + self.value_buf.capacity()
    }
}

/// The unread rest of a header block.
struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// An integer with a `prefix_bits` prefix (§5.1), at most `u32::MAX`.
    fn integer(&mut self, prefix_bits: u32) -> Result<usize, DecodeError> {
        let (&first, mut rest) = self.rest.split_first().ok_or(DecodeError::Truncated)?;
        let full = (1u8 << prefix_bits) - 1;
        let mut value = u64::from(first & full);
        if value == u64::from(full) {
            let mut shift = 0;
            loop {
                if shift == 7 * MAX_CONTINUATION_BYTES {
                    return Err(DecodeError::IntegerOverflow);
                }
                let (&b, tail) = rest.split_first().ok_or(DecodeError::Truncated)?;
                rest = tail;
                value += u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        self.rest = rest;
        let value = u32::try_from(value).map_err(|_| DecodeError::IntegerOverflow)?;
        usize::try_from(value).map_err(|_| DecodeError::IntegerOverflow)
    }

    /// A string literal (§5.2): borrowed from the block when raw, decoded
    /// into `scratch` when Huffman-coded.
    fn string<'s>(&mut self, scratch: &'s mut Vec<u8>) -> Result<&'s [u8], DecodeError>
    where
        'a: 's,
    {
        let huffman = self.rest.first().is_some_and(|&b| b & 0x80 != 0);
        let len = self.integer(7)?;
        if len > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        if !huffman {
            return Ok(bytes);
        }
        scratch.clear();
        huffman::decode(bytes, scratch)?;
        Ok(scratch)
    }
}

/// Encodes header blocks for one direction of a connection.
///
/// Stateless: it never inserts into the peer's dynamic table, so the peer's
/// SETTINGS_HEADER_TABLE_SIZE only matters through [`set_max_table_size`].
/// A field matching a static entry whole is sent indexed; otherwise it is a
/// literal without indexing, naming a static entry when one has the name.
/// Credentials (`authorization`, `proxy-authorization`) are sent never
/// indexed (§7.1.3), so intermediaries that re-encode them keep them out of
/// their tables too. A string is Huffman-coded only when that makes it at
/// least a quarter shorter: on header text Huffman saves around 20–30 %, and
/// raw strings are cheaper for both sides to produce and read.
///
/// [`set_max_table_size`]: Encoder::set_max_table_size
pub struct Encoder {
    /// The table size the peer's decoder believes we use.
    table_size: usize,
    /// A size update the next block must start with.
    pending_update: Option<usize>,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder { table_size: DEFAULT_TABLE_SIZE, pending_update: None }
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE changed. We use no entries, so
    /// only a size below the one the peer assumes needs telling (§4.2): the
    /// next block starts with an update to it. A larger one needs nothing.
    pub fn set_max_table_size(&mut self, size: usize) {
        if size < self.table_size {
            self.table_size = size;
            self.pending_update = Some(size);
        }
    }

    /// Must be called at the start of each header block (emits a pending
    /// size update).
    pub fn begin_block(&mut self, dst: &mut Vec<u8>) {
        if let Some(size) = self.pending_update.take() {
            encode_integer(size, 5, 0x20, dst);
        }
    }

    /// Appends one field.
    pub fn field(&mut self, name: &[u8], value: &[u8], dst: &mut Vec<u8>) {
        encode_field(name, value, dst);
    }
}

/// Pre-encodes a constant block (e.g. `:status 200` + `content-type:
/// application/grpc`) once, for reuse when no size update is pending. Same
/// representation choices as [`Encoder::field`].
pub fn encode_static_block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut dst = Vec::new();
    for (name, value) in fields {
        encode_field(name, value, &mut dst);
    }
    dst
}

/// One field, as described on [`Encoder`].
fn encode_field(name: &[u8], value: &[u8], dst: &mut Vec<u8>) {
    // 0001xxxx never indexed, 0000xxxx without indexing (§6.2.2, §6.2.3).
    let literal = if is_credential(name) { 0x10 } else { 0x00 };
    match table::find_static(name, value) {
        Some(StaticMatch::Field(index)) => encode_integer(index, 7, 0x80, dst),
        Some(StaticMatch::Name(index)) => {
            encode_integer(index, 4, literal, dst);
            encode_string(value, dst);
        }
        None => {
            dst.push(literal);
            encode_string(name, dst);
            encode_string(value, dst);
        }
    }
}

fn is_credential(name: &[u8]) -> bool {
    name == b"authorization" || name == b"proxy-authorization"
}

/// A string literal (§5.2), Huffman-coded if that saves a quarter.
fn encode_string(s: &[u8], dst: &mut Vec<u8>) {
    let coded_len = huffman::encoded_len(s);
    if !s.is_empty() && coded_len * 4 <= s.len() * 3 {
        encode_integer(coded_len, 7, 0x80, dst);
        huffman::encode(s, dst);
    } else {
        encode_integer(s.len(), 7, 0x00, dst);
        dst.extend_from_slice(s);
    }
}

/// An integer with a `prefix_bits` prefix (§5.1), the first byte's other
/// bits set to `flags`.
fn encode_integer(value: usize, prefix_bits: u32, flags: u8, dst: &mut Vec<u8>) {
    let full = (1usize << prefix_bits) - 1;
    if value < full {
        dst.push(flags | value as u8);
        return;
    }
    dst.push(flags | full as u8);
    let mut rest = value - full;
    while rest >= 0x80 {
        dst.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    dst.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }

    fn fields(list: &[(&str, &str)]) -> Fields {
        list.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
    }

    fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, DecodeError> {
        let mut got = Vec::new();
        let decoded = decoder.decode(block, usize::MAX, |n, v| got.push((n.to_vec(), v.to_vec())))?;
        assert!(!decoded.oversize);
        assert_eq!(decoded.list_size, got.iter().map(|(n, v)| n.len() + v.len() + 32).sum::<usize>());
        Ok(got)
    }

    /// The dynamic table, newest first.
    fn dynamic(decoder: &Decoder) -> Vec<(String, String)> {
        (62..62 + decoder.table.len())
            .map(|i| {
                let (n, v) = decoder.table.get(i).unwrap();
                (String::from_utf8(n.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap())
            })
            .collect()
    }

    fn entries(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// One step of an Appendix C sequence: block, header list, dynamic
    /// table after it, table size.
    type Step<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)], usize);

    fn check_sequence(table_size: usize, steps: &[Step]) {
        let mut decoder = Decoder::new(table_size);
        for (i, (block, list, table, size)) in steps.iter().enumerate() {
            assert_eq!(decode(&mut decoder, &hex(block)).unwrap(), fields(list), "block {i}");
            assert_eq!(dynamic(&decoder), entries(table), "table after block {i}");
            assert_eq!(decoder.table.size(), *size, "table size after block {i}");
        }
    }

    #[test]
    fn integers_of_appendix_c1() {
        let mut dst = Vec::new();
        encode_integer(10, 5, 0, &mut dst);
        assert_eq!(dst, [0x0a]);
        dst.clear();
        encode_integer(1337, 5, 0, &mut dst);
        assert_eq!(dst, [0x1f, 0x9a, 0x0a]);
        assert_eq!(Input { rest: &[0xff, 0x9a, 0x0a] }.integer(5), Ok(1337));
        assert_eq!(Input { rest: &[0x0a] }.integer(5), Ok(10));
    }

    #[test]
    fn field_representations_of_appendix_c2() {
        let mut decoder = Decoder::new(4096);
        let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        assert_eq!(decode(&mut decoder, &block).unwrap(), fields(&[("custom-key", "custom-header")]));
        assert_eq!(dynamic(&decoder), entries(&[("custom-key", "custom-header")]));
        assert_eq!(decoder.table.size(), 55);

        let not_added = [
            ("040c 2f73 616d 706c 652f 7061 7468", (":path", "/sample/path")),
            ("1008 7061 7373 776f 7264 0673 6563 7265 74", ("password", "secret")),
            ("82", (":method", "GET")),
        ];
        for (block, field) in not_added {
            let mut decoder = Decoder::new(4096);
            assert_eq!(decode(&mut decoder, &hex(block)).unwrap(), fields(&[field]));
            assert_eq!(decoder.table.len(), 0);
        }
    }

    const C3_LISTS: [&[(&str, &str)]; 3] = [
        &[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")],
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ],
    ];
    const C3_TABLES: [&[(&str, &str)]; 3] = [
        &[(":authority", "www.example.com")],
        &[("cache-control", "no-cache"), (":authority", "www.example.com")],
        &[("custom-key", "custom-value"), ("cache-control", "no-cache"), (":authority", "www.example.com")],
    ];

    #[test]
    fn requests_of_appendix_c3() {
        check_sequence(
            4096,
            &[
                ("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", C3_LISTS[0], C3_TABLES[0], 57),
                ("8286 84be 5808 6e6f 2d63 6163 6865", C3_LISTS[1], C3_TABLES[1], 110),
                (
                    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                    C3_LISTS[2],
                    C3_TABLES[2],
                    164,
                ),
            ],
        );
    }

    #[test]
    fn huffman_requests_of_appendix_c4() {
        check_sequence(
            4096,
            &[
                ("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", C3_LISTS[0], C3_TABLES[0], 57),
                ("8286 84be 5886 a8eb 1064 9cbf", C3_LISTS[1], C3_TABLES[1], 110),
                ("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf", C3_LISTS[2], C3_TABLES[2], 164),
            ],
        );
    }

    const DATE_21: (&str, &str) = ("date", "Mon, 21 Oct 2013 20:13:21 GMT");
    const DATE_22: (&str, &str) = ("date", "Mon, 21 Oct 2013 20:13:22 GMT");
    const LOCATION: (&str, &str) = ("location", "https://www.example.com");
    const PRIVATE: (&str, &str) = ("cache-control", "private");
    const COOKIE: (&str, &str) = ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1");
    const C5_LISTS: [&[(&str, &str)]; 3] = [
        &[(":status", "302"), PRIVATE, DATE_21, LOCATION],
        &[(":status", "307"), PRIVATE, DATE_21, LOCATION],
        &[(":status", "200"), PRIVATE, DATE_22, LOCATION, ("content-encoding", "gzip"), COOKIE],
    ];
    const C5_TABLES: [&[(&str, &str)]; 3] = [
        &[LOCATION, DATE_21, PRIVATE, (":status", "302")],
        &[(":status", "307"), LOCATION, DATE_21, PRIVATE],
        &[COOKIE, ("content-encoding", "gzip"), DATE_22],
    ];

    #[test]
    fn responses_with_eviction_of_appendix_c5() {
        check_sequence(
            256,
            &[
                (
                    "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
                     2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
                     6c65 2e63 6f6d",
                    C5_LISTS[0],
                    C5_TABLES[0],
                    222,
                ),
                ("4803 3330 37c1 c0bf", C5_LISTS[1], C5_TABLES[1], 222),
                (
                    "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
                     54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
                     5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
                     3d31",
                    C5_LISTS[2],
                    C5_TABLES[2],
                    215,
                ),
            ],
        );
    }

    #[test]
    fn huffman_responses_with_eviction_of_appendix_c6() {
        check_sequence(
            256,
            &[
                (
                    "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
                     2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                    C5_LISTS[0],
                    C5_TABLES[0],
                    222,
                ),
                ("4883 640e ffc1 c0bf", C5_LISTS[1], C5_TABLES[1], 222),
                (
                    "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
                     77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
                     9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                    C5_LISTS[2],
                    C5_TABLES[2],
                    215,
                ),
            ],
        );
    }

    #[test]
    fn huffman_codes_match_appendix_b() {
        // A spread over every length class, from the RFC's hex column.
        let rfc = [
            (0, 0x1ff8, 13),
            (1, 0x7fffd8, 23),
            (9, 0xffffea, 24),
            (10, 0x3ffffffc, 30),
            (32, 0x14, 6),
            (48, 0x0, 5),
            (58, 0x5c, 7),
            (92, 0x7fff0, 19),
            (116, 0x9, 5),
            (126, 0x1ffd, 13),
            (127, 0xffffffc, 28),
            (153, 0x1fffdc, 21),
            (192, 0x3ffffe0, 26),
            (199, 0x1ffffec, 25),
            (203, 0x7ffffde, 27),
            (255, 0x3ffffee, 26),
            (256, 0x3fffffff, 30),
        ];
        for (symbol, code, len) in rfc {
            assert_eq!(huffman::code_of(symbol), (code, len), "symbol {symbol}");
        }
    }

    #[test]
    fn huffman_rejects_eos_and_bad_padding() {
        let mut out = Vec::new();
        // EOS (30 ones) plus two padding ones.
        assert_eq!(huffman::decode(&[0xff; 4], &mut out), Err(HuffmanError::Eos));
        // Padding longer than 7 bits: a whole byte of ones; 'a' (00011)
        // then 11 ones.
        assert_eq!(huffman::decode(&[0xff], &mut out), Err(HuffmanError::LongPadding(8)));
        assert_eq!(huffman::decode(&[0x1f, 0xff], &mut out), Err(HuffmanError::LongPadding(11)));
        // 'a' then 000: padding that is not EOS's start.
        assert_eq!(huffman::decode(&[0x18], &mut out), Err(HuffmanError::BadPadding));
        // 'a' then 111: fine.
        out.clear();
        assert_eq!(huffman::decode(&[0x1f], &mut out), Ok(()));
        assert_eq!(out, b"a");
        // The same through the decoder: :path with a Huffman value of EOS.
        let block = [0x04, 0x84, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode(&mut Decoder::new(4096), &block), Err(DecodeError::Huffman(HuffmanError::Eos)));
    }

    #[test]
    fn malformed_blocks_are_rejected() {
        let cases: [(&[u8], DecodeError); 9] = [
            (&[0xff], DecodeError::Truncated),
            (&[0xff, 0x80], DecodeError::Truncated),
            // 127 + 2^32 - 1: one past u32::MAX.
            (&[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], DecodeError::IntegerOverflow),
            // A sixth continuation byte, though the value is small.
            (&[0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], DecodeError::IntegerOverflow),
            (&[0x80], DecodeError::BadIndex(0)),
            (&[0xbe], DecodeError::BadIndex(62)),
            (&[0x7f, 0x00, 0x00], DecodeError::BadIndex(63)),
            // :path with a 5-byte value of which 2 are there.
            (&[0x04, 0x05, b'/', b'a'], DecodeError::Truncated),
            (&[0x82, 0x20], DecodeError::TableSizeUpdateNotAtStart),
        ];
        for (block, error) in cases {
            assert_eq!(decode(&mut Decoder::new(4096), block), Err(error), "{block:02x?}");
        }
    }

    #[test]
    fn size_updates_only_at_start_and_within_our_setting() {
        let update = |size| {
            let mut dst = Vec::new();
            encode_integer(size, 5, 0x20, &mut dst);
            dst
        };
        assert_eq!(
            decode(&mut Decoder::new(4096), &update(4097)),
            Err(DecodeError::TableSizeUpdateTooLarge { size: 4097, max: 4096 })
        );
        // Several at the start; the last one (0) empties the table.
        let mut decoder = Decoder::new(4096);
        decode(&mut decoder, &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")).unwrap();
        let block = [update(4096), update(0), vec![0x82]].concat();
        assert_eq!(decode(&mut decoder, &block).unwrap(), fields(&[(":method", "GET")]));
        assert_eq!(decoder.table.len(), 0);
        assert_eq!(decode(&mut decoder, &[0xbe]), Err(DecodeError::BadIndex(62)));
        // At size 0 an insert leaves nothing; back at 4096 inserts stick.
        decode(&mut decoder, &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")).unwrap();
        assert_eq!(decoder.table.len(), 0);
        let block = [update(4096), hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")].concat();
        decode(&mut decoder, &block).unwrap();
        assert_eq!(dynamic(&decoder), entries(&[("custom-key", "custom-header")]));
    }

    #[test]
    fn literal_naming_the_entry_it_evicts() {
        // Table of 64: one entry of 10 + 22 bytes + 32 fills it; a new field
        // named by index 62 evicts that very entry (§4.4).
        let mut decoder = Decoder::new(64);
        let name = "n".repeat(10);
        let mut block = vec![0x40, 10];
        block.extend_from_slice(name.as_bytes());
        block.push(22);
        block.extend_from_slice(&[b'v'; 22]);
        decode(&mut decoder, &block).unwrap();
        assert_eq!(decoder.table.size(), 64);
        let got = decode(&mut decoder, &[0x7e, 0x01, b'w']).unwrap();
        assert_eq!(got, fields(&[(name.as_str(), "w")]));
        assert_eq!(dynamic(&decoder), entries(&[(name.as_str(), "w")]));
    }

    #[test]
    fn hpack_bomb_is_cut_at_the_list_limit_without_growing() {
        // One 4000-byte value inserted, then referenced 10,000 times.
        let mut insert = vec![0x40, 0x01, b'x'];
        encode_integer(4000, 7, 0x00, &mut insert);
        insert.extend_from_slice(&[b'a'; 4000]);
        let block = [insert.clone(), vec![0xbe; 10_000]].concat();
        let limit = 16 * 1024;

        let mut baseline = Decoder::new(4096);
        baseline.decode(&insert, limit, |_, _| {}).unwrap();
        let mut decoder = Decoder::new(4096);
        let (mut reported, mut count) = (0, 0);
        let decoded = decoder
            .decode(&block, limit, |n, v| {
                reported += n.len() + v.len() + 32;
                count += 1;
            })
            .unwrap();
        assert_eq!(decoded, Decoded { list_size: 10_001 * 4033, oversize: true });
        assert_eq!(count, limit / 4033);
        assert!(reported <= limit);
        assert_eq!(decoder.heap_bytes(), baseline.heap_bytes());
        // Still in sync: the entry is there for the next block.
        assert_eq!(decode(&mut decoder, &[0xbe]).unwrap(), vec![(b"x".to_vec(), vec![b'a'; 4000])]);
    }

    #[test]
    fn dynamic_table_storage_stays_bounded() {
        // Many inserts of varied sizes through a small table: the arena
        // drops evicted bytes instead of growing, and lookups stay right.
        let mut decoder = Decoder::new(256);
        for i in 0..2000usize {
            let value = "v".repeat(i % 190);
            let mut block = vec![0x40, 0x04];
            block.extend_from_slice(format!("k{:03}", i % 1000).as_bytes());
            encode_integer(value.len(), 7, 0, &mut block);
            block.extend_from_slice(value.as_bytes());
            decode(&mut decoder, &block).unwrap();
            let newest = decoder.table.get(62).unwrap();
            assert_eq!((newest.0, newest.1), (format!("k{:03}", i % 1000).as_bytes(), value.as_bytes()));
            assert!(decoder.table.size() <= 256);
        }
        assert!(decoder.heap_bytes() < 2 * 256 + 1024, "{}", decoder.heap_bytes());
    }

    #[test]
    fn encoder_representations() {
        let mut encoder = Encoder::new();
        let mut dst = Vec::new();
        encoder.begin_block(&mut dst);
        assert!(dst.is_empty());
        encoder.field(b":method", b"POST", &mut dst);
        assert_eq!(dst, [0x83]);
        // Static name, raw value (Huffman would save less than a quarter).
        dst.clear();
        encoder.field(b":status", b"429", &mut dst);
        assert_eq!(dst, [0x08, 0x03, b'4', b'2', b'9']);
        // Credentials: never indexed, name index 23.
        dst.clear();
        encoder.field(b"authorization", b"Q", &mut dst);
        assert_eq!(dst, [0x1f, 0x08, 0x01, b'Q']);
        // New name, both strings Huffman-coded (lowercase text saves a third).
        dst.clear();
        encoder.field(b"grpc-status", b"0", &mut dst);
        let mut want = vec![0x00, 0x80 | huffman::encoded_len(b"grpc-status") as u8];
        huffman::encode(b"grpc-status", &mut want);
        want.extend_from_slice(&[0x01, b'0']);
        assert_eq!(dst, want);
    }

    #[test]
    fn encoder_size_update_once_and_only_downwards() {
        let mut encoder = Encoder::new();
        let mut dst = Vec::new();
        encoder.set_max_table_size(8192);
        encoder.begin_block(&mut dst);
        assert!(dst.is_empty());
        encoder.set_max_table_size(100);
        encoder.set_max_table_size(0);
        encoder.begin_block(&mut dst);
        assert_eq!(dst, [0x20]);
        encoder.begin_block(&mut dst);
        encoder.set_max_table_size(4096);
        encoder.begin_block(&mut dst);
        assert_eq!(dst, [0x20]);
    }

    #[test]
    fn static_block_matches_the_encoder() {
        let block = encode_static_block(&[(b":status", b"200"), (b"content-type", b"application/grpc")]);
        let mut want = vec![0x88, 0x0f, 0x10, 0x80 | huffman::encoded_len(b"application/grpc") as u8];
        huffman::encode(b"application/grpc", &mut want);
        assert_eq!(block, want);
        assert_eq!(
            decode(&mut Decoder::new(0), &block).unwrap(),
            fields(&[(":status", "200"), ("content-type", "application/grpc")])
        );
    }

    fn header_name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (0..table::STATIC.len()).prop_map(|i| table::STATIC[i].0.to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
            "[a-z-]{1,20}".prop_map(String::into_bytes),
        ]
    }

    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (0..table::STATIC.len()).prop_map(|i| table::STATIC[i].1.to_vec()),
            proptest::collection::vec(any::<u8>(), 0..300),
            "[ -~]{0,80}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #[test]
        fn huffman_round_trip(s in proptest::collection::vec(any::<u8>(), 0..500)) {
            let mut coded = Vec::new();
            huffman::encode(&s, &mut coded);
            prop_assert_eq!(coded.len(), huffman::encoded_len(&s));
            let mut back = Vec::new();
            huffman::decode(&coded, &mut back).unwrap();
            prop_assert_eq!(back, s);
        }

        /// A Huffman string has one valid encoding, so any input accepted
        /// must be exactly what encoding its output gives: this catches
        /// padding or EOS that slips through.
        #[test]
        fn huffman_accepts_only_the_encoding(coded in proptest::collection::vec(any::<u8>(), 0..12)) {
            let mut out = Vec::new();
            if huffman::decode(&coded, &mut out).is_ok() {
                let mut again = Vec::new();
                huffman::encode(&out, &mut again);
                prop_assert_eq!(again, coded);
            }
        }

        #[test]
        fn encoder_decoder_round_trip(
            list in proptest::collection::vec((header_name(), header_value()), 0..20),
            peer_table_size in prop_oneof![Just(None), (0usize..5000).prop_map(Some)],
        ) {
            let mut encoder = Encoder::new();
            if let Some(size) = peer_table_size {
                encoder.set_max_table_size(size);
            }
            let mut decoder = Decoder::new(4096);
            // Two blocks: the second must carry no update and need no table.
            for _ in 0..2 {
                let mut block = Vec::new();
                encoder.begin_block(&mut block);
                for (name, value) in &list {
                    encoder.field(name, value, &mut block);
                }
                prop_assert_eq!(decode(&mut decoder, &block).unwrap(), list.clone());
                prop_assert_eq!(decoder.table.len(), 0);
            }
        }
    }
}
