//! RFC 7541 Appendix C, table size rules, limits, and property tests over random and mutated
//! blocks.

use bytes::Bytes;

use super::*;

fn hex(s: &str) -> Bytes {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect::<Vec<u8>>()
        .into()
}

fn decode_all(decoder: &mut Decoder, block: &Bytes) -> Result<Vec<(String, String)>, DecodeError> {
    let mut out = Vec::new();
    decoder.decode(block, usize::MAX, |f| {
        out.push((
            String::from_utf8_lossy(&f.name).into_owned(),
            String::from_utf8_lossy(&f.value).into_owned(),
        ))
    })?;
    Ok(out)
}

fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn table(decoder: &Decoder) -> Vec<(String, String)> {
    decoder
        .table()
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

#[test]
fn c1_integers() {
    let mut out = Vec::new();
    encoder::encode_int(10, 5, 0, &mut out);
    assert_eq!(out, [0x0a]);
    out.clear();
    encoder::encode_int(1337, 5, 0, &mut out);
    assert_eq!(out, [0x1f, 0x9a, 0x0a]);
    out.clear();
    encoder::encode_int(42, 8, 0, &mut out);
    assert_eq!(out, [0x2a]);
    for (bytes, n, value) in [
        (&[0x0a][..], 5, 10),
        (&[0x1f, 0x9a, 0x0a], 5, 1337),
        (&[0x2a], 8, 42),
    ] {
        let mut pos = 0;
        assert_eq!(decoder::decode_int(bytes, &mut pos, n), Ok(value));
        assert_eq!(pos, bytes.len());
    }
    // Round trips at every prefix width, around the boundaries.
    for n in 1..=8u8 {
        for value in [
            0,
            1,
            (1 << n) - 2,
            (1 << n) - 1,
            1 << n,
            127,
            128,
            16_383,
            1 << 20,
            u32::MAX as usize,
        ] {
            let mut out = Vec::new();
            encoder::encode_int(value, n, 0, &mut out);
            let mut pos = 0;
            assert_eq!(
                decoder::decode_int(&out, &mut pos, n),
                Ok(value),
                "{value} in {n} bits"
            );
        }
    }
}

#[test]
fn integers_past_2_pow_32_and_endless_continuations_are_errors() {
    let mut pos = 0;
    // 31 + 0xffffffff: too large.
    let too_large = [0x1f, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert_eq!(
        decoder::decode_int(&too_large, &mut pos, 5),
        Err(DecodeError::IntegerOverflow)
    );
    pos = 0;
    let endless = [0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
    assert_eq!(
        decoder::decode_int(&endless, &mut pos, 5),
        Err(DecodeError::IntegerOverflow)
    );
    pos = 0;
    assert_eq!(
        decoder::decode_int(&[0x1f, 0x80], &mut pos, 5),
        Err(DecodeError::Truncated)
    );
}

#[test]
fn c2_single_representations() {
    // C.2.1: literal with indexing, new name.
    let mut d = Decoder::default();
    let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
    assert_eq!(
        decode_all(&mut d, &block),
        Ok(fields(&[("custom-key", "custom-header")]))
    );
    assert_eq!(d.table().size(), 55);
    // C.2.2: literal without indexing, indexed name.
    let mut d = Decoder::default();
    let block = hex("040c 2f73 616d 706c 652f 7061 7468");
    assert_eq!(
        decode_all(&mut d, &block),
        Ok(fields(&[(":path", "/sample/path")]))
    );
    assert!(d.table().is_empty());
    // C.2.3: never indexed, new name.
    let mut d = Decoder::default();
    let block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
    let mut got = Vec::new();
    d.decode(&block, usize::MAX, |f| got.push(f))
        .expect("decodes");
    assert_eq!(got.len(), 1);
    assert_eq!(
        (&got[0].name[..], &got[0].value[..]),
        (&b"password"[..], &b"secret"[..])
    );
    assert!(got[0].never_indexed);
    assert!(d.table().is_empty());
    // C.2.4: indexed.
    let mut d = Decoder::default();
    assert_eq!(
        decode_all(&mut d, &hex("82")),
        Ok(fields(&[(":method", "GET")]))
    );
}

const REQUESTS: [&[(&str, &str)]; 3] = [
    &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ],
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

const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION: &str = "https://www.example.com";
const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

fn responses() -> [Vec<(String, String)>; 3] {
    [
        fields(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", DATE1),
            ("location", LOCATION),
        ]),
        fields(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", DATE1),
            ("location", LOCATION),
        ]),
        fields(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", DATE2),
            ("location", LOCATION),
            ("content-encoding", "gzip"),
            ("set-cookie", COOKIE),
        ]),
    ]
}

