//! `frag`: the decoder torture test. The same kind of frame stream is written byte by byte, in
//! random split sizes and coalesced into large writes, over several connections at once; every
//! reply is checked (opcode, order, bytes). Bad frames go on connections of their own, and each
//! must get the right error reply (where the stream allows one) and a close, after which the
//! server must still answer. Any mismatch makes the process exit non-zero.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use titan_proto::limits::MAX_FRAME_LEN;
use titan_proto::{ErrorCode, Header, OpCode, VERSION};

use crate::report;
use crate::wire::{self, FrameReader};

/// Frames written one byte per write on a byte-by-byte connection; the rest of that connection's
/// frames go in random splits (one syscall per byte is slow, and a few hundred frames already
/// cover every split point of every header field).
const BYTE_BY_BYTE_FRAMES: u64 = 300;

/// Bytes per write on a coalesced connection.
const COALESCED_WRITE: usize = 256 * 1024;

/// How long a bad-frame check waits for the server's answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct FragArgs {
    #[arg(long)]
    pub addr: String,
    /// Frames to send in total (over all connections).
    #[arg(long, default_value_t = 100_000)]
    pub frames: u64,
    /// Connections for the valid stream; their split modes cycle byte-by-byte, random, coalesced.
    #[arg(long, default_value_t = 6)]
    pub connections: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sample this process's resident memory (the server's) during the run.
    #[arg(long)]
    pub watch_pid: Option<u32>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum SplitMode {
    ByteByByte,
    RandomSplits,
    Coalesced,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    passed: bool,
    detail: String,
}

#[derive(Debug, Serialize)]
struct FragReport {
    mode: &'static str,
    seed: u64,
    frames_sent: u64,
    frames_verified: u64,
    mismatches: u64,
    first_mismatch: Option<String>,
    checks: Vec<Check>,
    checks_failed: usize,
    seconds: f64,
    server_rss_kib: Option<RssSamples>,
}

#[derive(Debug, Serialize)]
struct RssSamples {
    start: u64,
    end: u64,
    max: u64,
}

pub fn run(args: FragArgs) -> anyhow::Result<bool> {
    let started = Instant::now();
    let rss_start = args.watch_pid.and_then(report::rss_kib);
    let sampler = args.watch_pid.map(spawn_rss_sampler);
    let per_conn = args.frames / args.connections.max(1);
    let extra = args.frames % args.connections.max(1);
    let streams: Vec<_> = (0..args.connections)
        .map(|conn| {
            let mode = [
                SplitMode::ByteByByte,
                SplitMode::RandomSplits,
                SplitMode::Coalesced,
            ][(conn % 3) as usize];
            let frames = per_conn + u64::from(conn < extra);
            let (addr, seed) = (args.addr.clone(), args.seed);
            thread::spawn(move || valid_stream(&addr, seed, conn, frames, mode))
        })
        .collect();
    let mut checks = bad_frame_checks(&args.addr, args.seed);
    let (mut verified, mut mismatches, mut first_mismatch) = (0, 0, None);
    for t in streams {
        let (ok, mismatch) = t
            .join()
            .map_err(|_| anyhow::anyhow!("a stream thread panicked"))??;
        verified += ok;
        if let Some(m) = mismatch {
            mismatches += 1;
            first_mismatch.get_or_insert(m);
        }
    }
    checks.push(liveness(&args.addr));
    let server_rss_kib = match (rss_start, sampler) {
        (Some(start), Some(s)) => {
            let max = s.stop();
            args.watch_pid
                .and_then(report::rss_kib)
                .map(|end| RssSamples {
                    start,
                    end,
                    max: max.max(end),
                })
        }
        _ => None,
    };
    let checks_failed = checks.iter().filter(|c| !c.passed).count();
    let report = FragReport {
        mode: "frag",
        seed: args.seed,
        frames_sent: args.frames,
        frames_verified: verified,
        mismatches,
        first_mismatch,
        checks,
        checks_failed,
        seconds: started.elapsed().as_secs_f64(),
        server_rss_kib,
    };
    let ok = report.mismatches == 0
        && report.checks_failed == 0
        && report.frames_verified == report.frames_sent;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    Ok(ok)
}

