//! The entity id of a command, read straight from the client's request
//! bytes: a scan of the protobuf wire format for the key fields found at
//! discovery, without decoding the message. Several key fields are joined
//! with `-`; strings verbatim, integers in decimal, bools `true`/`false`.

use prost_reflect::Kind;

/// How a key field is encoded on the wire, and how it is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    String,
    /// int32/int64/enum: varint, two's complement.
    Signed,
    /// uint32/uint64: varint.
    Unsigned,
    /// sint32/sint64: zigzag varint.
    ZigZag,
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
            Kind::Int32 | Kind::Int64 | Kind::Enum(_) => KeyKind::Signed,
            Kind::Uint32 | Kind::Uint64 => KeyKind::Unsigned,
            Kind::Sint32 | Kind::Sint64 => KeyKind::ZigZag,
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

/// Reads the entity id from an encoded message. The last occurrence of a
/// field wins, as in protobuf decoding; an absent or empty string key is an
/// error, absent numbers are 0 (the proto3 default).
pub fn extract(message: &[u8], fields: &[KeyField]) -> Result<String, KeyError> {
    // Byte ranges (strings) or raw scalars, per key field.
    let mut found: [Option<Raw>; 8] = Default::default();
    let found = &mut found[..fields.len().min(8)];
    let mut rest = message;
    while !rest.is_empty() {
        let tag = varint(&mut rest)?;
        let (number, wire) = ((tag >> 3) as u32, (tag & 7) as u8);
        if number == 0 {
            return Err(KeyError::Malformed("field number 0"));
        }
        let raw = match wire {
            0 => Raw::Scalar(varint(&mut rest)?),
            1 => Raw::Scalar(u64::from_le_bytes(take(&mut rest, 8)?.try_into().unwrap())),
            5 => Raw::Scalar(u32::from_le_bytes(take(&mut rest, 4)?.try_into().unwrap()) as u64),
            2 => {
                let len = varint(&mut rest)? as usize;
                let value_start = message.len() - rest.len();
                take(&mut rest, len)?;
                Raw::Range(value_start, value_start + len)
            }
            _ => return Err(KeyError::Malformed("unsupported wire type")),
        };
        if let Some(i) = fields.iter().position(|f| f.number == number && f.kind.wire_type() == wire) {
            if i < found.len() {
                found[i] = Some(raw);
            }
        }
    }
    let mut id = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            id.push('-');
        }
        let raw = found.get(i).copied().flatten();
        match (field.kind, raw) {
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

#[derive(Clone, Copy, Debug)]
enum Raw {
    Scalar(u64),
    Range(usize, usize),
}

fn push_number(out: &mut String, kind: KeyKind, v: u64) {
    use std::fmt::Write;
    let _ = match kind {
        KeyKind::Signed | KeyKind::SFixed64 => write!(out, "{}", v as i64),
        KeyKind::SFixed32 => write!(out, "{}", v as u32 as i32),
        KeyKind::ZigZag => write!(out, "{}", ((v >> 1) as i64) ^ -((v & 1) as i64)),
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
            f(3, KeyKind::ZigZag),
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
    fn last_occurrence_wins_and_garbage_is_rejected() {
        let mut bytes = Keys { user: "first".into(), ..Default::default() }.encode_to_vec();
        bytes.extend(Keys { user: "second".into(), ..Default::default() }.encode_to_vec());
        assert_eq!(extract(&bytes, &[f(1, KeyKind::String)]).unwrap(), "second");
        assert!(matches!(extract(&[0x0a, 0x05, b'a'], &[f(1, KeyKind::String)]), Err(KeyError::Malformed(_))));
        assert!(matches!(extract(&[0xff; 11], &[f(1, KeyKind::String)]), Err(KeyError::Malformed(_))));
    }
}