#[test]
fn c3_and_c4_requests_decode_and_fill_the_table() {
    let plain = [
        "828684410f7777772e6578616d706c652e636f6d",
        "828684be58086e6f2d6361636865",
        "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
    ];
    let huffman = [
        "828684418cf1e3c2e5f23a6ba0ab90f4ff",
        "828684be5886a8eb10649cbf",
        "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
    ];
    let tables: [&[(&str, &str)]; 3] = [
        &[(":authority", "www.example.com")],
        &[
            ("cache-control", "no-cache"),
            (":authority", "www.example.com"),
        ],
        &[
            ("custom-key", "custom-value"),
            ("cache-control", "no-cache"),
            (":authority", "www.example.com"),
        ],
    ];
    for blocks in [plain, huffman] {
        let mut d = Decoder::default();
        for ((block, expected), (table_now, size)) in blocks
            .iter()
            .zip(REQUESTS)
            .zip(tables.iter().zip([57, 110, 164]))
        {
            assert_eq!(
                decode_all(&mut d, &hex(block)),
                Ok(fields(expected)),
                "{block}"
            );
            assert_eq!(table(&d), fields(table_now), "{block}");
            assert_eq!(d.table().size(), size, "{block}");
        }
    }
    // The encoder, Huffman-coding what gets shorter, writes C.4's blocks exactly.
    let mut e = Encoder::default();
    for (request, block) in REQUESTS.iter().zip(huffman) {
        let mut out = Vec::new();
        let list = request
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes(), Indexing::Incremental));
        e.encode(list, &mut out);
        assert_eq!(out, hex(block), "{block}");
    }
}

#[test]
fn c5_and_c6_responses_evict_from_a_256_byte_table() {
    let plain = [
        "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d54\
         6e1768747470733a2f2f7777772e6578616d706c652e636f6d",
        "4803333037c1c0bf",
        "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f\
         3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076\
         657273696f6e3d31",
    ];
    let huffman = [
        "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f\
         0b97c8e9ae82ae43d3",
        "4883640effc1c0bf",
        "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335df\
         dfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
    ];
    let tables = [
        fields(&[
            ("location", LOCATION),
            ("date", DATE1),
            ("cache-control", "private"),
            (":status", "302"),
        ]),
        fields(&[
            (":status", "307"),
            ("location", LOCATION),
            ("date", DATE1),
            ("cache-control", "private"),
        ]),
        fields(&[
            ("set-cookie", COOKIE),
            ("content-encoding", "gzip"),
            ("date", DATE2),
        ]),
    ];
    for (blocks, huffman_coded) in [(plain, false), (huffman, true)] {
        let mut d = Decoder::new(256);
        for ((block, expected), (table_now, size)) in blocks
            .iter()
            .zip(responses())
            .zip(tables.iter().zip([222, 222, 215]))
        {
            let block = hex(&block.replace(' ', ""));
            assert_eq!(decode_all(&mut d, &block), Ok(expected));
            assert_eq!(&table(&d), table_now);
            assert_eq!(d.table().size(), size);
        }
        if huffman_coded {
            // The encoder with a 256-byte table writes C.6 exactly (it is told the peer's
            // size is 256, which it then announces: strip that update to compare).
            let mut e = Encoder::new(256);
            for (i, (response, block)) in responses().iter().zip(blocks).enumerate() {
                let mut out = Vec::new();
                let list = response
                    .iter()
                    .map(|(n, v)| (n.as_bytes(), v.as_bytes(), Indexing::Incremental));
                e.encode(list, &mut out);
                let expected = hex(block);
                let update = if i == 0 {
                    vec![0x3f, 0xe1, 0x01]
                } else {
                    Vec::new()
                };
                assert_eq!(out, [update, expected.to_vec()].concat(), "response {i}");
            }
        }
    }
}

