//! The Huffman code for string literals (RFC 7541 §5.2, Appendix B).
//!
//! The Appendix B code is canonical: within each length, codes are
//! consecutive in symbol order, and each length's first code follows the
//! previous length's last. So the code lengths alone define it; the codes and
//! the decoding tables are derived from them at compile time.
//!
//! Decoding keeps up to 64 input bits in an accumulator and looks the next
//! 12 of them up in a 4,096-entry table, which yields every code of up to 12
//! bits in one step, and two codes at once when both fit (lowercase letters
//! and digits are 5 or 6 bits, so text mostly decodes two bytes a lookup).
//! Longer codes fall back to a canonical search over lengths 13..=30.

/// Code lengths in bits for symbols 0..=255 and EOS (256), from Appendix B.
#[rustfmt::skip]
const CODE_LEN: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0..16
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16..32
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,         // ' '..'0'
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,              // '0'..'@'
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,                // '@'..'P'
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,             // 'P'..'`'
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,                // '`'..'p'
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,            // 'p'..128
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128..144
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144..160
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160..176
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176..192
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192..208
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208..224
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224..240
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240..256
    30,                                                             // EOS
];

const EOS: u16 = 256;
const MAX_LEN: usize = 30;
/// Input bits resolved by one lookup in `Code::fast`: room for two of the
/// 5- and 6-bit codes that most header text is made of.
const FAST_BITS: u32 = 12;

/// Why a Huffman-coded string is invalid (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    #[error("Huffman string contains the EOS symbol")]
    Eos,
    #[error("Huffman string ends with {0} bits that are no complete code (padding is at most 7 bits)")]
    LongPadding(u32),
    #[error("Huffman string padding is not a prefix of EOS (all ones)")]
    BadPadding,
}

/// The canonical code, decoding tables included.
struct Code {
    /// Each symbol's code, right-aligned.
    codes: [u32; 257],
    /// The symbols ordered by (length, symbol): code order.
    sorted: [u16; 257],
    /// Per length: the first code, the number of codes, and the position of
    /// the first one in `sorted`.
    first: [u32; MAX_LEN + 1],
    count: [u32; MAX_LEN + 1],
    offset: [u16; MAX_LEN + 1],
    /// Indexed by the next `FAST_BITS` input bits: the codes wholly inside
    /// them, at most two. `Fast::NONE` when the first code is longer.
    fast: [Fast; 1 << FAST_BITS],
}

/// One `Code::fast` entry: `symbols` codes (0 to 2), the first `first`
/// with a code of `first_len` bits, then `second`, `len` bits in all.
#[derive(Clone, Copy)]
struct Fast {
    first: u8,
    second: u8,
    first_len: u8,
    len: u8,
    symbols: u8,
}

impl Fast {
    const NONE: Fast = Fast { first: 0, second: 0, first_len: 0, len: 0, symbols: 0 };
}

static CODE: Code = Code::canonical();

impl Code {
    const fn canonical() -> Code {
        let mut code = Code {
            codes: [0; 257],
            sorted: [0; 257],
            first: [0; MAX_LEN + 1],
            count: [0; MAX_LEN + 1],
            offset: [0; MAX_LEN + 1],
            fast: [Fast::NONE; 1 << FAST_BITS],
        };
        let (mut next, mut position, mut len) = (0u32, 0u16, 1);
        while len <= MAX_LEN {
            next <<= 1;
            code.first[len] = next;
            code.offset[len] = position;
            let mut symbol = 0;
            while symbol < 257 {
                if CODE_LEN[symbol] as usize == len {
                    code.codes[symbol] = next;
                    code.sorted[position as usize] = symbol as u16;
                    next += 1;
                    position += 1;
                    code.count[len] += 1;
                }
                symbol += 1;
            }
            len += 1;
        }
        let mut index = 0;
        while index < 1 << FAST_BITS {
            let (first, first_len) = code.find(index, FAST_BITS, 1);
            if first_len > 0 {
                let rest = FAST_BITS - first_len;
                let (second, second_len) = code.find(index & ((1 << rest) - 1), rest, 1);
                code.fast[index as usize] = Fast {
                    first: first as u8,
                    second: second as u8,
                    first_len: first_len as u8,
                    len: (first_len + second_len) as u8,
                    symbols: if second_len > 0 { 2 } else { 1 },
                };
            }
            index += 1;
        }
        code
    }

    /// Canonical decoding of the `width`-bit `window` (MSB first), trying
    /// code lengths from `from_len` on: the first length whose codes include
    /// the window's prefix of that length. Length 0 if no code fits.
    const fn find(&self, window: u32, width: u32, from_len: usize) -> (u16, u32) {
        let mut len = from_len;
        while len <= MAX_LEN && len as u32 <= width {
            let rank = (window >> (width - len as u32)).wrapping_sub(self.first[len]);
            if rank < self.count[len] {
                return (self.sorted[self.offset[len] as usize + rank as usize], len as u32);
            }
            len += 1;
        }
        (0, 0)
    }

