//! The seals of a datagram (see the parent module's layout): the nonce and the data each seal
//! covers, and checking them all on receipt ([`unseal`]). The writer seals with the same
//! helpers.

use super::{read_header, AttemptKey, DecodeError};
use crate::limits::{HEADER_BYTES, HEADER_FIELDS_BYTES, SECTION_BYTES, TAG_BYTES};
use titan_auth::{SealKey, SEAL_NONCE_BYTES};
use titan_core::{JobId, WorkerId};

/// The section index in the header seal's nonce.
pub(super) const HEADER_SEAL_INDEX: u16 = u16::MAX;

/// A seal's nonce: the sender's session, then its datagram number and the sealed part's index.
/// (`seq` stays below 2^48: a sender sealing a million datagrams a second gets there in nine
/// years.)
pub(crate) fn seal_nonce(session: u32, seq: u64, index: u16) -> [u8; SEAL_NONCE_BYTES] {
    let mut nonce = [0u8; SEAL_NONCE_BYTES];
    nonce[..4].copy_from_slice(&session.to_be_bytes());
    nonce[4..].copy_from_slice(&((seq << 16) | u64::from(index)).to_be_bytes());
    nonce
}

/// What a section's seal covers besides its body: the header's fields and its own header.
pub(crate) fn section_aad(
    fields: &[u8],
    section_head: &[u8],
) -> [u8; HEADER_FIELDS_BYTES + SECTION_BYTES] {
    let mut aad = [0u8; HEADER_FIELDS_BYTES + SECTION_BYTES];
    aad[..HEADER_FIELDS_BYTES].copy_from_slice(&fields[..HEADER_FIELDS_BYTES]);
    aad[HEADER_FIELDS_BYTES..].copy_from_slice(&section_head[..SECTION_BYTES]);
    aad
}

/// The keys a receiver opens datagrams with (the master derives them from its secret).
pub trait OpenKeys {
    /// The key of `worker`'s datagram headers.
    fn worker_key(&mut self, worker: WorkerId) -> Option<&SealKey>;
    /// The key of one attempt's lines.
    fn attempt_key(&mut self, attempt: AttemptKey) -> Option<&SealKey>;
}

/// Checks the header's seal and each section's, decrypting the sections' bodies in place.
pub(super) fn unseal(bytes: &mut [u8], keys: &mut impl OpenKeys) -> Result<(), DecodeError> {
    let (header, _) = read_header(bytes)?;
    let (head, rest) = bytes.split_at_mut(HEADER_BYTES);
    let (fields, tag) = head.split_at(HEADER_FIELDS_BYTES);
    let worker = keys
        .worker_key(header.worker)
        .ok_or(DecodeError::ForgedHeader)?;
    let nonce = seal_nonce(header.session, header.seq, HEADER_SEAL_INDEX);
    if !worker.open(nonce, fields, &mut [], tag) {
        return Err(DecodeError::ForgedHeader);
    }
    let mut at = 0;
    for section in 0..usize::from(header.sections) {
        let left = rest.len() - at;
        if left < SECTION_BYTES {
            return Err(DecodeError::Truncated {
                section,
                needed: SECTION_BYTES,
                left,
            });
        }
        let section_head = &rest[at..at + SECTION_BYTES];
        let job = u64::from_be_bytes(section_head[0..8].try_into().unwrap_or_default());
        let attempt = u32::from_be_bytes(section_head[8..12].try_into().unwrap_or_default());
        let body_len = usize::from(u16::from_be_bytes([section_head[24], section_head[25]]));
        let needed = SECTION_BYTES + body_len + TAG_BYTES;
        if left < needed {
            return Err(DecodeError::Truncated {
                section,
                needed,
                left,
            });
        }
        let aad = section_aad(fields, section_head);
        let key = keys.attempt_key(AttemptKey::new(JobId(job), attempt));
        let sealed = &mut rest[at + SECTION_BYTES..at + needed];
        let (body, tag) = sealed.split_at_mut(body_len);
        let nonce = seal_nonce(header.session, header.seq, section as u16);
        if !key.is_some_and(|key| key.open(nonce, &aad, body, tag)) {
            return Err(DecodeError::ForgedSection { section });
        }
        at += needed;
    }
    Ok(())
}