#[test]
fn table_size_updates_follow_the_rules() {
    // Within our limit, at the start: fine, and the table shrinks.
    let mut d = Decoder::default();
    decode_all(
        &mut d,
        &hex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"),
    )
    .expect("C.2.1");
    assert_eq!(
        decode_all(&mut d, &hex("20 82")),
        Ok(fields(&[(":method", "GET")]))
    );
    assert!(d.table().is_empty());
    assert_eq!(d.table().max_size(), 0);
    // Two updates at the start are allowed (a lowering then the new size).
    assert!(decode_all(&mut d, &hex("20 3fe11f 82")).is_ok());
    assert_eq!(d.table().max_size(), 4096);
    // Above our SETTINGS_HEADER_TABLE_SIZE: an error.
    assert_eq!(
        decode_all(&mut Decoder::default(), &hex("3fe21f")),
        Err(DecodeError::TableSizeTooLarge(4097))
    );
    // After a field: an error.
    assert_eq!(
        decode_all(&mut Decoder::default(), &hex("82 20")),
        Err(DecodeError::LateTableSizeUpdate)
    );
    // Our setting lowered: the next block must start with an update within it.
    let mut d = Decoder::default();
    d.set_allowed_table_size(100);
    assert_eq!(
        decode_all(&mut d, &hex("82")),
        Err(DecodeError::MissingTableSizeUpdate)
    );
    let mut d = Decoder::default();
    d.set_allowed_table_size(100);
    // An update to 100 (0x3f 0x45), then a field: accepted.
    assert_eq!(
        decode_all(&mut d, &hex("3f45 82")),
        Ok(fields(&[(":method", "GET")]))
    );
    assert_eq!(d.table().max_size(), 100);
    // Above the lowered setting: an error.
    let mut d = Decoder::default();
    d.set_allowed_table_size(100);
    assert_eq!(
        decode_all(&mut d, &hex("3f46")),
        Err(DecodeError::TableSizeTooLarge(101))
    );
    // The encoder announces a changed peer setting, lowest first.
    let mut e = Encoder::default();
    e.set_peer_table_size(0);
    e.set_peer_table_size(1000);
    let mut out = Vec::new();
    e.encode(
        [(&b":method"[..], &b"GET"[..], Indexing::Incremental)],
        &mut out,
    );
    assert_eq!(out, [0x20, 0x3f, 0xc9, 0x07, 0x82]);
    let mut d = Decoder::default();
    assert_eq!(
        decode_all(&mut d, &Bytes::from(out)),
        Ok(fields(&[(":method", "GET")]))
    );
    assert_eq!(d.table().max_size(), 1000);
}

#[test]
fn bad_indexes_and_truncations_are_errors() {
    let mut d = Decoder::default();
    assert_eq!(
        decode_all(&mut d, &hex("80")),
        Err(DecodeError::BadIndex(0))
    );
    assert_eq!(
        decode_all(&mut d, &hex("be")),
        Err(DecodeError::BadIndex(62))
    );
    assert_eq!(
        decode_all(&mut d, &hex("7f00")),
        Err(DecodeError::BadIndex(63))
    );
    // A literal whose value runs past the block.
    assert_eq!(
        decode_all(&mut d, &hex("0405 2f61")),
        Err(DecodeError::Truncated)
    );
    assert_eq!(decode_all(&mut d, &hex("00")), Err(DecodeError::Truncated));
    // A Huffman value with EOS inside.
    assert_eq!(
        decode_all(&mut d, &hex("0484 ffffffff")),
        Err(DecodeError::Huffman(huffman::HuffmanError::Eos))
    );
}

