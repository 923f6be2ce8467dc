//! The HPACK encoder: fields to a header block, using the static table, a dynamic table as
//! large as the peer allows (up to a limit of ours), and Huffman coding when it is shorter.

use bytes::Bytes;

use super::huffman;
use super::table::{DynamicTable, STATIC, entry_size, static_named};

/// How a field may be kept in the tables (§6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexing {
    /// Added to the dynamic table, so that the next block can refer to it (fields that
    /// repeat: `content-type`, `user-agent`, a path).
    Incremental,
    /// Sent as a literal, not added (values that change each time: `grpc-timeout`).
    Without,
    /// Sent as a literal that intermediaries must never index either (secrets:
    /// `authorization`, cookies).
    Never,
}

/// Appends an integer with an `n`-bit prefix (§5.1); `flags` are the first byte's bits
/// above the prefix.
pub(crate) fn encode_int(value: usize, n: u8, flags: u8, dst: &mut Vec<u8>) {
    let mask = (1usize << n) - 1;
    if value < mask {
        dst.push(flags | value as u8);
        return;
    }
    dst.push(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        dst.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    dst.push(rest as u8);
}

/// Appends a string literal (§5.2), Huffman-coded unless that is longer.
pub(crate) fn encode_string(s: &[u8], dst: &mut Vec<u8>) {
    let coded = huffman::encoded_len(s);
    if coded <= s.len() {
        encode_int(coded, 7, 0x80, dst);
        huffman::encode(s, dst);
    } else {
        encode_int(s.len(), 7, 0, dst);
        dst.extend_from_slice(s);
    }
}

/// Encodes header blocks for one connection direction.
#[derive(Debug, Clone)]
pub struct Encoder {
    table: DynamicTable,
    /// The most table we use, whatever the peer allows.
    limit: usize,
    /// Size updates to send at the start of the next block: the smallest limit seen since
    /// the last block, then the current one (§4.2).
    pending: Option<(usize, usize)>,
    /// Counts the changes to the table (entries added, size changed): an encoded block that
    /// refers to the dynamic table stays valid while this does not move.
    generation: u64,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder::new(4096)
    }
}

/// Where a field was found in the tables.
enum Found {
    /// Name and value: index.
    Field(usize),
    /// Name only: index.
    Name(usize),
    None,
}

impl Encoder {
    /// An encoder that uses at most `limit` bytes of dynamic table (and never more than the
    /// peer's SETTINGS_HEADER_TABLE_SIZE, 4096 until it says otherwise).
    pub fn new(limit: usize) -> Encoder {
        let size = limit.min(4096);
        Encoder {
            table: DynamicTable::new(size),
            limit,
            // Below HTTP/2's default, the peer's decoder learns the size from the first block.
            pending: (size < 4096).then_some((size, size)),
            generation: 0,
        }
    }

    /// The dynamic table, for tests and diagnostics.
    pub fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// How many times the dynamic table changed (an entry added, its size changed, or a
    /// size update still to announce): a block encoded at one generation means the same
    /// fields as long as the generation has not moved.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE changed: the table follows (within our limit),
    /// and the next block starts with the size update(s) that say so.
    pub fn set_peer_table_size(&mut self, peer: usize) {
        let size = peer.min(self.limit);
        if size == self.table.max_size() && self.pending.is_none() {
            return;
        }
        let lowest = self.pending.map_or(size, |(lowest, _)| lowest.min(size));
        self.pending = Some((lowest, size));
        self.table.set_max_size(size);
        self.generation += 1;
    }

