//! The entity id of a command, read straight from the client's request
//! bytes: a scan of the protobuf wire format for the key fields found at
//! discovery, without decoding the message. Several key fields are joined
//! with `-`; strings verbatim, integers in decimal, bools `true`/`false`.

use prost_reflect::Kind;

/// How a key field is encoded on the wire, and how it is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    String,
    /// int64: varint, two's complement.
    Signed,
    /// int32/enum: as int64 on the wire, but decoders keep only the low 32
    /// bits, so the id must too (`-1` may arrive in 5 or 10 bytes).
    Signed32,
    /// uint64: varint.
    Unsigned,
    /// uint32: varint, low 32 bits.
    Unsigned32,
    /// sint64: zigzag varint.
    ZigZag,
    /// sint32: zigzag varint of the low 32 bits.
    ZigZag32,
    Fixed32,
    SFixed32,
    Fixed64,
    SFixed64,
    Bool,
}

impl KeyKind {
    /// The kinds discovery accepts as keys; `None` for bytes, messages,
    /// floats (rejected there with a clear error).
    pub fn of(kind: &Kind) -> Option<KeyKind> {
        Some(match kind {
            Kind::String => KeyKind::String,
            Kind::Int64 => KeyKind::Signed,
            Kind::Int32 | Kind::Enum(_) => KeyKind::Signed32,
            Kind::Uint64 => KeyKind::Unsigned,
            Kind::Uint32 => KeyKind::Unsigned32,
            Kind::Sint64 => KeyKind::ZigZag,
            Kind::Sint32 => KeyKind::ZigZag32,
            Kind::Fixed32 => KeyKind::Fixed32,
            Kind::Sfixed32 => KeyKind::SFixed32,
            Kind::Fixed64 => KeyKind::Fixed64,
            Kind::Sfixed64 => KeyKind::SFixed64,
            Kind::Bool => KeyKind::Bool,
            _ => return None,
        })
    }

    fn wire_type(self) -> u8 {
        match self {
            KeyKind::String => 2,
            KeyKind::Fixed32 | KeyKind::SFixed32 => 5,
            KeyKind::Fixed64 | KeyKind::SFixed64 => 1,
            _ => 0,
        }
    }
}

/// One key field of a method's input message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyField {
    pub number: u32,
    pub kind: KeyKind,
}

/// Why no entity id could be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the request has no value for its entity key")]
    Missing,
    #[error("the request is not a valid protobuf message: {0}")]
    Malformed(&'static str),
}

/// Key fields whose values are tracked without allocating.
const INLINE_KEYS: usize = 8;

/// Reads the entity id from an encoded message. The last occurrence of a
/// field wins, as in protobuf decoding; an absent or empty string key is an
/// error, absent numbers are 0 (the proto3 default).
pub fn extract(message: &[u8], fields: &[KeyField]) -> Result<String, KeyError> {
    // Byte ranges (strings) or raw scalars, per key field; on the stack for
    // the usual few keys.
    let mut inline = [None; INLINE_KEYS];
    let mut spilled;
    let found: &mut [Option<Raw>] = if fields.len() <= INLINE_KEYS {
        &mut inline[..fields.len()]
    } else {
        spilled = vec![None; fields.len()];
        &mut spilled
    };
    let mut rest = message;
    while !rest.is_empty() {
        let (number, wire, raw) = read_field(&mut rest, message.len(), 0)?;
        if let Raw::GroupEnd = raw {
            return Err(KeyError::Malformed("end of a group that never started"));
        }
        if let Some(i) = fields.iter().position(|f| f.number == number && f.kind.wire_type() == wire) {
            found[i] = Some(raw);
        }
    }
    let mut id = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            id.push('-');
        }
        match (field.kind, found[i]) {
            (KeyKind::String, Some(Raw::Range(a, b))) if b > a => {
                id.push_str(std::str::from_utf8(&message[a..b]).map_err(|_| KeyError::Malformed("key is not UTF-8"))?)
            }
            (KeyKind::String, _) => return Err(KeyError::Missing),
            (kind, raw) => push_number(&mut id, kind, match raw {
                Some(Raw::Scalar(v)) => v,
                _ => 0,
            }),
        }
    }
    Ok(id)
}

