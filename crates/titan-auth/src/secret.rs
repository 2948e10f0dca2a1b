//! A secret of [`SECRET_BYTES`] random bytes: made by the OS random source, read from and
//! written to hex, compared in constant time, zeroed when dropped, and never printed.

use ring::rand::{SecureRandom, SystemRandom};

use super::AuthError;

/// Bytes of every secret and derived key (256 bits).
pub const SECRET_BYTES: usize = 32;

/// A secret key. `Debug` shows `Secret(..)`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_BYTES]);

impl Secret {
    /// A fresh secret from the OS random source.
    pub fn random() -> Result<Secret, AuthError> {
        Ok(Secret(random_bytes()?))
    }

    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> Secret {
        Secret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }

    /// Parses exactly [`SECRET_BYTES`] bytes of hex; the error never quotes the input.
    pub fn from_hex(text: &str) -> Result<Secret, String> {
        let text = text.trim();
        if text.len() != 2 * SECRET_BYTES {
            return Err(format!(
                "a key is {} hex digits, this one has {}",
                2 * SECRET_BYTES,
                text.len()
            ));
        }
        let mut bytes = [0u8; SECRET_BYTES];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => bytes[i] = (hi * 16 + lo) as u8,
                _ => return Err("a key may only hold hex digits (0-9, a-f)".to_string()),
            }
        }
        Ok(Secret(bytes))
    }

    /// Lower-case hex, for the access file and `TITAN_KEY` (callers keep it off logs).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for byte in self.0.iter_mut() {
            // SAFETY: a plain write through a valid, aligned reference; volatile so the zeroing
            // of memory about to be freed is not optimised away.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
    }
}

/// `N` bytes from the OS random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AuthError::Random)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_bad_hex_is_refused_without_echoing_it() {
        let secret = Secret::random().unwrap();
        assert_eq!(Secret::from_hex(&secret.to_hex()).unwrap(), secret);
        assert_ne!(Secret::random().unwrap(), secret, "fresh secrets differ");
        let bad = "zz".repeat(SECRET_BYTES);
        let err = Secret::from_hex(&bad).unwrap_err();
        assert!(!err.contains("zz"), "{err}");
        assert!(Secret::from_hex("abcd")
            .unwrap_err()
            .contains("64 hex digits"));
    }

    #[test]
    fn debug_hides_the_bytes() {
        let secret = Secret::from_bytes([0xab; SECRET_BYTES]);
        assert_eq!(format!("{secret:?}"), "Secret(..)");
    }
}