#[test]
fn a_list_past_the_limit_is_flagged_and_the_table_still_follows() {
    let mut d = Decoder::default();
    let block = hex("828684410f7777772e6578616d706c652e636f6d");
    // Fields of 42, 43, 38 and 57 bytes: a limit of 90 lets the first two through.
    let mut got = Vec::new();
    let decoded = d.decode(&block, 90, |f| got.push(f)).expect("decodes");
    assert!(decoded.too_large);
    assert_eq!(got.len(), 2);
    assert_eq!(decoded.list_size, 42 + 43 + 38 + 57);
    // The table got the :authority entry all the same: the next block refers to it.
    assert_eq!(
        decode_all(&mut d, &hex("828684be58086e6f2d6361636865")).map(|f| f.len()),
        Ok(5)
    );
}

#[test]
fn plain_literals_are_slices_of_the_block() {
    // Without indexing (an indexed one is copied into the table, and handed out as that copy).
    let block = hex("000a637573746f6d2d6b65790d637573746f6d2d686561646572");
    let mut got = Vec::new();
    Decoder::default()
        .decode(&block, usize::MAX, |f| got.push(f))
        .expect("decodes");
    let range = block.as_ptr() as usize..block.as_ptr() as usize + block.len();
    assert!(range.contains(&(got[0].value.as_ptr() as usize)), "no copy");
}

/// Encoding random lists and decoding them gives the lists back, with the tables in step.
#[test]
fn fuzz_encode_then_decode_round_trips() {
    let mut rng = volley_fuzz_input::Rng::new(volley_fuzz_input::seed());
    let names: [&[u8]; 6] = [
        b":path",
        b"content-type",
        b"x-custom",
        b"grpc-timeout",
        b"authorization",
        b"te",
    ];
    let mut encoder = Encoder::new(1 + rng.below(4096));
    let mut decoder = Decoder::default();
    let iterations = volley_fuzz_input::iterations() / 20;
    for _ in 0..iterations.max(1000) {
        if rng.one_in(50) {
            let size = rng.below(5000);
            encoder.set_peer_table_size(size);
        }
        let count = rng.below(8);
        let mut list: Vec<(Vec<u8>, Vec<u8>, Indexing)> = Vec::new();
        for _ in 0..count {
            let name = if rng.one_in(4) {
                (0..1 + rng.below(20))
                    .map(|_| b'a' + rng.below(26) as u8)
                    .collect()
            } else {
                names[rng.below(names.len())].to_vec()
            };
            let value: Vec<u8> = (0..rng.below(300)).map(|_| rng.below(256) as u8).collect();
            let indexing =
                [Indexing::Incremental, Indexing::Without, Indexing::Never][rng.below(3)];
            list.push((name, value, indexing));
        }
        let mut block = Vec::new();
        encoder.encode(
            list.iter().map(|(n, v, i)| (&n[..], &v[..], *i)),
            &mut block,
        );
        let mut got = Vec::new();
        decoder
            .decode(&Bytes::from(block), usize::MAX, |f| got.push(f))
            .expect("an encoded block decodes");
        assert_eq!(got.len(), list.len());
        for (field, (name, value, indexing)) in got.iter().zip(&list) {
            assert_eq!((&field.name[..], &field.value[..]), (&name[..], &value[..]));
            assert_eq!(field.never_indexed, *indexing == Indexing::Never);
        }
        assert_eq!(decoder.table().size(), encoder.table().size());
        assert_eq!(decoder.table().len(), encoder.table().len());
    }
}

