//! The HPACK decoder (RFC 7541 §3, §6): header blocks to fields, with the header-list limit
//! enforced while decoding and the dynamic table bounded by our own setting.

use bytes::Bytes;

use super::huffman::{self, HuffmanError};
use super::table::{DynamicTable, STATIC, entry_size};

/// One decoded header field. Names and values are slices of the block when they were sent
/// as plain literals (no copy), or of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name, as sent (HTTP/2 requires lower case; checking it is the caller's).
    pub name: Bytes,
    /// The value.
    pub value: Bytes,
    /// Sent as "never indexed" (§6.2.3): an intermediary must forward it so too.
    pub never_indexed: bool,
}

/// Why a header block does not decode: every one is a connection error of type
/// COMPRESSION_ERROR in HTTP/2 (RFC 9113 §4.3), since the decoder's state is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The block ends inside a representation.
    Truncated,
    /// An integer above 2^32 (§5.1 leaves the limit to the implementation).
    IntegerOverflow,
    /// Index 0, or an index past the static and dynamic tables.
    BadIndex(usize),
    /// A Huffman string with EOS or bad padding.
    Huffman(HuffmanError),
    /// A dynamic table size update above the limit our SETTINGS allow (§6.3).
    TableSizeTooLarge(usize),
    /// A dynamic table size update after the first field of a block (§4.2).
    LateTableSizeUpdate,
    /// Our setting went below the table's size and the block does not start with the
    /// size update that must follow (§4.2).
    MissingTableSizeUpdate,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("header block ends inside a field"),
            DecodeError::IntegerOverflow => f.write_str("integer too large"),
            DecodeError::BadIndex(i) => write!(f, "no table entry {i}"),
            DecodeError::Huffman(HuffmanError::Eos) => f.write_str("EOS in a Huffman string"),
            DecodeError::Huffman(HuffmanError::Padding) => {
                f.write_str("bad padding of a Huffman string")
            }
            DecodeError::TableSizeTooLarge(n) => {
                write!(f, "dynamic table size update to {n}, above the limit")
            }
            DecodeError::LateTableSizeUpdate => {
                f.write_str("dynamic table size update after a field")
            }
            DecodeError::MissingTableSizeUpdate => {
                f.write_str("no dynamic table size update after the limit was lowered")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// What decoding a block found beyond its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The header list's size (§4.1 of RFC 7541: names, values and 32 per field), counted
    /// to the end of the block even past the limit.
    pub list_size: usize,
    /// The list is larger than the limit: fields past it were not delivered (the block was
    /// still decoded to the end, so the table stays in step with the peer's). HTTP/2 makes
    /// this a stream error, or a 431 response.
    pub too_large: bool,
}

/// Decodes header blocks; one per connection direction, since blocks share the table.
#[derive(Debug, Clone)]
pub struct Decoder {
    table: DynamicTable,
    /// The largest table the peer may use: our SETTINGS_HEADER_TABLE_SIZE (acknowledged).
    allowed: usize,
    /// Our setting went below the table's limit: the next block must lower it.
    update_due: bool,
    /// The last few short Huffman-coded literals and what they decode to. Peers send some
    /// values as literals every time (nghttp2 never indexes `:path`, for one), so a gRPC
    /// client's method path is the same Huffman string call after call: a byte compare
    /// instead of decoding it again.
    memo: Vec<(Bytes, Bytes)>,
    /// Where the next memo entry goes once it is full.
    memo_next: usize,
}

/// How many literals the memo keeps, and the longest one it keeps (encoded).
const MEMO_ENTRIES: usize = 4;
const MEMO_MAX_LEN: usize = 128;

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new(4096)
    }
}

/// Reads an integer with an `n`-bit prefix (§5.1) at `*pos`, moving past it.
pub(crate) fn decode_int(block: &[u8], pos: &mut usize, n: u8) -> Result<usize, DecodeError> {
    let first = *block.get(*pos).ok_or(DecodeError::Truncated)?;
    *pos += 1;
    let mask = (1u16 << n) - 1;
    let mut value = u64::from(first) & u64::from(mask);
    if value < u64::from(mask) {
        return Ok(value as usize);
    }
    let mut shift = 0u32;
    loop {
        let byte = *block.get(*pos).ok_or(DecodeError::Truncated)?;
        *pos += 1;
        value += u64::from(byte & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(DecodeError::IntegerOverflow);
        }
        if byte & 0x80 == 0 {
            return usize::try_from(value).map_err(|_| DecodeError::IntegerOverflow);
        }
        shift += 7;
        if shift > 28 {
            return Err(DecodeError::IntegerOverflow);
        }
    }
}

impl Decoder {
    /// A decoder whose table may grow to `max_table_size` (our SETTINGS_HEADER_TABLE_SIZE;
    /// HTTP/2's default is 4096).
    pub fn new(max_table_size: usize) -> Decoder {
        Decoder {
            table: DynamicTable::new(max_table_size),
            allowed: max_table_size,
            update_due: false,
            memo: Vec::new(),
            memo_next: 0,
        }
    }

    /// The dynamic table, for tests and diagnostics.
    pub fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Our SETTINGS_HEADER_TABLE_SIZE changed (call when the peer acknowledges it). A
    /// lower limit than the table's requires the peer's next block to start with a size
    /// update within it.
    pub fn set_allowed_table_size(&mut self, allowed: usize) {
        self.allowed = allowed;
        if allowed < self.table.max_size() {
            self.update_due = true;
        }
    }

