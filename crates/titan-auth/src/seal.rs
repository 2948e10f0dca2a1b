//! Sealing log datagrams: ChaCha20-Poly1305 (an AEAD, `ring`'s), which authenticates what it
//! covers and encrypts what it seals. The datagram format (`titan_logs::datagram`) says which
//! bytes are sealed under which key and how nonces are made unique; this is the primitive.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

use super::derive::KeyBytes;

/// Bytes of a seal's authentication tag.
pub const SEAL_TAG_BYTES: usize = 16;
/// Bytes of a seal's nonce.
pub const SEAL_NONCE_BYTES: usize = 12;

/// A sealing key (an attempt's log key, or a worker's).
#[derive(Clone)]
pub struct SealKey(LessSafeKey);

impl SealKey {
    pub fn new(bytes: &KeyBytes) -> SealKey {
        // ChaCha20-Poly1305 takes exactly a 32-byte key, which `KeyBytes` is.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes);
        SealKey(LessSafeKey::new(unbound.expect("a 32-byte ChaCha20 key")))
    }

    /// Encrypts `in_out` in place and returns the tag over it and `aad`. `nonce` must never be
    /// used twice with this key.
    pub fn seal(
        &self,
        nonce: [u8; SEAL_NONCE_BYTES],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; SEAL_TAG_BYTES] {
        let nonce = Nonce::assume_unique_for_key(nonce);
        let mut out = [0u8; SEAL_TAG_BYTES];
        // ring refuses only inputs of more than 256 GiB; a datagram is at most 64 KiB.
        if let Ok(tag) = self
            .0
            .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
        {
            out.copy_from_slice(tag.as_ref());
        }
        out
    }

    /// Checks `tag` over `in_out` and `aad` and decrypts `in_out` in place; false (and
    /// `in_out` unusable) when anything was forged or altered.
    pub fn open(
        &self,
        nonce: [u8; SEAL_NONCE_BYTES],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8],
    ) -> bool {
        let Ok(tag) = aead::Tag::try_from(tag) else {
            return false;
        };
        let nonce = Nonce::assume_unique_for_key(nonce);
        self.0
            .open_in_place_separate_tag(nonce, Aad::from(aad), tag, in_out, 0..)
            .is_ok()
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_with_the_same_key_nonce_and_aad_only() {
        let key = SealKey::new(&[1; 32]);
        let mut bytes = *b"hello, log";
        let tag = key.seal([2; 12], b"header", &mut bytes);
        assert_ne!(&bytes, b"hello, log", "encrypted");
        let mut copy = bytes;
        assert!(
            !key.open([3; 12], b"header", &mut copy, &tag),
            "other nonce"
        );
        let mut copy = bytes;
        assert!(!key.open([2; 12], b"HEADER", &mut copy, &tag), "other aad");
        let mut copy = bytes;
        assert!(
            !SealKey::new(&[9; 32]).open([2; 12], b"header", &mut copy, &tag),
            "other key"
        );
        let mut copy = bytes;
        copy[0] ^= 1;
        assert!(!key.open([2; 12], b"header", &mut copy, &tag), "altered");
        assert!(key.open([2; 12], b"header", &mut bytes, &tag));
        assert_eq!(&bytes, b"hello, log");
        let empty_tag = key.seal([4; 12], b"only aad", &mut []);
        assert!(key.open([4; 12], b"only aad", &mut [], &empty_tag));
        assert!(!key.open([4; 12], b"only aad", &mut [], &empty_tag[..15]));
    }
}
