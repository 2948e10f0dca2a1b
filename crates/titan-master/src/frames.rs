//! Reply frames built whole, for answers that travel between shards before they reach their
//! connection: a `Data` frame with a message, an `Error` frame, and how much of a job list one
//! frame holds.

use titan_proto::message::client::JobStatus;
use titan_proto::{encode_frame, ErrorCode, OpCode};

/// A `Data` frame with `msg` (an `Internal` error frame if it cannot be encoded).
pub fn data_frame<T>(msg: &T) -> Vec<u8>
where
    T: for<'a, 'b> rkyv::Serialize<titan_proto::codec::FrameSerializer<'a, 'b>>,
{
    let mut frame = Vec::new();
    if let Err(e) = encode_frame(&mut frame, OpCode::Data, msg) {
        frame.clear();
        titan_proto::encode_error(&mut frame, ErrorCode::Internal, &e.to_string());
    }
    frame
}

pub fn error_frame(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut frame = Vec::new();
    titan_proto::encode_error(&mut frame, code, message);
    frame
}

/// How many of `jobs` (from the first) fit in one reply frame, by a generous estimate of each
/// one's archived size.
pub fn fitting_in_a_frame(jobs: &[JobStatus]) -> usize {
    /// The fixed-size fields, string headers and the frame header, rounded up.
    const FIXED: usize = 256;
    let budget = titan_proto::limits::MAX_FRAME_LEN as usize / 10 * 9;
    let mut used = 0;
    jobs.iter()
        .position(|j| {
            used += FIXED
                + j.label.len()
                + j.kind.len()
                + j.spec.len()
                + j.skill.len()
                + j.last_error.as_ref().map_or(0, |e| e.len())
                + j.deps.iter().map(|d| d.len() + 8).sum::<usize>();
            used > budget
        })
        .unwrap_or(jobs.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use titan_proto::message::client::JobList;

    #[test]
    fn a_job_list_is_cut_to_what_one_frame_holds() {
        let job = |spec_len: usize| JobStatus {
            kind: "RUN_INLINE".into(),
            spec: "x".repeat(spec_len),
            ..JobStatus::sample()
        };
        let big: Vec<_> = (0..20).map(|_| job(1 << 20)).collect();
        let fit = fitting_in_a_frame(&big);
        assert_eq!(fit, 8);
        let frame = data_frame(&JobList {
            jobs: big[..fit].to_vec(),
            truncated: true,
        });
        assert_eq!(frame[1], OpCode::Data as u8, "the cut list encodes");
        let small: Vec<_> = (0..1000).map(|_| job(100)).collect();
        assert_eq!(fitting_in_a_frame(&small), 1000);
    }
}