    /// Decodes one complete header block (HEADERS plus CONTINUATIONs), handing each field
    /// to `field` until the list passes `max_list_size` bytes.
    pub fn decode(
        &mut self,
        block: &Bytes,
        max_list_size: usize,
        mut field: impl FnMut(Field),
    ) -> Result<Decoded, DecodeError> {
        let mut pos = 0;
        let mut list_size = 0usize;
        let mut too_large = false;
        let mut fields_seen = false;
        while pos < block.len() {
            let first = block[pos];
            let decoded = if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let index = decode_int(block, &mut pos, 7)?;
                let (name, value) = self.entry(index)?;
                Some(Field {
                    name,
                    value,
                    never_indexed: false,
                })
            } else if first & 0x40 != 0 {
                // Literal with incremental indexing (§6.2.1).
                let (name, value) = self.literal(block, &mut pos, 6)?;
                // The table keeps copies of what are slices of the block: a slice would keep
                // the connection's whole read buffer alive for as long as the entry lives.
                let (name, value) = (owned(name, block), owned(value, block));
                self.table.insert(name.clone(), value.clone());
                Some(Field {
                    name,
                    value,
                    never_indexed: false,
                })
            } else if first & 0x20 != 0 {
                // Dynamic table size update (§6.3): only before the first field.
                if fields_seen {
                    return Err(DecodeError::LateTableSizeUpdate);
                }
                let size = decode_int(block, &mut pos, 5)?;
                if size > self.allowed {
                    return Err(DecodeError::TableSizeTooLarge(size));
                }
                self.table.set_max_size(size);
                self.update_due = false;
                None
            } else {
                // Literal without indexing (0000) or never indexed (0001) (§6.2.2, §6.2.3).
                let never_indexed = first & 0x10 != 0;
                let (name, value) = self.literal(block, &mut pos, 4)?;
                Some(Field {
                    name,
                    value,
                    never_indexed,
                })
            };
            let Some(decoded) = decoded else { continue };
            if self.update_due {
                return Err(DecodeError::MissingTableSizeUpdate);
            }
            fields_seen = true;
            list_size = list_size.saturating_add(entry_size(&decoded.name, &decoded.value));
            if list_size > max_list_size {
                too_large = true;
            }
            if !too_large {
                field(decoded);
            }
        }
        if self.update_due {
            return Err(DecodeError::MissingTableSizeUpdate);
        }
        Ok(Decoded {
            list_size,
            too_large,
        })
    }

    /// The entry at `index` of the combined index space (§2.3.3).
    fn entry(&self, index: usize) -> Result<(Bytes, Bytes), DecodeError> {
        match index {
            0 => Err(DecodeError::BadIndex(0)),
            1..=61 => {
                let (name, value) = STATIC[index - 1];
                Ok((
                    Bytes::from_static(name.as_bytes()),
                    Bytes::from_static(value.as_bytes()),
                ))
            }
            _ => self
                .table
                .get(index - 62)
                .cloned()
                .ok_or(DecodeError::BadIndex(index)),
        }
    }

    /// A literal field's name (indexed with an `n`-bit prefix, or a string) and value.
    /// Plain (not Huffman-coded) strings are slices of `block`.
    fn literal(
        &mut self,
        block: &Bytes,
        pos: &mut usize,
        n: u8,
    ) -> Result<(Bytes, Bytes), DecodeError> {
        let index = decode_int(block, pos, n)?;
        let name = if index == 0 {
            self.string(block, pos)?
        } else {
            self.entry(index)?.0
        };
        let value = self.string(block, pos)?;
        Ok((name, value))
    }

    /// A string literal (§5.2) at `*pos`: a slice of the block, or its Huffman decoding.
    fn string(&mut self, block: &Bytes, pos: &mut usize) -> Result<Bytes, DecodeError> {
        let huffman = block.get(*pos).ok_or(DecodeError::Truncated)? & 0x80 != 0;
        let len = decode_int(block, pos, 7)?;
        let end = pos.checked_add(len).ok_or(DecodeError::Truncated)?;
        if end > block.len() {
            return Err(DecodeError::Truncated);
        }
        let raw = &block[*pos..end];
        *pos = end;
        if !huffman {
            return Ok(block.slice(end - len..end));
        }
        if let Some((_, decoded)) = self.memo.iter().find(|(r, _)| r[..] == *raw) {
            return Ok(decoded.clone());
        }
        let mut out = Vec::new();
        huffman::decode(raw, &mut out).map_err(DecodeError::Huffman)?;
        let decoded = Bytes::from(out);
        if len <= MEMO_MAX_LEN {
            let entry = (Bytes::copy_from_slice(raw), decoded.clone());
            if self.memo.len() < MEMO_ENTRIES {
                self.memo.push(entry);
            } else {
                self.memo[self.memo_next] = entry;
                self.memo_next = (self.memo_next + 1) % MEMO_ENTRIES;
            }
        }
        Ok(decoded)
    }
}

/// `bytes` as an allocation of its own when it is a slice of `block` (else it already is one,
/// or static).
fn owned(bytes: Bytes, block: &Bytes) -> Bytes {
    if block.as_ptr_range().contains(&bytes.as_ptr()) {
        Bytes::copy_from_slice(&bytes)
    } else {
        bytes
    }
}
