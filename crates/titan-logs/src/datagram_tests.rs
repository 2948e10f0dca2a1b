//! Tests of the datagram format: round trips, every rejection, and decoding of arbitrary bytes.

use super::*;
use crate::limits::MIN_DATAGRAM_BYTES;
use proptest::prelude::*;

fn key(job: u64, attempt: u32, stream: Stream) -> StreamKey {
    AttemptKey::new(JobId(job), attempt).stream(stream)
}

/// What the tests push: a line or an end marker.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Line(StreamKey, u64, LineFlags, Vec<u8>),
    End(StreamKey, u64),
}

fn owned(entry: Entry<'_>) -> Item {
    match entry {
        Entry::Line(line) => Item::Line(line.key, line.seq, line.flags, line.bytes.to_vec()),
        Entry::End { key, total } => Item::End(key, total),
    }
}

/// Packs `items` into as many datagrams as needed; returns them with their sequence numbers.
fn pack(capacity: usize, items: &[Item]) -> Vec<Vec<u8>> {
    let mut writer = DatagramWriter::new(capacity);
    let mut out = Vec::new();
    let seal = |writer: &mut DatagramWriter, out: &mut Vec<Vec<u8>>| {
        let seq = out.len() as u64;
        out.push(writer.seal(WorkerId(7), 99, seq).to_vec());
        writer.clear();
    };
    for item in items {
        let pushed = |w: &mut DatagramWriter| match item {
            Item::Line(key, seq, flags, bytes) => w.push_line(*key, *seq, *flags, bytes),
            Item::End(key, total) => w.push_end(*key, *total),
        };
        if !pushed(&mut writer) {
            seal(&mut writer, &mut out);
            assert!(pushed(&mut writer), "an empty writer takes any entry");
        }
    }
    if !writer.is_empty() {
        seal(&mut writer, &mut out);
    }
    out
}

fn unpack(datagrams: &[Vec<u8>]) -> Vec<Item> {
    let mut items = Vec::new();
    for (seq, bytes) in datagrams.iter().enumerate() {
        let datagram = Datagram::decode(bytes).expect("valid datagram");
        assert_eq!(datagram.header.seq, seq as u64);
        assert_eq!(datagram.header.worker, WorkerId(7));
        assert_eq!(datagram.header.session, 99);
        items.extend(datagram.entries().map(owned));
    }
    items
}

#[test]
fn consecutive_lines_share_one_section() {
    let k = key(1, 0, Stream::Stdout);
    let items: Vec<Item> = (0..3)
        .map(|seq| Item::Line(k, seq, LineFlags::empty(), b"abc".to_vec()))
        .chain([Item::End(k, 3)])
        .collect();
    let datagrams = pack(1400, &items);
    assert_eq!(datagrams.len(), 1);
    let expected = HEADER_BYTES + SECTION_BYTES + 3 * (RECORD_HEADER_BYTES + 3) + SECTION_BYTES;
    assert_eq!(datagrams[0].len(), expected);
    let datagram = Datagram::decode(&datagrams[0]).unwrap();
    assert_eq!(datagram.header.sections, 2);
    assert_eq!(unpack(&datagrams), items);
}

#[test]
fn a_gap_or_another_stream_opens_a_new_section() {
    let out = key(1, 0, Stream::Stdout);
    let err = key(1, 0, Stream::Stderr);
    let items = vec![
        Item::Line(out, 0, LineFlags::empty(), b"a".to_vec()),
        Item::Line(out, 2, LineFlags::CRLF, b"b".to_vec()),
        Item::Line(err, 3, LineFlags::empty(), b"c".to_vec()),
        Item::Line(out, 3, LineFlags::UNTERMINATED, b"".to_vec()),
    ];
    let datagrams = pack(1400, &items);
    assert_eq!(Datagram::decode(&datagrams[0]).unwrap().header.sections, 4);
    assert_eq!(unpack(&datagrams), items);
}

#[test]
fn datagrams_never_exceed_their_capacity() {
    let k = key(5, 2, Stream::Stderr);
    let line = vec![b'x'; MAX_RECORD_BYTES];
    let items: Vec<Item> = (0..50)
        .map(|seq| Item::Line(k, seq, LineFlags::CONTINUES, line.clone()))
        .collect();
    let datagrams = pack(MIN_DATAGRAM_BYTES, &items);
    assert_eq!(
        datagrams.len(),
        50,
        "one maximal record per minimal datagram"
    );
    assert!(datagrams.iter().all(|d| d.len() <= MIN_DATAGRAM_BYTES));
    assert_eq!(unpack(&datagrams), items);
}

#[test]
fn terminators_rebuild_the_original_bytes() {
    assert_eq!(LineFlags::empty().terminator(), b"\n");
    assert_eq!(LineFlags::CRLF.terminator(), b"\r\n");
    assert_eq!(LineFlags::CONTINUES.terminator(), b"");
    assert_eq!(LineFlags::UNTERMINATED.terminator(), b"");
    assert_eq!(LineFlags::from_bits(8), None);
}

