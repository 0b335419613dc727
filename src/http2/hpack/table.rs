//! The header tables (RFC 7541 §2.3): the static table of Appendix A and the
//! decoder's dynamic table, addressed together through one index space in
//! which 1..=61 are static entries and 62.. dynamic ones, newest first.

use std::collections::VecDeque;

/// What each entry costs in the table size beyond its name and value (§4.1).
pub(super) const ENTRY_OVERHEAD: usize = 32;

/// RFC 7541 Appendix A; index 1 is `STATIC[0]`.
pub(super) static STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The static entry at `index` (1-based), if it is a static index.
pub(super) fn static_entry(index: usize) -> Option<(&'static [u8], &'static [u8])> {
    index.checked_sub(1).and_then(|i| STATIC.get(i)).copied()
}

/// How much of a field the static table holds, as an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StaticMatch {
    /// Name and value.
    Field(usize),
    /// The name only (the first entry with it).
    Name(usize),
}

/// The best static index for a field. A linear scan: 61 length compares
/// reject almost every entry, and the entries sharing a name are adjacent.
pub(super) fn find_static(name: &[u8], value: &[u8]) -> Option<StaticMatch> {
    let mut found = None;
    for (i, &(n, v)) in STATIC.iter().enumerate() {
        if n != name {
            if found.is_some() {
                break;
            }
            continue;
        }
        if v == value {
            return Some(StaticMatch::Field(i + 1));
        }
        found.get_or_insert(StaticMatch::Name(i + 1));
    }
    found
}

/// The decoder's dynamic table (§2.3.2, §4).
///
/// Storage: the entries' bytes (name then value) sit in one arena, oldest
/// first, and each new entry is appended at its end; a `VecDeque` of slots,
/// newest first, locates them. Evicting only drops slots. When an append
/// would take the arena past twice the table size, the evicted bytes at its
/// front are dropped in one move; since the live bytes never exceed the table
/// size, each byte is moved about once, and once the arena and the slot queue
/// have reached their bounds an insert allocates nothing.
pub(super) struct Table {
    arena: Vec<u8>,
    /// The arena position of `arena[0]`, counted from the first byte ever
    /// stored, so that slots stay valid when the front is dropped.
    base: usize,
    slots: VecDeque<Slot>,
    /// The table size of §4.1: each entry's name, value and overhead.
    size: usize,
    /// The current maximum size, set by the encoder's size updates.
    capacity: usize,
}

/// Where one entry's bytes are.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: usize,
    name_len: usize,
    value_len: usize,
}

impl Slot {
    fn size(&self) -> usize {
        self.name_len + self.value_len + ENTRY_OVERHEAD
    }
}

impl Table {
    pub(super) fn new(capacity: usize) -> Table {
        Table { arena: Vec::new(), base: 0, slots: VecDeque::new(), size: 0, capacity }
    }

    /// The entry at `index` in the combined index space; `None` for 0 and
    /// past the end.
    pub(super) fn get(&self, index: usize) -> Option<(&[u8], &[u8])> {
        if let Some(entry) = static_entry(index) {
            return Some(entry);
        }
        let slot = self.slots.get(index.checked_sub(STATIC.len() + 1)?)?;
        let at = slot.start - self.base;
        let (name, rest) = self.arena[at..at + slot.name_len + slot.value_len].split_at(slot.name_len);
        Some((name, rest))
    }

    /// A dynamic table size update (§6.3): evicts down to the new maximum.
    pub(super) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.evict_to(capacity);
    }

    /// Adds an entry, evicting the oldest ones to make room (§4.4). An entry
    /// larger than the whole table leaves it empty. `name` must not borrow
    /// from the table: the entry it came from may be evicted first.
    pub(super) fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        let Some(room) = self.capacity.checked_sub(size) else {
            self.evict_to(0);
            return;
        };
        self.evict_to(room);
        let len = name.len() + value.len();
        let bound = 2 * self.capacity;
        if self.arena.len() + len > bound {
            self.drop_evicted();
        }
        if self.arena.capacity() < bound {
            self.arena.reserve_exact(bound - self.arena.len());
        }
        let start = self.base + self.arena.len();
        self.arena.extend_from_slice(name);
        self.arena.extend_from_slice(value);
        self.slots.push_front(Slot { start, name_len: name.len(), value_len: value.len() });
        self.size += size;
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            let Some(oldest) = self.slots.pop_back() else { break };
            self.size -= oldest.size();
        }
    }

    /// Drops the arena's bytes before the oldest live entry.
    fn drop_evicted(&mut self) {
        let live_from = self.slots.back().map_or(self.base + self.arena.len(), |oldest| oldest.start);
        self.arena.drain(..live_from - self.base);
        self.base = live_from;
    }

    /// The table size of §4.1.
    #[cfg(test)]
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// The number of dynamic entries.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Heap bytes held, for the tests that check decoding does not grow it.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.slots.capacity() * std::mem::size_of::<Slot>()
    }
}