    /// Appends the header block of `fields` to `dst`.
    pub fn encode<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8], Indexing)>,
        dst: &mut Vec<u8>,
    ) {
        self.encode_pending(dst);
        for (name, value, indexing) in fields {
            self.encode_field(name, value, indexing, dst);
        }
    }

    /// [`Encoder::encode`] for blocks whose first fields repeat from one block to the next
    /// (a client's requests: method, scheme, authority, path, content-type...). The leading
    /// run of [`Indexing::Incremental`] fields is compared with `memo`'s; when it is the same
    /// and the table has not changed since, its encoding is copied from the memo instead of
    /// searched for in the tables again. Otherwise it is encoded, and remembered when that
    /// changed nothing in the table. The bytes are always those `encode` would write.
    pub(crate) fn encode_with_memo<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8], Indexing)>,
        dst: &mut Vec<u8>,
        memo: &mut PrefixMemo,
    ) {
        self.encode_pending(dst);
        let mut fields = fields.into_iter();
        let valid = memo.generation == Some(self.generation);
        // How far into the memo's key the fields so far match it.
        let mut pos = 0;
        let first_of_rest = loop {
            match fields.next() {
                Some((name, value, Indexing::Incremental)) => {
                    if valid && let Some(next) = memo.matches_at(pos, name, value) {
                        pos = next;
                        continue;
                    }
                    // A new prefix: the memo's entries that matched, this field and the
                    // incremental ones after it.
                    memo.scratch.clear();
                    memo.scratch.extend_from_slice(&memo.key[..pos]);
                    push_entry(&mut memo.scratch, name, value);
                    let rest = loop {
                        match fields.next() {
                            Some((name, value, Indexing::Incremental)) => {
                                push_entry(&mut memo.scratch, name, value);
                            }
                            other => break other,
                        }
                    };
                    let start = dst.len();
                    let before = self.generation;
                    for (name, value) in entries(&memo.scratch) {
                        self.encode_field(name, value, Indexing::Incremental, dst);
                    }
                    if self.generation == before && memo.scratch.len() <= MEMO_LIMIT {
                        memo.block.clear();
                        memo.block.extend_from_slice(&dst[start..]);
                        std::mem::swap(&mut memo.key, &mut memo.scratch);
                        memo.generation = Some(self.generation);
                    } else {
                        memo.generation = None;
                    }
                    memo.shed();
                    break rest;
                }
                other => {
                    if valid && pos == memo.key.len() {
                        dst.extend_from_slice(&memo.block);
                    } else {
                        // Fewer fields than the memo's: its first ones, encoded (a part of a
                        // block that changed nothing in the table changes nothing either).
                        for (name, value) in entries(&memo.key[..pos]) {
                            self.encode_field(name, value, Indexing::Incremental, dst);
                        }
                    }
                    break other;
                }
            }
        };
        if let Some((name, value, indexing)) = first_of_rest {
            self.encode_field(name, value, indexing, dst);
            for (name, value, indexing) in fields {
                self.encode_field(name, value, indexing, dst);
            }
        }
    }

    /// The table size updates still to announce, at the start of a block.
    fn encode_pending(&mut self, dst: &mut Vec<u8>) {
        if let Some((lowest, size)) = self.pending.take() {
            if lowest < size {
                encode_int(lowest, 5, 0x20, dst);
            }
            encode_int(size, 5, 0x20, dst);
            self.generation += 1;
        }
    }

    fn encode_field(&mut self, name: &[u8], value: &[u8], indexing: Indexing, dst: &mut Vec<u8>) {
        let found = self.find(name, value, indexing != Indexing::Never);
        if let Found::Field(index) = found {
            encode_int(index, 7, 0x80, dst);
            return;
        }
        let name_index = match found {
            Found::Name(index) => index,
            _ => 0,
        };
        // A field larger than the table would only empty it.
        let indexing = if indexing == Indexing::Incremental
            && entry_size(name, value) > self.table.max_size()
        {
            Indexing::Without
        } else {
            indexing
        };
        let (n, flags) = match indexing {
            Indexing::Incremental => (6, 0x40),
            Indexing::Without => (4, 0x00),
            Indexing::Never => (4, 0x10),
        };
        encode_int(name_index, n, flags, dst);
        if name_index == 0 {
            encode_string(name, dst);
        }
        encode_string(value, dst);
        if indexing == Indexing::Incremental {
            self.table
                .insert(Bytes::copy_from_slice(name), Bytes::copy_from_slice(value));
            self.generation += 1;
        }
    }

    /// The best table match: the whole field (only when `whole` is allowed), else the name.
    fn find(&self, name: &[u8], value: &[u8], whole: bool) -> Found {
        let mut name_match = None;
        if let Some((start, count)) = static_named(name) {
            if whole {
                for (i, (_, v)) in STATIC[start..start + count].iter().enumerate() {
                    if v.as_bytes() == value {
                        return Found::Field(start + i + 1);
                    }
                }
            }
            name_match = Some(start + 1);
        }
        for (i, (n, v)) in self.table.iter().enumerate() {
            if &n[..] == name {
                if whole && &v[..] == value {
                    return Found::Field(i + 62);
                }
                name_match.get_or_insert(i + 62);
            }
        }
        name_match.map_or(Found::None, Found::Name)
    }
}

