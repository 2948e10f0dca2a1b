//! Codec benches: header encode/decode, decoding a frame stream through the framed connection
//! the servers use (whole, and split at every point), and validate + access of a typical
//! message. Each prints a cost per operation; `memcpy_same_bytes` is the baseline twin for the
//! stream decode (copying the bytes once).

use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use titan::proto::conn::{Conn, ConnConfig, ProgressRule};
use titan::proto::message::{ArchivedPing, Ping};
use titan::proto::{access, encode_frame, Frame, Header, OpCode};

fn server_conn() -> Conn {
    Conn::new(&ConnConfig::server(ProgressRule::NoProgressFor(
        std::time::Duration::from_secs(10),
    )))
}

/// Feeds `bytes` as a driver's reads would (copied into the connection's room) and hands every
/// whole frame to `f`.
fn feed(conn: &mut Conn, mut bytes: &[u8], now: Instant, mut f: impl FnMut(Frame<'_>)) {
    while !bytes.is_empty() {
        let room = conn.recv_room();
        let n = room.len().min(bytes.len());
        room[..n].copy_from_slice(&bytes[..n]);
        conn.on_received(n, now).unwrap();
        bytes = &bytes[n..];
        while let Some(frame) = conn.next_frame().unwrap() {
            f(frame);
        }
    }
}

fn small_stream(frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for nonce in 0..frames as u64 {
        encode_frame(
            &mut out,
            OpCode::Ping,
            &Ping {
                nonce,
                data: vec![7; 16],
            },
        )
        .unwrap();
    }
    out
}

fn header(c: &mut Criterion) {
    let header = Header::new(OpCode::SubmitJob, 200);
    let bytes = header.encode();
    c.bench_function("header_encode", |b| {
        b.iter(|| black_box(black_box(header).encode()))
    });
    c.bench_function("header_decode", |b| {
        b.iter(|| Header::decode(black_box(&bytes), u32::MAX).unwrap())
    });
}

fn decode_stream(c: &mut Criterion) {
    const FRAMES: usize = 10_000;
    let stream = small_stream(FRAMES);
    let mut group = c.benchmark_group("decode_stream");
    group.throughput(Throughput::Elements(FRAMES as u64));
    let now = Instant::now();
    group.bench_function("small_frames_64k_reads", |b| {
        b.iter_batched_ref(
            server_conn,
            |conn| {
                let mut frames = 0usize;
                for chunk in stream.chunks(64 * 1024) {
                    feed(conn, chunk, now, |frame| {
                        frames += frame.payload.len() & 1 | 1
                    });
                }
                black_box(frames)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("small_frames_decode_and_validate", |b| {
        b.iter_batched_ref(
            server_conn,
            |conn| {
                let mut sum = 0u64;
                for chunk in stream.chunks(64 * 1024) {
                    feed(conn, chunk, now, |frame| {
                        sum += access::<ArchivedPing>(OpCode::Ping, frame.payload)
                            .unwrap()
                            .nonce
                            .to_native();
                    });
                }
                black_box(sum)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("memcpy_same_bytes", |b| {
        let mut dst = vec![0u8; stream.len()];
        b.iter(|| {
            dst.copy_from_slice(black_box(&stream));
            black_box(dst[dst.len() - 1])
        })
    });
    group.finish();
}

fn every_split_point(c: &mut Criterion) {
    let stream = small_stream(16);
    let mut group = c.benchmark_group("decode_every_split_point");
    group.throughput(Throughput::Elements(stream.len() as u64));
    let now = Instant::now();
    group.bench_function("16_frames_all_splits", |b| {
        b.iter(|| {
            let mut frames = 0usize;
            for cut in 1..stream.len() {
                let mut conn = server_conn();
                for part in [&stream[..cut], &stream[cut..]] {
                    feed(&mut conn, part, now, |_| frames += 1);
                }
            }
            assert_eq!(frames, 16 * (stream.len() - 1));
            black_box(frames)
        })
    });
    group.finish();
}

fn validate_access(c: &mut Criterion) {
    // A ~200-byte payload, the size of a typical job submission.
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        OpCode::Ping,
        &Ping {
            nonce: 42,
            data: vec![1; 180],
        },
    )
    .unwrap();
    let payload = frame[8..].to_vec();
    assert!(
        (190..=220).contains(&payload.len()),
        "payload is {} bytes",
        payload.len()
    );
    c.bench_function("validate_access_200b", |b| {
        b.iter(|| {
            access::<ArchivedPing>(OpCode::Ping, black_box(&payload))
                .unwrap()
                .nonce
                .to_native()
        })
    });
    let mut out = Vec::with_capacity(1024);
    let ping = Ping {
        nonce: 42,
        data: vec![1; 180],
    };
    c.bench_function("encode_200b", |b| {
        b.iter(|| {
            out.clear();
            encode_frame(&mut out, OpCode::Ping, black_box(&ping)).unwrap()
        })
    });
}

criterion_group!(
    benches,
    header,
    decode_stream,
    every_split_point,
    validate_access
);
criterion_main!(benches);
