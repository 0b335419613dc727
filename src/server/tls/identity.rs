//! The client's identity as request metadata: the verified certificate's
//! subject in an Envoy-style `x-forwarded-client-cert` header, so functions
//! behind Massa see who called the same way as behind Envoy.

use std::fmt::Write;

use crate::http2::Headers;

/// Set on every request of an mTLS connection; removed from every request
/// of any TLS connection, so a client cannot claim an identity.
pub const CLIENT_CERT_HEADER: &[u8] = b"x-forwarded-client-cert";

/// Replaces any `x-forwarded-client-cert` the client sent with `value` (the
/// connection's, from [`header_value`]; `None` leaves none).
pub fn forward_client_cert(head: &mut Headers, value: Option<&[u8]>) {
    head.remove(CLIENT_CERT_HEADER);
    if let Some(value) = value {
        head.push(CLIENT_CERT_HEADER, value);
    }
}

/// `Subject="CN=client,O=Example"` for a DER certificate, `None` if its
/// subject cannot be read (rustls has verified the certificate by then).
pub fn header_value(certificate: &[u8]) -> Option<String> {
    Some(format!("Subject=\"{}\"", subject(certificate)?))
}

/// The certificate's subject as an RFC 4514 string: RDNs last first, known
/// attribute types by name, values escaped to visible ASCII (so the string
/// is a valid header value and needs no further quoting).
pub fn subject(certificate: &[u8]) -> Option<String> {
    let (_, cert, _) = der(certificate)?;
    let (_, mut tbs, _) = der(cert)?;
    // TBSCertificate: [0] version (optional), serial, signature algorithm,
    // issuer, validity, subject.
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = der(tbs)?.2;
    }
    let (tag, mut name, _) = der(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (tag, mut set, rest) = der(name)?;
        if tag != SET {
            return None;
        }
        let mut attributes = Vec::new();
        while !set.is_empty() {
            let (_, attribute, rest) = der(set)?;
            attributes.push(attribute_text(attribute)?);
            set = rest;
        }
        rdns.push(attributes.join("+"));
        name = rest;
    }
    rdns.reverse();
    Some(rdns.join(","))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// One DER element: `(tag, contents, rest)`.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, &b| acc << 8 | b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `type=value` of an AttributeTypeAndValue.
fn attribute_text(attribute: &[u8]) -> Option<String> {
    let (tag, oid, rest) = der(attribute)?;
    if tag != OID {
        return None;
    }
    let (value_tag, value, _) = der(rest)?;
    let mut out = match short_name(oid) {
        Some(name) => name.to_owned(),
        None => dotted(oid)?,
    };
    out.push('=');
    match string_value(value_tag, value) {
        Some(text) => escape_into(&mut out, &text),
        // RFC 4514 §2.4: anything else as `#` and the element's DER in hex.
        None => {
            out.push('#');
            for b in &rest[..rest.len() - der(rest)?.2.len()] {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
    Some(out)
}

/// RFC 4514's names for the common attribute types (contents of the OID).
fn short_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x09] => "STREET",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

/// An OID's contents as `2.5.4.45`.
fn dotted(oid: &[u8]) -> Option<String> {
    let mut arcs = Vec::new();
    let mut arc: u64 = 0;
    for &b in oid {
        arc = arc.checked_mul(128)? | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            arcs.push(arc);
            arc = 0;
        }
    }
    let first = *arcs.first()?;
    let (a, b) = if first < 80 { (first / 40, first % 40) } else { (2, first - 80) };
    let mut out = format!("{a}.{b}");
    for arc in &arcs[1..] {
        let _ = write!(out, ".{arc}");
    }
    Some(out)
}

/// The text of the directory string types certificates use.
fn string_value(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, TeletexString (in
        // practice ASCII or UTF-8).
        0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(value.to_vec()).ok(),
        // BMPString: UTF-16BE.
        0x1e if value.len() % 2 == 0 => {
            char::decode_utf16(value.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]))).collect::<Result<String, _>>().ok()
        }
        _ => None,
    }
}

/// RFC 4514 §2.4 escaping, plus `\XX` for every byte outside visible ASCII
/// (a UTF-8 character becomes its bytes' hex pairs, which §3 allows).
fn escape_into(out: &mut String, value: &str) {
    let last = value.len().saturating_sub(1);
    for (i, &b) in value.as_bytes().iter().enumerate() {
        let special = matches!(b, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' | b'=')
            || (i == 0 && matches!(b, b'#' | b' '))
            || (i == last && b == b' ');
        if special {
            out.push('\\');
            out.push(b as char);
        } else if (0x21..0x7f).contains(&b) || b == b' ' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

    fn certificate(dn: DistinguishedName) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name = dn;
        params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    #[test]
    fn subject_is_rfc4514_last_rdn_first() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "NL");
        dn.push(DnType::OrganizationName, "Acme, Inc.");
        dn.push(DnType::CommonName, "client-1");
        let der = certificate(dn);
        assert_eq!(subject(&der).as_deref(), Some("CN=client-1,O=Acme\\, Inc.,C=NL"));
        assert_eq!(header_value(&der).as_deref(), Some("Subject=\"CN=client-1,O=Acme\\, Inc.,C=NL\""));
    }

    #[test]
    fn values_are_escaped_to_visible_ascii() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, DnValue::Utf8String(" Zoë \"q\" ".to_owned()));
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 45]), DnValue::PrintableString("x".try_into().unwrap()));
        let text = subject(&certificate(dn)).unwrap();
        assert_eq!(text, "2.5.4.45=x,CN=\\ Zo\\C3\\AB \\\"q\\\"\\ ");
        assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)));
    }

    #[test]
    fn truncated_certificates_have_no_subject() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "c");
        let der = certificate(dn);
        for cut in [0, 1, 10, der.len() / 3] {
            assert_eq!(subject(&der[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn the_clients_own_header_is_replaced_or_removed() {
        let mut head = Headers::new();
        head.push(b":path", b"/a/B");
        head.push(CLIENT_CERT_HEADER, b"Subject=\"CN=admin\"");
        head.push(b"x-other", b"1");
        forward_client_cert(&mut head, Some(b"Subject=\"CN=real\""));
        let values: Vec<&[u8]> = head.iter().filter(|(n, _)| *n == CLIENT_CERT_HEADER).map(|(_, v)| v).collect();
        assert_eq!(values, vec![&b"Subject=\"CN=real\""[..]]);
        assert_eq!(head.get(b"x-other"), Some(&b"1"[..]));
        forward_client_cert(&mut head, None);
        assert_eq!(head.get(CLIENT_CERT_HEADER), None);
        assert_eq!(head.len(), 2);
    }
}
