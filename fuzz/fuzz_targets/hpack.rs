//! HPACK decoding of arbitrary header blocks, a few in a row on one
//! decoder, with small table and list-size limits: decoding never panics;
//! the fields reported stay within the list limit, and add up to the list
//! size unless it says oversize; re-encoding the fields of a decoded block
//! and decoding that, with no dynamic table at all, gives the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use massa::http2::hpack::{Decoded, Decoder, Encoder};

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fuzz_target!(|data: &[u8]| {
    // [separator] [limits] [blocks, split at each separator byte, at most 4]
    let [separator, limits, blocks @ ..] = data else { return };
    let table_size = [0, 64, 256, 4096][usize::from(limits & 3)];
    let max_list_size = 64 << (limits >> 2 & 7);
    let mut decoder = Decoder::new(table_size);
    for block in blocks.splitn(4, |b| b == separator) {
        let mut fields = Fields::new();
        // An error is a connection error: nothing after it is decoded.
        let Ok(decoded) = decoder.decode(block, max_list_size, |n, v| fields.push((n.to_vec(), v.to_vec()))) else {
            return;
        };
        let reported = list_size(&fields);
        assert!(reported <= max_list_size, "reported {reported} bytes past the limit {max_list_size}");
        assert_eq!(decoded.oversize, decoded.list_size > max_list_size);
        if !decoded.oversize {
            assert_eq!(reported, decoded.list_size);
        }

        let mut encoder = Encoder::new();
        let mut again = Vec::new();
        encoder.begin_block(&mut again);
        for (name, value) in &fields {
            encoder.field(name, value, &mut again);
        }
        let mut back = Fields::new();
        let redecoded = Decoder::new(0)
            .decode(&again, usize::MAX, |n, v| back.push((n.to_vec(), v.to_vec())))
            .expect("a re-encoded block decodes without a dynamic table");
        assert_eq!(redecoded, Decoded { list_size: reported, oversize: false });
        assert_eq!(back, fields);
    }
});

/// The header list size of RFC 9113 §6.5.2.
fn list_size(fields: &Fields) -> usize {
    fields.iter().map(|(n, v)| n.len() + v.len() + 32).sum()
}
