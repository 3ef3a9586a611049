//! The fleet's invoice-payload signing keys (docs/MONEY.md, "Signed payloads"), as the
//! operator keeps them: one Secret per namespace, created with one random key when absent and
//! never overwritten (admins rotate by editing it), mounted into every runtime pod of the
//! namespace at [`PAYLOAD_KEY_FILE`](crate::resolved::PAYLOAD_KEY_FILE).
//!
//! The file format is the runtime's (`bot-runtime/src/payload.rs`): one key per line, blank
//! lines and `#` comments skipped, each key at least [`MIN_KEY_LEN`] bytes; the first key signs,
//! every key verifies. [`PayloadKeys::parse`] accepts exactly what the runtime accepts, so the
//! operator never mounts a file that would stop the pods from starting.

use std::fmt;

use sha2::{Digest, Sha256};

/// The shortest key accepted (bytes): HMAC-SHA256 wants at least the hash's length.
pub const MIN_KEY_LEN: usize = 32;
/// Random bytes in a generated key (written as 64 hex characters).
const GENERATED_BYTES: usize = 32;

/// The text of a valid key file. Never printed: `Debug` shows the fingerprint only.
#[derive(Clone, PartialEq, Eq)]
pub struct PayloadKeys {
    text: String,
    count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadKeysError {
    #[error("it holds no key (one key per line; blank lines and lines starting with # are skipped)")]
    Empty,
    #[error("key {line} is shorter than {MIN_KEY_LEN} bytes (e.g. `openssl rand -hex 32` makes a 64-character key)")]
    TooShort { line: usize },
    #[error("it is not UTF-8 text")]
    NotText,
}

#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomSourceFailed(String);

impl PayloadKeys {
    /// A key file's contents, checked as the runtime checks them.
    pub fn parse(text: &str) -> Result<Self, PayloadKeysError> {
        let keys: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        if keys.is_empty() {
            return Err(PayloadKeysError::Empty);
        }
        if let Some(short) = keys.iter().position(|k| k.len() < MIN_KEY_LEN) {
            return Err(PayloadKeysError::TooShort { line: short + 1 });
        }
        Ok(Self { text: text.to_string(), count: keys.len() })
    }

    /// The bytes of a Secret's value.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PayloadKeysError> {
        Self::parse(std::str::from_utf8(bytes).map_err(|_| PayloadKeysError::NotText)?)
    }

    /// One fresh key of 32 bytes straight from the operating system's CSPRNG (`getrandom`),
    /// in hex, as the only line of a new key file.
    pub fn generate() -> Result<Self, RandomSourceFailed> {
        use rand::TryRngCore as _;
        let mut bytes = [0u8; GENERATED_BYTES];
        rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|e| RandomSourceFailed(e.to_string()))?;
        let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { text: format!("{key}\n"), count: 1 })
    }

    /// The file's text, to be written into the Secret (and nowhere else).
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// How many keys verify (the first of them signs).
    pub fn count(&self) -> usize {
        self.count
    }

    /// `sha256:<12 hex>` of the whole file: it changes with any edit, so pods roll to it
    /// (the runtime reads the keys at start only), and it reveals nothing usable.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.text.as_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

impl fmt::Debug for PayloadKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayloadKeys({} key(s), {})", self.count, self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_file_holds_one_fresh_64_hex_character_key_the_runtime_accepts() {
        let a = PayloadKeys::generate().unwrap();
        let b = PayloadKeys::generate().unwrap();
        assert_ne!(a, b);
        let key = a.expose().trim();
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(PayloadKeys::parse(a.expose()), Ok(a.clone()));
        assert_eq!(a.count(), 1);
    }

    #[test]
    fn files_the_runtime_would_refuse_are_refused() {
        let key = "k".repeat(32);
        assert_eq!(PayloadKeys::parse(""), Err(PayloadKeysError::Empty));
        assert_eq!(PayloadKeys::parse("# only a comment\n\n"), Err(PayloadKeysError::Empty));
        assert_eq!(PayloadKeys::parse(&format!("{key}\nshort\n")), Err(PayloadKeysError::TooShort { line: 2 }));
        assert_eq!(PayloadKeys::from_bytes(&[0xff, 0xfe]), Err(PayloadKeysError::NotText));
        let rotated = PayloadKeys::parse(&format!("# new key first\n{key}\n\n  {}  \n", "o".repeat(40))).unwrap();
        assert_eq!(rotated.count(), 2);
    }

    #[test]
    fn the_fingerprint_follows_every_edit_and_debug_never_shows_a_key() {
        let key = "k".repeat(32);
        let one = PayloadKeys::parse(&format!("{key}\n")).unwrap();
        let two = PayloadKeys::parse(&format!("{key}\n{}\n", "n".repeat(32))).unwrap();
        assert_ne!(one.fingerprint(), two.fingerprint());
        assert!(one.fingerprint().starts_with("sha256:"));
        assert!(!format!("{two:?}").contains(&key));
    }
}
