//! The static table (RFC 7541 Appendix A) and the dynamic table (§4).

use std::collections::VecDeque;

use bytes::Bytes;

/// The static table: index 1 is `STATIC[0]`.
pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The static table's entries named `name`, as `STATIC[start..start + count]` (entries of
/// one name are adjacent): a `match` on the name rather than a scan of all 61.
pub(crate) fn static_named(name: &[u8]) -> Option<(usize, usize)> {
    Some(match name {
        b":authority" => (0, 1),
        b":method" => (1, 2),
        b":path" => (3, 2),
        b":scheme" => (5, 2),
        b":status" => (7, 7),
        b"accept-charset" => (14, 1),
        b"accept-encoding" => (15, 1),
        b"accept-language" => (16, 1),
        b"accept-ranges" => (17, 1),
        b"accept" => (18, 1),
        b"access-control-allow-origin" => (19, 1),
        b"age" => (20, 1),
        b"allow" => (21, 1),
        b"authorization" => (22, 1),
        b"cache-control" => (23, 1),
        b"content-disposition" => (24, 1),
        b"content-encoding" => (25, 1),
        b"content-language" => (26, 1),
        b"content-length" => (27, 1),
        b"content-location" => (28, 1),
        b"content-range" => (29, 1),
        b"content-type" => (30, 1),
        b"cookie" => (31, 1),
        b"date" => (32, 1),
        b"etag" => (33, 1),
        b"expect" => (34, 1),
        b"expires" => (35, 1),
        b"from" => (36, 1),
        b"host" => (37, 1),
        b"if-match" => (38, 1),
        b"if-modified-since" => (39, 1),
        b"if-none-match" => (40, 1),
        b"if-range" => (41, 1),
        b"if-unmodified-since" => (42, 1),
        b"last-modified" => (43, 1),
        b"link" => (44, 1),
        b"location" => (45, 1),
        b"max-forwards" => (46, 1),
        b"proxy-authenticate" => (47, 1),
        b"proxy-authorization" => (48, 1),
        b"range" => (49, 1),
        b"referer" => (50, 1),
        b"refresh" => (51, 1),
        b"retry-after" => (52, 1),
        b"server" => (53, 1),
        b"set-cookie" => (54, 1),
        b"strict-transport-security" => (55, 1),
        b"transfer-encoding" => (56, 1),
        b"user-agent" => (57, 1),
        b"vary" => (58, 1),
        b"via" => (59, 1),
        b"www-authenticate" => (60, 1),
        _ => return None,
    })
}

/// What an entry costs in the table: its name and value plus 32 (§4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// The size of an entry of `name` and `value`.
pub fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + ENTRY_OVERHEAD
}

/// The dynamic table: newest entry first (index 62 in the combined index space).
#[derive(Debug, Clone)]
pub struct DynamicTable {
    entries: VecDeque<(Bytes, Bytes)>,
    size: usize,
    max_size: usize,
}

impl DynamicTable {
    /// An empty table of at most `max_size` bytes.
    pub fn new(max_size: usize) -> DynamicTable {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    /// The entries' size (§4.1).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The table's limit.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry at `index` from the newest (0 is the newest).
    pub fn get(&self, index: usize) -> Option<&(Bytes, Bytes)> {
        self.entries.get(index)
    }

    /// The entries, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &(Bytes, Bytes)> {
        self.entries.iter()
    }

    /// A new limit: entries are evicted, oldest first, until the table fits (§4.3).
    pub fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    /// Adds an entry (§4.4): older entries are evicted to make room; an entry larger than
    /// the whole table empties it and is not added.
    pub fn insert(&mut self, name: Bytes, value: Bytes) {
        let size = entry_size(&name, &value);
        if size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - size);
        self.size += size;
        self.entries.push_front((name, value));
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            match self.entries.pop_back() {
                Some((name, value)) => self.size -= entry_size(&name, &value),
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_named_finds_every_static_name_and_nothing_else() {
        for (name, _) in STATIC {
            let (start, count) = static_named(name.as_bytes()).expect(name);
            let expected: Vec<usize> = (0..STATIC.len()).filter(|&i| STATIC[i].0 == name).collect();
            assert_eq!(
                (start..start + count).collect::<Vec<_>>(),
                expected,
                "{name}"
            );
        }
        for other in [
            "",
            "te",
            "grpc-status",
            ":Path",
            "content-typ",
            "user-agents",
        ] {
            assert_eq!(static_named(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn eviction_keeps_the_size_within_the_limit() {
        let mut table = DynamicTable::new(100);
        // 32 + 2 + 2 = 36 bytes each: two fit, the third evicts the oldest.
        for (n, v) in [("a1", "v1"), ("a2", "v2"), ("a3", "v3")] {
            table.insert(
                Bytes::from_static(n.as_bytes()),
                Bytes::from_static(v.as_bytes()),
            );
        }
        assert_eq!(table.len(), 2);
        assert_eq!(table.size(), 72);
        assert_eq!(table.get(0).map(|e| &e.0[..]), Some(&b"a3"[..]));
        assert_eq!(table.get(1).map(|e| &e.0[..]), Some(&b"a2"[..]));
        // A smaller limit evicts; zero empties.
        table.set_max_size(40);
        assert_eq!((table.len(), table.size()), (1, 36));
        table.set_max_size(0);
        assert_eq!((table.len(), table.size()), (0, 0));
        // An entry larger than the table empties it and is not added.
        table.set_max_size(40);
        table.insert(Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        table.insert(
            Bytes::from_static(b"long-name"),
            Bytes::from_static(b"long-value"),
        );
        assert!(table.is_empty());
    }
}