    /// The symbol whose code starts `bits` (input bits, MSB first) and its
    /// length. Past the input's end `bits` must hold zeros.
    #[inline]
    fn symbol(&self, bits: u64) -> (u16, u32) {
        let fast = self.fast[(bits >> (64 - FAST_BITS)) as usize];
        if fast.symbols > 0 {
            return (u16::from(fast.first), u32::from(fast.first_len));
        }
        self.long_symbol(bits)
    }

    /// `symbol` for the codes longer than `FAST_BITS`: rare in headers.
    #[cold]
    fn long_symbol(&self, bits: u64) -> (u16, u32) {
        match self.find((bits >> 32) as u32, 32, FAST_BITS as usize + 1) {
            // Not reached: the code is complete (its last code, EOS, is all
            // ones), so every 30 bits start some code.
            (_, 0) => (EOS, MAX_LEN as u32),
            found => found,
        }
    }
}

/// The length of `src` Huffman-coded, in bytes.
pub(super) fn encoded_len(src: &[u8]) -> usize {
    src.iter().map(|&b| usize::from(CODE_LEN[usize::from(b)])).sum::<usize>().div_ceil(8)
}

/// Appends `src` Huffman-coded to `dst`, padded with the start of EOS.
pub(super) fn encode(src: &[u8], dst: &mut Vec<u8>) {
    // Pending bits, right-aligned; fewer than 8 are left after each symbol.
    let (mut bits, mut pending) = (0u64, 0u32);
    for &b in src {
        let len = u32::from(CODE_LEN[usize::from(b)]);
        bits = bits << len | u64::from(CODE.codes[usize::from(b)]);
        pending += len;
        while pending >= 8 {
            pending -= 8;
            dst.push((bits >> pending) as u8);
        }
    }
    if pending > 0 {
        dst.push((bits << (8 - pending)) as u8 | 0xff >> pending);
    }
}

/// Appends the decoding of `src` to `dst`.
pub(super) fn decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), HuffmanError> {
    // Every code is at least 5 bits long.
    dst.reserve(src.len() * 8 / 5);
    // Input bits, MSB first: `have` not yet decoded, then possibly the start
    // of the bytes after them (never anything else, so refilling may OR
    // those bytes in again), then zeros.
    let (mut bits, mut have) = (0u64, 0u32);
    let mut rest = src;
    loop {
        // Refill to at least 57 bits, or to the end of the input.
        if let Some(word) = rest.first_chunk::<8>() {
            bits |= u64::from_be_bytes(*word) >> have;
            let taken = (64 - have) / 8;
            have += taken * 8;
            rest = &rest[taken as usize..];
        } else {
            while have <= 56 {
                let Some((&b, after)) = rest.split_first() else { break };
                bits |= u64::from(b) << (56 - have);
                have += 8;
                rest = after;
            }
        }
        if have < MAX_LEN as u32 {
            // Fewer than a longest code left, so the input has ended.
            return tail(bits, have, dst);
        }
        // Decode while a longest code still fits in what was refilled; no
        // code can then run past the input, so two at a time are safe.
        while have >= MAX_LEN as u32 {
            let fast = CODE.fast[(bits >> (64 - FAST_BITS)) as usize];
            let len = match fast.symbols {
                0 => {
                    let (symbol, len) = CODE.long_symbol(bits);
                    if symbol == EOS {
                        return Err(HuffmanError::Eos);
                    }
                    dst.push(symbol as u8);
                    len
                }
                1 => {
                    dst.push(fast.first);
                    u32::from(fast.len)
                }
                _ => {
                    dst.extend_from_slice(&[fast.first, fast.second]);
                    u32::from(fast.len)
                }
            };
            bits <<= len;
            have -= len;
        }
    }
}

/// Decodes the last `have` (< 30) bits, MSB-aligned in `bits`, zeros after.
fn tail(mut bits: u64, mut have: u32, dst: &mut Vec<u8>) -> Result<(), HuffmanError> {
    while have > 0 {
        let (symbol, len) = CODE.symbol(bits);
        if len > have {
            // The input ends inside a code: that is the padding.
            return padding(bits, have);
        }
        // EOS is 30 bits long, more than there are.
        dst.push(symbol as u8);
        bits <<= len;
        have -= len;
    }
    Ok(())
}

/// Checks the `have` bits left at the end of a string, MSB-aligned in
/// `bits`: padding must be at most 7 bits of EOS's start, all ones.
fn padding(bits: u64, have: u32) -> Result<(), HuffmanError> {
    if have > 7 {
        return Err(HuffmanError::LongPadding(have));
    }
    let ones = !(u64::MAX >> have);
    if bits & ones != ones {
        return Err(HuffmanError::BadPadding);
    }
    Ok(())
}

/// Each symbol's (code, length), for tests against the RFC's table.
#[cfg(test)]
pub(super) fn code_of(symbol: usize) -> (u32, u8) {
    (CODE.codes[symbol], CODE_LEN[symbol])
}