/// Random and mutated blocks: never a panic; what decodes stays within the limits.
#[test]
fn fuzz_decode_never_panics_and_stays_bounded() {
    let corpus: Vec<Bytes> = [
        "828684410f7777772e6578616d706c652e636f6d",
        "828684be58086e6f2d6361636865",
        "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
        "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
        "4883640effc1c0bf",
        "1008 7061 7373 776f 7264 0673 6563 7265 74",
        "20 3fe11f 82",
        "3fe11f",
    ]
    .iter()
    .map(|h| hex(h))
    .collect();
    let examples: Vec<&[u8]> = corpus.iter().map(|b| &b[..]).collect();
    let mut decoder = Decoder::new(4096);
    for (i, input) in volley_fuzz_input::Inputs::new(&examples, 21).enumerate() {
        if i % 64 == 0 {
            // A fresh decoder now and then, and sometimes a lowered setting.
            decoder = Decoder::new(4096);
            if i % 128 == 0 {
                decoder.set_allowed_table_size(100);
            }
        }
        let block = Bytes::from(input.clone());
        let limit = 200;
        let mut delivered = 0usize;
        let result = decoder.decode(&block, limit, |f| {
            delivered += entry_size(&f.name, &f.value);
        });
        assert!(delivered <= limit, "delivered {delivered} past the limit");
        assert!(decoder.table().size() <= decoder.table().max_size());
        assert!(decoder.table().max_size() <= 4096);
        if let Ok(decoded) = result {
            assert_eq!(decoded.too_large, decoded.list_size > limit);
            // Huffman makes at most 8/5 bytes per input byte; table hits, 4096 per byte.
            assert!(decoded.list_size <= 32 * input.len() + 4096 * input.len() + 1);
        }
    }
}

#[test]
fn repeated_huffman_literals_decode_the_same_from_the_memo() {
    // Values sent as literals without indexing, Huffman-coded, block after block: more
    // distinct ones than the memo keeps, in an order that reuses and evicts its entries.
    let values: Vec<String> = (0..7).map(|i| format!("/pkg.Service/Method{i}")).collect();
    let mut encoder = Encoder::default();
    let mut decoder = Decoder::default();
    for round in 0..3 {
        for (i, value) in values.iter().enumerate() {
            let v = &values[(i * (round + 1)) % values.len()];
            let mut block = Vec::new();
            encoder.encode(
                [
                    (&b":path"[..], v.as_bytes(), Indexing::Without),
                    (
                        &b"x-long"[..],
                        value.repeat(8).as_bytes(),
                        Indexing::Without,
                    ),
                ],
                &mut block,
            );
            assert!(block[1] & 0x80 != 0, "the value is Huffman-coded");
            let got = decode_all(&mut decoder, &Bytes::from(block)).expect("decodes");
            assert_eq!(got, fields(&[(":path", v), ("x-long", &value.repeat(8))]));
        }
    }
}

#[test]
fn the_dynamic_table_keeps_no_slice_of_a_header_block() {
    // A plain literal with incremental indexing: the field may be a slice of the block, the
    // table's entry must not be (it would keep the read buffer the block lives in).
    let mut encoder = Encoder::default();
    let mut block = Vec::new();
    encoder.encode(
        [
            (&b"x-plain"[..], &b"v"[..], Indexing::Incremental),
            (
                &b"content-type"[..],
                &b"application/grpc"[..],
                Indexing::Incremental,
            ),
        ],
        &mut block,
    );
    // A larger buffer whose tail is the block, as a read buffer would hold it.
    let mut buffer = vec![0u8; 4096];
    buffer.extend_from_slice(&block);
    let buffer = Bytes::from(buffer);
    let block = buffer.slice(4096..);
    let mut decoder = Decoder::default();
    decoder.decode(&block, usize::MAX, |_| {}).expect("decodes");
    let range = buffer.as_ptr_range();
    assert_eq!(decoder.table().len(), 2);
    for (name, value) in decoder.table().iter() {
        assert!(
            !range.contains(&name.as_ptr()),
            "{name:?} is a slice of the buffer"
        );
        assert!(
            !range.contains(&value.as_ptr()),
            "{value:?} is a slice of the buffer"
        );
    }
}

