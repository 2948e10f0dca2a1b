//! Tests of the datagram format: round trips, every rejection (of seals and of fields), and
//! opening arbitrary bytes.

use super::testing::{attempt_key, master, worker_key};
use super::*;
use crate::keys::SinkKeys;
use crate::limits::{MIN_DATAGRAM_BYTES, SECTION_BYTES as SECTION, TAG_BYTES as TAG};
use proptest::prelude::*;

const WORKER: WorkerId = WorkerId(7);

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

/// Packs `items` into as many sealed datagrams as needed, each attempt under its own key.
fn pack(capacity: usize, items: &[Item]) -> Vec<Vec<u8>> {
    let mut writer = DatagramWriter::new(capacity);
    let mut out = Vec::new();
    let header_key = worker_key(WORKER);
    let seal = |writer: &mut DatagramWriter, out: &mut Vec<Vec<u8>>| {
        let seq = out.len() as u64;
        out.push(writer.seal(&header_key, WORKER, 99, seq).to_vec());
        writer.clear();
    };
    for item in items {
        let pushed = |w: &mut DatagramWriter| match item {
            Item::Line(key, seq, flags, bytes) => {
                w.push_line(&attempt_key(key.attempt), *key, *seq, *flags, bytes)
            }
            Item::End(key, total) => w.push_end(&attempt_key(key.attempt), *key, *total),
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

fn sink() -> SinkKeys {
    SinkKeys::new(master())
}

fn unpack(datagrams: &[Vec<u8>]) -> Vec<Item> {
    let mut items = Vec::new();
    let mut keys = sink();
    for (seq, bytes) in datagrams.iter().enumerate() {
        let mut bytes = bytes.clone();
        let datagram = Datagram::open(&mut bytes, &mut keys).expect("valid datagram");
        assert_eq!(datagram.header.seq, seq as u64);
        assert_eq!(datagram.header.worker, WORKER);
        assert_eq!(datagram.header.session, 99);
        items.extend(datagram.entries().map(owned));
    }
    items
}

/// The datagram opened in place: its seals checked and its sections decrypted.
fn opened(mut bytes: Vec<u8>) -> Vec<u8> {
    unseal(&mut bytes, &mut sink()).expect("seals verify");
    bytes
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
    let expected = HEADER_BYTES + SECTION + 3 * (RECORD_HEADER_BYTES + 3) + TAG + SECTION + TAG;
    assert_eq!(datagrams[0].len(), expected);
    let datagram = Datagram::parse(&opened(datagrams[0].clone())).map(|d| d.header);
    assert_eq!(datagram.unwrap().sections, 2);
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
    let header = Datagram::parse(&opened(datagrams[0].clone()))
        .unwrap()
        .header;
    assert_eq!(header.sections, 4);
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
fn lines_are_encrypted_and_every_seal_is_checked() {
    let good = valid();
    assert!(
        !good.windows(2).any(|w| w == b"hi"),
        "the line does not travel in clear"
    );
    let open = |bytes: &mut Vec<u8>| Datagram::open(bytes, &mut sink()).map(|_| ());
    // Any altered byte fails a seal: the header's fields, its tag, a section's header, body or
    // tag.
    for at in [
        9,
        30,
        HEADER_BYTES + 3,
        HEADER_BYTES + SECTION + 1,
        good.len() - 1,
    ] {
        let mut bytes = good.clone();
        bytes[at] ^= 1;
        let err = open(&mut bytes).unwrap_err();
        assert!(err.is_forged(), "byte {at}: {err:?}");
    }
    // Lines sealed with another attempt's key (another worker's job) or headers sealed with
    // another worker's key are refused.
    let mut writer = DatagramWriter::new(1400);
    let k = key(1, 0, Stream::Stdout);
    let theirs = attempt_key(AttemptKey::new(JobId(2), 0));
    writer.push_line(&theirs, k, 0, LineFlags::empty(), b"spoof");
    let mut spoof = writer.seal(&worker_key(WORKER), WORKER, 1, 0).to_vec();
    assert_eq!(
        open(&mut spoof),
        Err(DecodeError::ForgedSection { section: 0 })
    );
    writer.clear();
    writer.push_line(&attempt_key(k.attempt), k, 0, LineFlags::empty(), b"x");
    let mut other_worker = writer.seal(&worker_key(WorkerId(8)), WORKER, 1, 0).to_vec();
    assert_eq!(open(&mut other_worker), Err(DecodeError::ForgedHeader));
    // A stranger's keys (another master) fail too.
    let stranger = titan_auth::MasterSecret::new(&titan_auth::Secret::from_bytes([1; 32]));
    let mut keys = SinkKeys::new(stranger);
    assert_eq!(
        Datagram::open(&mut good.clone(), &mut keys).map(|_| ()),
        Err(DecodeError::ForgedHeader)
    );
}

#[test]
fn every_malformed_field_is_rejected_with_its_reason() {
    let good = opened(valid());
    let with = |at: usize, value: u8| {
        let mut bytes = good.clone();
        bytes[at] = value;
        Datagram::parse(&bytes).unwrap_err()
    };
    assert_eq!(
        Datagram::parse(&good[..10]).unwrap_err(),
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
    let record = section + SECTION;
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
        with(record + 2, 1),
        DecodeError::BodyLeft {
            section: 0,
            left: 1
        }
    ));
    assert!(matches!(
        with(7, 2),
        DecodeError::Truncated { section: 1, .. }
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        Datagram::parse(&trailing).unwrap_err(),
        DecodeError::TrailingBytes { count: 1 }
    );
    let long = vec![0u8; MAX_DATAGRAM_BYTES + 1];
    assert!(matches!(
        Datagram::parse(&long).unwrap_err(),
        DecodeError::TooLong { .. }
    ));
}

#[test]
fn an_end_section_carries_no_records_and_overflowing_numbers_are_rejected() {
    let k = key(1, 0, Stream::Stdout);
    let mut end = opened(pack(1400, &[Item::End(k, 10)]).remove(0));
    end[HEADER_BYTES + 15] = 1;
    assert_eq!(
        Datagram::parse(&end).unwrap_err(),
        DecodeError::EndWithRecords {
            section: 0,
            count: 1
        }
    );
    let mut line = opened(valid());
    line[HEADER_BYTES + 16..HEADER_BYTES + 24].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(
        Datagram::parse(&line).unwrap_err(),
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
    fn opening_arbitrary_bytes_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..600),
        with_header in any::<bool>(),
    ) {
        // Random bytes rarely get past the magic; half the cases start with a valid prefix.
        let mut bytes = if with_header { b"TLOG\x02\x00".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        if let Ok(datagram) = Datagram::parse(&bytes) {
            let _ = datagram.entries().count();
        }
        let _ = Datagram::open(&mut bytes, &mut sink()).map(|d| d.entries().count());
    }

    #[test]
    fn corrupting_a_valid_datagram_never_panics(
        items in proptest::collection::vec(item(), 1..20),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = opened(pack(1400, &items).remove(0));
        for (at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        let _ = Datagram::parse(&bytes).map(|d| d.entries().count());
        let cut = cut % (bytes.len() + 1);
        let _ = Datagram::parse(&bytes[..cut]).map(|d| d.entries().count());
        let _ = Datagram::open(&mut bytes, &mut sink()).map(|d| d.entries().count());
    }
}