fn valid() -> Vec<u8> {
    let k = key(1, 0, Stream::Stdout);
    pack(
        1400,
        &[Item::Line(k, 0, LineFlags::empty(), b"hi".to_vec())],
    )
    .remove(0)
}

#[test]
fn every_malformed_field_is_rejected_with_its_reason() {
    let good = valid();
    let with = |at: usize, value: u8| {
        let mut bytes = good.clone();
        bytes[at] = value;
        Datagram::decode(&bytes).unwrap_err()
    };
    assert_eq!(
        Datagram::decode(&good[..10]).unwrap_err(),
        DecodeError::TooShort { len: 10 }
    );
    assert!(matches!(with(0, b'X'), DecodeError::BadMagic { .. }));
    assert_eq!(with(4, 9), DecodeError::UnsupportedVersion { found: 9 });
    assert_eq!(with(5, 1), DecodeError::Reserved { found: 1 });
    let section = HEADER_BYTES;
    assert_eq!(
        with(section + 12, 2),
        DecodeError::BadStream {
            section: 0,
            value: 2
        }
    );
    assert_eq!(
        with(section + 13, 5),
        DecodeError::BadKind {
            section: 0,
            value: 5
        }
    );
    assert_eq!(
        with(section + 15, 0),
        DecodeError::EmptySection { section: 0 }
    );
    let record = section + SECTION_BYTES;
    assert_eq!(
        with(record, 0x80),
        DecodeError::UnknownFlags {
            section: 0,
            record: 0,
            flags: 0x80
        }
    );
    assert!(matches!(
        with(record + 1, 0xff),
        DecodeError::RecordTooLong { .. }
    ));
    assert!(matches!(with(record + 2, 9), DecodeError::Truncated { .. }));
    assert!(matches!(
        with(7, 2),
        DecodeError::Truncated { section: 1, .. }
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        Datagram::decode(&trailing).unwrap_err(),
        DecodeError::TrailingBytes { count: 1 }
    );
    let long = vec![0u8; MAX_DATAGRAM_BYTES + 1];
    assert!(matches!(
        Datagram::decode(&long).unwrap_err(),
        DecodeError::TooLong { .. }
    ));
}

#[test]
fn an_end_section_carries_no_records_and_overflowing_numbers_are_rejected() {
    let k = key(1, 0, Stream::Stdout);
    let mut end = pack(1400, &[Item::End(k, 10)]).remove(0);
    end[HEADER_BYTES + 15] = 1;
    assert_eq!(
        Datagram::decode(&end).unwrap_err(),
        DecodeError::EndWithRecords {
            section: 0,
            count: 1
        }
    );
    let mut line = valid();
    line[HEADER_BYTES + 16..HEADER_BYTES + 24].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(
        Datagram::decode(&line).unwrap_err(),
        DecodeError::SeqOverflow { section: 0 }
    );
}

fn stream_key() -> impl Strategy<Value = StreamKey> {
    (
        0u64..3,
        0u32..2,
        prop_oneof![Just(Stream::Stdout), Just(Stream::Stderr)],
    )
        .prop_map(|(job, attempt, stream)| key(job, attempt, stream))
}

fn item() -> impl Strategy<Value = Item> {
    let flags = (0u8..8).prop_map(|bits| LineFlags::from_bits(bits).unwrap_or_default());
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        // Long records are filled with one byte: random kilobytes make the test slow, not
        // stronger (the framing is what can go wrong).
        (MAX_RECORD_BYTES - 2..=MAX_RECORD_BYTES, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ];
    prop_oneof![
        8 => (stream_key(), 0u64..6, flags, bytes)
            .prop_map(|(k, seq, flags, bytes)| Item::Line(k, seq, flags, bytes)),
        1 => (stream_key(), 0u64..1000).prop_map(|(k, total)| Item::End(k, total)),
    ]
}

proptest! {
    #[test]
    fn packed_entries_come_back_unchanged(
        items in proptest::collection::vec(item(), 0..120),
        capacity in MIN_DATAGRAM_BYTES..4096usize,
    ) {
        let datagrams = pack(capacity, &items);
        prop_assert!(datagrams.iter().all(|d| d.len() <= capacity));
        prop_assert_eq!(unpack(&datagrams), items);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..600),
        with_header in any::<bool>(),
    ) {
        // Random bytes rarely get past the magic; half the cases start with a valid prefix.
        let mut bytes = if with_header { b"TLOG\x01\x00".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        if let Ok(datagram) = Datagram::decode(&bytes) {
            let _ = datagram.entries().count();
        }
    }

    #[test]
    fn corrupting_a_valid_datagram_never_panics(
        items in proptest::collection::vec(item(), 1..20),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = pack(1400, &items).remove(0);
        for (at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        let _ = Datagram::decode(&bytes).map(|d| d.entries().count());
        let cut = cut % (bytes.len() + 1);
        let _ = Datagram::decode(&bytes[..cut]).map(|d| d.entries().count());
    }
}