/// One field's value as found on the wire.
#[derive(Clone, Copy, Debug)]
enum Raw {
    Scalar(u64),
    /// A length-delimited value: its byte range in the message.
    Range(usize, usize),
    /// A proto2 group, skipped whole: groups are never keys, but requests
    /// may carry them.
    Group,
    /// The tag closing the group being skipped.
    GroupEnd,
}

/// Nesting of groups beyond what protobuf decoders accept (100).
const MAX_GROUP_DEPTH: usize = 128;

/// Reads one field off the front of `buf`, a suffix of a message of
/// `message_len` bytes (so that ranges are offsets into the message).
fn read_field(buf: &mut &[u8], message_len: usize, depth: usize) -> Result<(u32, u8, Raw), KeyError> {
    let tag = varint(buf)?;
    let (number, wire) = ((tag >> 3) as u32, (tag & 7) as u8);
    if number == 0 {
        return Err(KeyError::Malformed("field number 0"));
    }
    let raw = match wire {
        0 => Raw::Scalar(varint(buf)?),
        1 => Raw::Scalar(u64::from_le_bytes(take(buf, 8)?.try_into().unwrap())),
        5 => Raw::Scalar(u32::from_le_bytes(take(buf, 4)?.try_into().unwrap()) as u64),
        2 => {
            let len = varint(buf)? as usize;
            let value_start = message_len - buf.len();
            take(buf, len)?;
            Raw::Range(value_start, value_start + len)
        }
        3 => {
            skip_group(buf, message_len, number, depth)?;
            Raw::Group
        }
        4 => Raw::GroupEnd,
        _ => return Err(KeyError::Malformed("unsupported wire type")),
    };
    Ok((number, wire, raw))
}

/// Skips the fields of group `number` through its end tag.
fn skip_group(buf: &mut &[u8], message_len: usize, number: u32, depth: usize) -> Result<(), KeyError> {
    if depth == MAX_GROUP_DEPTH {
        return Err(KeyError::Malformed("groups nested too deeply"));
    }
    loop {
        match read_field(buf, message_len, depth + 1)? {
            (end, _, Raw::GroupEnd) if end == number => return Ok(()),
            (_, _, Raw::GroupEnd) => return Err(KeyError::Malformed("group closed by another group's end")),
            _ => {}
        }
    }
}

fn push_number(out: &mut String, kind: KeyKind, v: u64) {
    use std::fmt::Write;
    let _ = match kind {
        KeyKind::Signed | KeyKind::SFixed64 => write!(out, "{}", v as i64),
        KeyKind::Signed32 | KeyKind::SFixed32 => write!(out, "{}", v as i32),
        KeyKind::Unsigned32 => write!(out, "{}", v as u32),
        KeyKind::ZigZag => write!(out, "{}", ((v >> 1) as i64) ^ -((v & 1) as i64)),
        KeyKind::ZigZag32 => {
            let v = v as u32;
            write!(out, "{}", ((v >> 1) as i32) ^ -((v & 1) as i32))
        }
        KeyKind::Bool => write!(out, "{}", v != 0),
        KeyKind::Unsigned | KeyKind::Fixed32 | KeyKind::Fixed64 | KeyKind::String => write!(out, "{v}"),
    };
}

