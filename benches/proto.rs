//! Codec benches: header encode/decode, decoding a frame stream (whole, and split at every
//! point), and validate + access of a typical message. Each prints a cost per operation;
//! `memcpy_same_bytes` is the baseline twin for the stream decode (copying the bytes once).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use titan::proto::message::{ArchivedPing, Ping};
use titan::proto::{access, encode_frame, Header, Limits, OpCode, RecvBuf};

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
    group.bench_function("small_frames_64k_reads", |b| {
        b.iter_batched_ref(
            || RecvBuf::new(Limits::default()),
            |buf| {
                let mut frames = 0usize;
                for chunk in stream.chunks(64 * 1024) {
                    buf.extend_from_slice(chunk);
                    while let Some(frame) = buf.next_frame().unwrap() {
                        frames += frame.payload.len() & 1 | 1;
                    }
                }
                black_box(frames)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("small_frames_decode_and_validate", |b| {
        b.iter_batched_ref(
            || RecvBuf::new(Limits::default()),
            |buf| {
                let mut sum = 0u64;
                for chunk in stream.chunks(64 * 1024) {
                    buf.extend_from_slice(chunk);
                    while let Some(frame) = buf.next_frame().unwrap() {
                        sum += access::<ArchivedPing>(OpCode::Ping, frame.payload)
                            .unwrap()
                            .nonce
                            .to_native();
                    }
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
    group.bench_function("16_frames_all_splits", |b| {
        b.iter(|| {
            let mut frames = 0usize;
            for cut in 1..stream.len() {
                let mut buf = RecvBuf::new(Limits::default());
                for part in [&stream[..cut], &stream[cut..]] {
                    buf.extend_from_slice(part);
                    while buf.next_frame().unwrap().is_some() {
                        frames += 1;
                    }
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
