//! Standard base64 (RFC 4648 alphabet, `=` padding) for the `RUN_INLINE|name:BASE64` text syntax.
//!
//! Inline scripts travel raw inside rkyv payloads; base64 exists only in the human-typed grammar, so
//! a small strict codec here is simpler than a dependency. Decoding accepts padded or unpadded
//! input and rejects anything else with the offending byte offset.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a base64 text did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Base64Error {
    /// A byte outside the alphabet (or padding in the middle).
    #[error("invalid base64 character at offset {offset}")]
    BadChar {
        /// Byte offset in the text.
        offset: usize,
    },
    /// The length cannot be a base64 encoding (one dangling character).
    #[error("truncated base64 text (length {len})")]
    BadLength {
        /// Length without padding.
        len: usize,
    },
}

/// Encodes `bytes` as padded base64.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes padded or unpadded base64.
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let raw = text.as_bytes();
    let body_len = raw.iter().rposition(|&c| c != b'=').map_or(0, |p| p + 1);
    let padding = raw.len() - body_len;
    if padding > 2 || (padding > 0 && raw.len() % 4 != 0) {
        return Err(Base64Error::BadChar { offset: body_len });
    }
    let body = &raw[..body_len];
    if body.len() % 4 == 1 {
        return Err(Base64Error::BadLength { len: body.len() });
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for (ci, chunk) in body.chunks(4).enumerate() {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = value(c).ok_or(Base64Error::BadChar { offset: ci * 4 + i })?;
            n |= v << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
        assert_eq!(decode("Zm9vYg").unwrap(), b"foob");
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            decode("Zm9*").unwrap_err(),
            Base64Error::BadChar { offset: 3 }
        );
        assert_eq!(decode("Z").unwrap_err(), Base64Error::BadLength { len: 1 });
        assert!(decode("Zg=a").is_err());
        assert!(decode("Zg===").is_err());
    }

    #[test]
    fn all_byte_values_round_trip() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        for n in 0..bytes.len() {
            assert_eq!(decode(&encode(&bytes[..n])).unwrap(), &bytes[..n]);
        }
    }
}