fn print_text(r: &FragReport) {
    println!(
        "frag: {}/{} frames verified in {:.2} s (seed {}), {} mismatching streams",
        r.frames_verified, r.frames_sent, r.seconds, r.seed, r.mismatches
    );
    if let Some(m) = &r.first_mismatch {
        println!("first mismatch: {m}");
    }
    for c in &r.checks {
        println!(
            "  [{}] {}: {}",
            if c.passed { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    if let Some(rss) = &r.server_rss_kib {
        println!(
            "server RSS: start {} KiB, max {} KiB, end {} KiB",
            rss.start, rss.max, rss.end
        );
    }
}

/// The payload of frame `i` of connection `conn`: a pure function, so the reader can regenerate
/// what the writer sent without sharing state. Mostly small, sometimes a few KiB, rarely ~70 KiB
/// (larger than the server's initial receive buffer).
fn payload(seed: u64, conn: u64, i: u64) -> Vec<u8> {
    let h = splitmix(
        seed ^ conn.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03),
    );
    let len = match h % 1000 {
        0 => 70_000 + (h >> 20) as usize % 1000,
        1..=20 => 1000 + (h >> 20) as usize % 4000,
        _ => (h >> 20) as usize % 200,
    };
    (0..len)
        .map(|j| (h >> (j % 7 * 8)) as u8 ^ j as u8)
        .collect()
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes `frames` pings in the given split mode while a second thread verifies the pongs.
/// Returns the count verified and the first mismatch.
fn valid_stream(
    addr: &str,
    seed: u64,
    conn: u64,
    frames: u64,
    mode: SplitMode,
) -> anyhow::Result<(u64, Option<String>)> {
    let stream = wire::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    let mut writer = stream.try_clone()?;
    let writer_thread = thread::spawn(move || -> std::io::Result<()> {
        let mut rng = SmallRng::seed_from_u64(seed ^ conn);
        let mut out = Vec::with_capacity(COALESCED_WRITE + 128 * 1024);
        for i in 0..frames {
            wire::push_ping(&mut out, i, &payload(seed, conn, i));
            let flush = match mode {
                SplitMode::ByteByByte if i < BYTE_BY_BYTE_FRAMES => true,
                SplitMode::Coalesced => out.len() >= COALESCED_WRITE,
                _ => out.len() >= 16 * 1024,
            };
            if flush || i + 1 == frames {
                write_split(&mut writer, &out, mode, i, &mut rng)?;
                out.clear();
            }
        }
        Ok(())
    });
    let mut reader = FrameReader::new(stream);
    let mut verified = 0;
    let mut mismatch = None;
    for i in 0..frames {
        match reader.next() {
            Ok(Some(frame)) => {
                match wire::check_pong(frame.header, &frame.payload, i, &payload(seed, conn, i)) {
                    Ok(()) => verified += 1,
                    Err(e) => {
                        mismatch = Some(format!("connection {conn} ({mode:?}), frame {i}: {e}"));
                        break;
                    }
                }
            }
            Ok(None) => {
                mismatch = Some(format!(
                    "connection {conn} ({mode:?}): closed after {i} of {frames} frames"
                ));
                break;
            }
            Err(e) => {
                mismatch = Some(format!("connection {conn} ({mode:?}), frame {i}: {e}"));
                break;
            }
        }
    }
    let _ = reader.stream().shutdown(Shutdown::Both);
    if let Ok(Err(e)) = writer_thread.join() {
        if mismatch.is_none() {
            mismatch = Some(format!("connection {conn} ({mode:?}): write failed: {e}"));
        }
    }
    Ok((verified, mismatch))
}

fn write_split(
    w: &mut TcpStream,
    bytes: &[u8],
    mode: SplitMode,
    frame: u64,
    rng: &mut SmallRng,
) -> std::io::Result<()> {
    match mode {
        SplitMode::ByteByByte if frame < BYTE_BY_BYTE_FRAMES => {
            for b in bytes {
                w.write_all(std::slice::from_ref(b))?;
            }
            Ok(())
        }
        SplitMode::Coalesced => w.write_all(bytes),
        _ => {
            let mut rest = bytes;
            while !rest.is_empty() {
                let n = match rng.gen_range(0..10) {
                    0..=3 => rng.gen_range(1..=16),
                    4..=7 => rng.gen_range(17..=512),
                    _ => rng.gen_range(513..=8192),
                }
                .min(rest.len());
                w.write_all(&rest[..n])?;
                rest = &rest[n..];
            }
            Ok(())
        }
    }
}

/// Each kind of bad input on its own connection: the expected error code (if the stream allows a
/// reply) and then a close.
fn bad_frame_checks(addr: &str, seed: u64) -> Vec<Check> {
    let header = |version: u8, op: u8, flags: u8, len: u32| {
        let l = len.to_be_bytes();
        vec![version, op, flags, 0, l[0], l[1], l[2], l[3]]
    };
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut garbage: Vec<u8> = (0..64).map(|_| rng.gen()).collect();
    if garbage[0] == VERSION {
        garbage[0] ^= 0xFF;
    }
    let mut bad_payload = Header::new(OpCode::Ping, 10).encode().to_vec();
    bad_payload.extend_from_slice(&[0xAB; 10]);
    let mut valid_then_bad = Vec::new();
    wire::push_ping(&mut valid_then_bad, 7, b"ok");
    valid_then_bad.extend_from_slice(&header(VERSION, 0xEE, 0, 0));
    let mut truncated = Header::new(OpCode::Ping, 100).encode().to_vec();
    truncated.extend_from_slice(&[1; 10]);
    vec![
        expect_error(
            addr,
            "oversized_length",
            &header(VERSION, OpCode::Ping as u8, 0, MAX_FRAME_LEN + 1),
            0,
            Some(ErrorCode::FrameTooLarge),
        ),
        expect_error(
            addr,
            "wrong_version",
            &header(1, OpCode::Ping as u8, 0, 0),
            0,
            Some(ErrorCode::WrongVersion),
        ),
        expect_error(addr, "garbage", &garbage, 0, None),
        expect_error(
            addr,
            "unknown_opcode",
            &header(VERSION, 0xEE, 0, 0),
            0,
            Some(ErrorCode::UnknownOpcode),
        ),
        expect_error(
            addr,
            "reserved_bits",
            &header(VERSION, OpCode::Ping as u8, 0x80, 0),
            0,
            Some(ErrorCode::MalformedHeader),
        ),
        expect_error(
            addr,
            "invalid_payload",
            &bad_payload,
            0,
            Some(ErrorCode::InvalidPayload),
        ),
        expect_error(
            addr,
            "valid_then_unknown_opcode",
            &valid_then_bad,
            1,
            Some(ErrorCode::UnknownOpcode),
        ),
        expect_close(addr, "truncated_then_closed", &truncated),
        skipped_handshake(addr),
    ]
}

/// Sends `bytes`, expects `pongs` Pong frames, then an Error frame (with `code` if given), then EOF.
fn expect_error(
    addr: &str,
    name: &'static str,
    bytes: &[u8],
    pongs: usize,
    code: Option<ErrorCode>,
) -> Check {
    check(name, error_then_close(addr, false, bytes, pongs, code))
}

/// A peer that skips the handshake: after the server's challenge, its first frame gets one
/// `Unauthorized` error and a close.
fn skipped_handshake(addr: &str) -> Check {
    let mut ping = Vec::new();
    wire::push_ping(&mut ping, 1, b"no key");
    let result = error_then_close(addr, true, &ping, 0, Some(ErrorCode::Unauthorized));
    check("skipped_handshake", result)
}

/// What [`expect_error`] checks; `raw` connects without the handshake (the challenge then
/// comes first).
fn error_then_close(
    addr: &str,
    raw: bool,
    bytes: &[u8],
    pongs: usize,
    code: Option<ErrorCode>,
) -> Result<String, String> {
    let connect = if raw {
        wire::connect_raw
    } else {
        wire::connect
    };
    let mut stream = connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(CHECK_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream.write_all(bytes).map_err(|e| e.to_string())?;
    let mut reader = FrameReader::new(stream);
    if raw {
        match reader.next() {
            Ok(Some(f)) if f.header.opcode == OpCode::Challenge => {}
            other => return Err(format!("expected the challenge, got {other:?}")),
        }
    }
    for i in 0..pongs {
        match reader.next() {
            Ok(Some(f)) if f.header.opcode == OpCode::Pong => {}
            other => return Err(format!("reply {i}: expected Pong, got {other:?}")),
        }
    }
    let frame = match reader.next() {
        Ok(Some(f)) => f,
        other => return Err(format!("expected an Error frame, got {other:?}")),
    };
    let got = wire::error_code(&frame).ok_or_else(|| {
        format!(
            "expected Error, got {}",
            wire::describe(frame.header, &frame.payload)
        )
    })?;
    if let Some(code) = code {
        if got != code as u16 {
            return Err(format!(
                "expected error code {} ({code:?}), got {}",
                code as u16,
                wire::describe(frame.header, &frame.payload)
            ));
        }
    }
    expect_eof(reader.stream())?;
    Ok(format!(
        "{}, then closed",
        wire::describe(frame.header, &frame.payload)
    ))
}

/// Sends a partial frame and closes the write side: no reply is possible, the server must close.
fn expect_close(addr: &str, name: &'static str, bytes: &[u8]) -> Check {
    let result = (|| -> Result<String, String> {
        let mut stream = wire::connect(addr).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(CHECK_TIMEOUT))
            .map_err(|e| e.to_string())?;
        stream.write_all(bytes).map_err(|e| e.to_string())?;
        stream
            .shutdown(Shutdown::Write)
            .map_err(|e| e.to_string())?;
        expect_eof(&mut stream)?;
        Ok("closed without a reply".into())
    })();
    check(name, result)
}

fn expect_eof(stream: &mut TcpStream) -> Result<(), String> {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        Ok(_) => Err("server sent more bytes instead of closing".into()),
        Err(e) => Err(format!("server did not close: {e}")),
    }
}

/// After all the abuse the server must still answer.
fn liveness(addr: &str) -> Check {
    let result = (|| -> Result<String, String> {
        let mut stream = wire::connect(addr).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(CHECK_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        wire::push_ping(&mut out, 42, b"still alive?");
        stream.write_all(&out).map_err(|e| e.to_string())?;
        let mut reader = FrameReader::new(stream);
        match reader.next() {
            Ok(Some(f)) => wire::check_pong(f.header, &f.payload, 42, b"still alive?")
                .map(|_| "answers a ping".into()),
            other => Err(format!("no Pong: {other:?}")),
        }
    })();
    check("server_alive_after", result)
}

fn check(name: &'static str, result: Result<String, String>) -> Check {
    match result {
        Ok(detail) => Check {
            name,
            passed: true,
            detail,
        },
        Err(detail) => Check {
            name,
            passed: false,
            detail,
        },
    }
}

struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: thread::JoinHandle<u64>,
}

impl RssSampler {
    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

fn spawn_rss_sampler(pid: u32) -> RssSampler {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = thread::spawn(move || {
        let mut max = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            max = max.max(report::rss_kib(pid).unwrap_or(0));
            thread::sleep(Duration::from_millis(50));
        }
        max
    });
    RssSampler { stop, thread }
}