fn varint(buf: &mut &[u8]) -> Result<u64, KeyError> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err(KeyError::Malformed("truncated or overlong varint"))
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], KeyError> {
    if buf.len() < n {
        return Err(KeyError::Malformed("truncated field"));
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    struct Keys {
        #[prost(string, tag = "1")]
        user: String,
        #[prost(int64, tag = "2")]
        signed: i64,
        #[prost(sint32, tag = "3")]
        zig: i32,
        #[prost(bool, tag = "4")]
        flag: bool,
        #[prost(sfixed32, tag = "5")]
        sf32: i32,
        #[prost(fixed64, tag = "6")]
        f64_: u64,
        #[prost(string, tag = "7")]
        other: String,
    }

    fn f(number: u32, kind: KeyKind) -> KeyField {
        KeyField { number, kind }
    }

    #[test]
    fn every_kind_prints_like_the_reference() {
        let m = Keys { user: "cart-7".into(), signed: -5, zig: -3, flag: true, sf32: -9, f64_: 42, other: "x".into() };
        let bytes = m.encode_to_vec();
        let fields = [
            f(1, KeyKind::String),
            f(2, KeyKind::Signed),
            f(3, KeyKind::ZigZag32),
            f(4, KeyKind::Bool),
            f(5, KeyKind::SFixed32),
            f(6, KeyKind::Fixed64),
        ];
        assert_eq!(extract(&bytes, &fields).unwrap(), "cart-7--5--3-true--9-42");
        assert_eq!(extract(&bytes, &fields[..1]).unwrap(), "cart-7");
    }

    #[test]
    fn missing_string_key_is_an_error_and_numbers_default_to_zero() {
        let bytes = Keys { other: "x".into(), ..Default::default() }.encode_to_vec();
        assert_eq!(extract(&bytes, &[f(1, KeyKind::String)]), Err(KeyError::Missing));
        assert_eq!(extract(&bytes, &[f(2, KeyKind::Signed), f(4, KeyKind::Bool)]).unwrap(), "0-false");
    }

    #[test]
    fn narrow_varints_keep_their_low_32_bits_like_a_decoder() {
        // Field 1 = 2^32 - 1 in 5 bytes, field 2 = 2^32 + 7, field 3 = zigzag 2^32 + 3.
        let bytes = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x10, 0x87, 0x80, 0x80, 0x80, 0x10, 0x18, 0x83, 0x80, 0x80, 0x80, 0x10,
        ];
        let fields = [f(1, KeyKind::Signed32), f(2, KeyKind::Unsigned32), f(3, KeyKind::ZigZag32)];
        assert_eq!(extract(&bytes, &fields).unwrap(), "-1-7--2");
        let wide = [f(1, KeyKind::Signed), f(2, KeyKind::Unsigned), f(3, KeyKind::ZigZag)];
        assert_eq!(extract(&bytes, &wide).unwrap(), "4294967295-4294967303--2147483650");
    }

    #[test]
    fn groups_are_skipped_whole() {
        // Group 3 holding a nested group 4 and a field 1 that is not the key;
        // then the key.
        let bytes = [0x1b, 0x23, 0x08, 0x05, 0x24, 0x0a, 0x01, b'x', 0x1c, 0x0a, 0x02, b'i', b'd'];
        assert_eq!(extract(&bytes, &[f(1, KeyKind::String)]).unwrap(), "id");
        assert!(matches!(extract(&[0x1b, 0x24], &[f(1, KeyKind::String)]), Err(KeyError::Malformed(_))));
        assert!(matches!(extract(&[0x1c], &[f(1, KeyKind::String)]), Err(KeyError::Malformed(_))));
        assert!(matches!(extract(&[0x1b; 200], &[f(1, KeyKind::String)]), Err(KeyError::Malformed(_))));
    }

    #[test]
    fn keys_beyond_the_inline_table_are_read() {
        let fields: Vec<_> = (1..=10).map(|n| f(n, KeyKind::Unsigned)).collect();
        let bytes: Vec<u8> = (1..=10u8).flat_map(|n| [n << 3, 10 * n]).collect();
        assert_eq!(extract(&bytes, &fields).unwrap(), "10-20-30-40-50-60-70-80-90-100");
    }

    #[test]
    fn last_occurrence_wins_and_garbage_is_rejected() {
        let mut bytes = Keys { user: "first".into(), ..Default::default() }.encode_to_vec();
        bytes.extend(Keys { user: "second".into(), ..Default::default() }.encode_to_vec());
        assert_eq!(extract(&bytes, &[f(1, KeyKind::String)]).unwrap(), "second");
        assert!(matches!(extract(&[0x0a, 0x05, b'a'], &[f(1, KeyKind::String)]), Err(KeyError::Malformed(_))));
        assert!(matches!(extract(&[0xff; 11], &[f(1, KeyKind::String)]), Err(KeyError::Malformed(_))));
    }
}
