//! Property tests of the frame decoder: however a stream of frames is split into reads, it
//! decodes to the same frames, and no byte sequence makes it panic.

use proptest::prelude::*;
use titan::proto::message::{ArchivedPing, Ping};
use titan::proto::{access, encode_frame, Limits, OpCode, RecvBuf};

fn pings() -> impl Strategy<Value = Vec<Ping>> {
    prop::collection::vec(
        (any::<u64>(), prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(nonce, data)| Ping { nonce, data }),
        1..40,
    )
}

fn encode_all(pings: &[Ping]) -> Vec<u8> {
    let mut out = Vec::new();
    for ping in pings {
        encode_frame(&mut out, OpCode::Ping, ping).expect("small pings encode");
    }
    out
}

/// Feeds `stream` to a decoder in reads of the given sizes (cycled) and collects the frames.
fn decode_in_reads(stream: &[u8], sizes: &[usize]) -> Vec<Ping> {
    let mut buf = RecvBuf::new(Limits::default());
    let mut decoded = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() {
        let n = sizes[i % sizes.len()].clamp(1, stream.len() - at);
        i += 1;
        let spare = buf.spare_mut();
        let n = n.min(spare.len());
        spare[..n].copy_from_slice(&stream[at..at + n]);
        buf.commit(n);
        at += n;
        while let Some(frame) = buf.next_frame().expect("a valid stream never errors") {
            let ping: &ArchivedPing =
                access(frame.header.opcode, frame.payload).expect("valid payload");
            decoded.push(Ping {
                nonce: ping.nonce.to_native(),
                data: ping.data.to_vec(),
            });
        }
    }
    assert_eq!(buf.buffered(), 0, "nothing left over");
    decoded
}

proptest! {
    #[test]
    fn any_split_decodes_to_the_same_frames(pings in pings(), sizes in prop::collection::vec(1usize..64, 1..16)) {
        let stream = encode_all(&pings);
        prop_assert_eq!(decode_in_reads(&stream, &sizes), pings);
    }

    #[test]
    fn every_single_split_point_works(pings in pings(), cut in any::<prop::sample::Index>()) {
        let stream = encode_all(&pings);
        let at = cut.index(stream.len());
        prop_assert_eq!(decode_in_reads(&stream, &[at.max(1), stream.len()]), pings);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut buf = RecvBuf::new(Limits { max_frame_len: 1024 });
        buf.extend_from_slice(&bytes);
        while let Ok(Some(frame)) = buf.next_frame() {
            let _ = access::<ArchivedPing>(frame.header.opcode, frame.payload);
        }
    }
}