/// The leading incremental fields of the last block an [`Encoder::encode_with_memo`] wrote,
/// and their encoding, valid while the encoder's table stays as it was.
#[derive(Debug, Clone, Default)]
pub(crate) struct PrefixMemo {
    /// The fields, each as name length, name, value length, value (lengths as
    /// little-endian `usize`).
    key: Vec<u8>,
    /// Their encoding.
    block: Vec<u8>,
    /// The encoder's generation the block was made at; `None` when there is no block.
    generation: Option<u64>,
    /// The key being built, kept for its capacity.
    scratch: Vec<u8>,
}

const LEN: usize = std::mem::size_of::<usize>();

/// The largest prefix a memo keeps (as key bytes); a larger one (huge metadata values) is
/// encoded each time rather than held for the connection's life.
const MEMO_LIMIT: usize = 16 << 10;

impl PrefixMemo {
    /// Lets go of buffers grown past what the memo keeps.
    fn shed(&mut self) {
        if self.scratch.capacity() > 2 * MEMO_LIMIT {
            self.scratch = Vec::new();
        }
        // A kept block never grows past the limit, so only a memo that holds none can own
        // such buffers.
        if self.generation.is_none()
            && (self.key.capacity() > 2 * MEMO_LIMIT || self.block.capacity() > 2 * MEMO_LIMIT)
        {
            self.key = Vec::new();
            self.block = Vec::new();
        }
    }

    /// Whether the memo holds a block (for tests).
    #[cfg(test)]
    pub(crate) fn holds(&self) -> bool {
        self.generation.is_some()
    }

    /// Where the key's entry after the one at `pos` starts, if that one is `name`, `value`.
    fn matches_at(&self, pos: usize, name: &[u8], value: &[u8]) -> Option<usize> {
        let after_name = take_entry_part(&self.key, pos, name)?;
        take_entry_part(&self.key, after_name, value)
    }
}

/// Where the key's part at `pos` ends, if it is `part` (its length, then its bytes).
fn take_entry_part(key: &[u8], pos: usize, part: &[u8]) -> Option<usize> {
    let len = key.get(pos..pos + LEN)?;
    if len != part.len().to_le_bytes() {
        return None;
    }
    let end = pos + LEN + part.len();
    (key.get(pos + LEN..end)? == part).then_some(end)
}

fn push_entry(key: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for part in [name, value] {
        key.extend_from_slice(&part.len().to_le_bytes());
        key.extend_from_slice(part);
    }
}

/// The fields of a key.
fn entries(mut key: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut part = move || {
        let (len, rest) = key.split_first_chunk::<LEN>()?;
        let (part, rest) = rest.split_at_checked(usize::from_le_bytes(*len))?;
        key = rest;
        Some(part)
    };
    std::iter::from_fn(move || Some((part()?, part()?)))
}