/// `encode_with_memo` writes exactly what `encode` does, block after block, whatever the
/// mix of repeated prefixes, new fields, literals and table size changes: two encoders fed
/// the same requests, one with a memo, stay byte for byte the same.
#[test]
fn fuzz_the_prefix_memo_writes_what_encode_writes() {
    let mut rng = volley_fuzz_input::Rng::new(volley_fuzz_input::seed());
    let heads: [&[(&[u8], &[u8])]; 4] = [
        &[
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/a.B/C"),
        ],
        &[
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/a.B/D"),
        ],
        &[(b":method", b"POST"), (b":path", b"/a.B/C")],
        &[(b":method", b"GET")],
    ];
    let tails: [(&[u8], Indexing); 4] = [
        (b"content-type", Indexing::Incremental),
        (b"user-agent", Indexing::Incremental),
        (b"grpc-timeout", Indexing::Without),
        (b"authorization", Indexing::Never),
    ];
    let limit = 64 + rng.below(4096);
    let (mut plain, mut memoized) = (Encoder::new(limit), Encoder::new(limit));
    let mut memo = PrefixMemo::default();
    let mut decoder = Decoder::default();
    let iterations = volley_fuzz_input::iterations() / 20;
    for _ in 0..iterations.max(2000) {
        if rng.one_in(100) {
            let size = rng.below(5000);
            plain.set_peer_table_size(size);
            memoized.set_peer_table_size(size);
        }
        let mut list: Vec<(Vec<u8>, Vec<u8>, Indexing)> = heads[rng.below(heads.len())]
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec(), Indexing::Incremental))
            .collect();
        for _ in 0..rng.below(4) {
            let (name, indexing) = tails[rng.below(tails.len())];
            // Mostly the same few values, so that prefixes repeat.
            let spread = if rng.one_in(8) { 1000 } else { 3 };
            let value = format!("v{}", rng.below(spread));
            list.push((name.to_vec(), value.into_bytes(), indexing));
        }
        let fields = || list.iter().map(|(n, v, i)| (&n[..], &v[..], *i));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        plain.encode(fields(), &mut a);
        memoized.encode_with_memo(fields(), &mut b, &mut memo);
        assert_eq!(a, b, "{list:?}");
        assert_eq!(plain.generation(), memoized.generation());
        let mut got = Vec::new();
        decoder
            .decode(&Bytes::from(b), usize::MAX, |f| got.push(f))
            .expect("an encoded block decodes");
        let got: Vec<(&[u8], &[u8])> = got.iter().map(|f| (&f.name[..], &f.value[..])).collect();
        let want: Vec<(&[u8], &[u8])> = list.iter().map(|(n, v, _)| (&n[..], &v[..])).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn a_repeated_request_prefix_is_remembered_once_it_changes_nothing() {
    let mut encoder = Encoder::default();
    let mut memo = PrefixMemo::default();
    let request: [(&[u8], &[u8], Indexing); 3] = [
        (b":method", b"POST", Indexing::Incremental),
        (b":path", b"/a.B/C", Indexing::Incremental),
        (b"grpc-timeout", b"1S", Indexing::Without),
    ];
    let mut blocks = Vec::new();
    for _ in 0..3 {
        let mut block = Vec::new();
        encoder.encode_with_memo(request, &mut block, &mut memo);
        blocks.push((block, memo.holds()));
    }
    // The first block adds `:path` to the table: nothing to remember yet. The second refers
    // to it and changes nothing, so it is remembered; the third is the second's bytes.
    assert!(!blocks[0].1);
    assert!(blocks[1].1 && blocks[2].1);
    assert_ne!(blocks[0].0, blocks[1].0);
    assert_eq!(blocks[1].0, blocks[2].0);
    assert_eq!(&blocks[2].0[..2], &[0x83, 0xbe]);
}

#[test]
fn a_prefix_past_the_memo_limit_is_encoded_each_time_and_not_kept() {
    let mut plain = Encoder::new(1 << 16);
    let mut memoized = Encoder::new(1 << 16);
    let mut memo = PrefixMemo::default();
    let big = vec![b'v'; 20 << 10];
    let request: [(&[u8], &[u8], Indexing); 2] = [
        (b":method", b"POST", Indexing::Incremental),
        (b"x-big", &big, Indexing::Incremental),
    ];
    for _ in 0..3 {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        plain.encode(request, &mut a);
        memoized.encode_with_memo(request, &mut b, &mut memo);
        assert_eq!(a, b);
        assert!(!memo.holds());
    }
}
