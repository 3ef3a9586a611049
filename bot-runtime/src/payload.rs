//! Signed invoice payloads (docs/MONEY.md, "Quotes"): `q:<quote id>.<tag>`, where the tag is
//! HMAC-SHA256 (RFC 2104) over `<bot id>|<quote id>` under a fleet-wide key, in hex.
//!
//! The payload is 2 + 24 + 1 + 64 = 91 bytes, within Telegram's 1–128. Binding the bot id
//! means a payload of one bot is refused by every other bot of the fleet.
//!
//! Keys come from a file (one key per line; blank lines and `#` comments skipped): the first
//! key signs, every key verifies, so a key is rotated without refusing invoices in flight:
//! add the new key as the *second* line and roll out, move it to the first line and roll out,
//! remove the old key once the last invoice it signed has expired (15 minutes after that
//! rollout). The file is named by the configuration (`secrets.payloadKeyFile`) or, failing
//! that, by the `PAYLOAD_KEY_FILE` environment variable.
//!
//! HMAC is written here (a dozen lines over `sha2`, checked against RFC 4231's test vectors
//! below) rather than pulling in a crate for it; the comparison is constant-time.

use sha2::{Digest, Sha256};

/// The environment variable naming the key file when the configuration does not.
pub const KEY_FILE_ENV: &str = "PAYLOAD_KEY_FILE";

/// The shortest key accepted (bytes): HMAC-SHA256 wants at least the hash's length.
pub const MIN_KEY_LEN: usize = 32;

const BLOCK: usize = 64;

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal, in time that does not depend on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a payload is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    /// Not `q:<id>.<tag>` (an unsigned payload of an older release, or not ours at all).
    Malformed,
    /// The tag matches none of the keys: forged or altered.
    BadTag,
}

/// The fleet's payload keys: the first signs, all verify.
#[derive(Clone)]
pub struct PayloadKeys {
    keys: Vec<Vec<u8>>,
    /// Generated at start (no key configured), known to this process only.
    generated: bool,
}

impl std::fmt::Debug for PayloadKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("PayloadKeys").field("keys", &self.keys.len()).field("generated", &self.generated).finish()
    }
}

impl PayloadKeys {
    /// Keys from the lines of a key file.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let keys: Vec<Vec<u8>> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| l.as_bytes().to_vec()).collect();
        if keys.is_empty() {
            anyhow::bail!("the payload key file has no key");
        }
        if let Some(short) = keys.iter().position(|k| k.len() < MIN_KEY_LEN) {
            anyhow::bail!("payload key {} is shorter than {MIN_KEY_LEN} bytes", short + 1);
        }
        Ok(Self { keys, generated: false })
    }

    /// A random key for this process. Used when no key is configured (local mode, or a
    /// deployment whose operator has not created the Secret yet). That is safe: the quote a
    /// payload names is stored server-side and every check at checkout is made against the
    /// stored quote (its owner, expiry, single use, price), so the tag adds no authority —
    /// it only refuses forged payloads early, without a database read. The cost of a key per
    /// process is that an invoice made before a restart, or by another replica, no longer
    /// verifies: the buyer is asked to tap Buy again. Hence the operator's Secret in production.
    pub fn generate() -> Self {
        let key: String = (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect();
        Self { keys: vec![key.into_bytes()], generated: true }
    }

    /// The keys named by `configured` (the configuration's file), else by `$PAYLOAD_KEY_FILE`,
    /// else generated (see [`PayloadKeys::generate`]). A named file that can't be read or holds
    /// no valid key is an error: a misconfigured Secret must not silently fall back.
    pub fn load(configured: Option<&str>) -> anyhow::Result<Self> {
        let env = std::env::var(KEY_FILE_ENV).ok().filter(|p| !p.trim().is_empty());
        match configured.map(str::to_string).or(env) {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading the payload key file {path}: {e}"))?;
                Self::parse(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))
            }
            None => {
                tracing::warn!(
                    "no payload key configured (secrets.payloadKeyFile or ${KEY_FILE_ENV}): using a key generated for this process"
                );
                Ok(Self::generate())
            }
        }
    }

    pub fn is_generated(&self) -> bool {
        self.generated
    }

    fn tag(key: &[u8], bot: &str, quote_id: &str) -> [u8; 32] {
        hmac_sha256(key, format!("{bot}|{quote_id}").as_bytes())
    }

    /// The invoice payload of quote `quote_id` of bot `bot` (the bot's fleet-wide id).
    pub fn sign(&self, bot: &str, quote_id: &str) -> String {
        format!("q:{quote_id}.{}", hex(&Self::tag(&self.keys[0], bot, quote_id)))
    }

    /// The quote id of a payload signed by any of the keys for `bot`.
    pub fn verify<'a>(&self, bot: &str, payload: &'a str) -> Result<&'a str, PayloadError> {
        let (id, tag) = split(payload).ok_or(PayloadError::Malformed)?;
        let tag = tag.as_bytes();
        if self.keys.iter().any(|k| constant_time_eq(hex(&Self::tag(k, bot, id)).as_bytes(), tag)) {
            Ok(id)
        } else {
            Err(PayloadError::BadTag)
        }
    }
}

/// `(quote id, tag)` of a well-formed signed payload.
fn split(payload: &str) -> Option<(&str, &str)> {
    let (id, tag) = payload.strip_prefix("q:")?.split_once('.')?;
    let ok_id = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let ok_tag = tag.len() == 64 && tag.bytes().all(|b| b.is_ascii_hexdigit());
    (ok_id && ok_tag).then_some((id, tag))
}

/// The quote id a payload names, signed or not (see `payments::on_successful_payment`: a
/// payment Telegram has already taken is honoured by its quote, whatever signed it).
pub fn quote_id_unverified(payload: &str) -> Option<&str> {
    let rest = payload.strip_prefix("q:")?;
    let id = rest.split_once('.').map_or(rest, |(id, _)| id);
    (!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 1.
        assert_eq!(hex(&hmac_sha256(&[0x0b; 20], b"Hi There")), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        // Test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    const K1: &str = "first-key-0123456789-0123456789-0123456789";
    const K2: &str = "second-key-0123456789-0123456789-0123456789";

    #[test]
    fn a_payload_verifies_under_any_key_and_fits_telegrams_limit() {
        let old = PayloadKeys::parse(K1).unwrap();
        let payload = old.sign("ns/alpha", "0123456789abcdef01234567");
        assert!(payload.len() <= 128, "{payload}");
        assert_eq!(old.verify("ns/alpha", &payload), Ok("0123456789abcdef01234567"));
        // Rotation: the new key first, the old one still accepted.
        let rotated = PayloadKeys::parse(&format!("# rotated\n{K2}\n\n{K1}\n")).unwrap();
        assert_eq!(rotated.verify("ns/alpha", &payload), Ok("0123456789abcdef01234567"));
        assert_ne!(rotated.sign("ns/alpha", "0123456789abcdef01234567"), payload, "signs with the first key");
        // Once the old key is gone, its payloads are refused.
        assert_eq!(PayloadKeys::parse(K2).unwrap().verify("ns/alpha", &payload), Err(PayloadError::BadTag));
    }

    #[test]
    fn tampered_unsigned_and_foreign_payloads_are_refused() {
        let keys = PayloadKeys::parse(K1).unwrap();
        let payload = keys.sign("ns/alpha", "0123456789abcdef01234567");
        let other_id = payload.replacen("0123", "0124", 1);
        assert_eq!(keys.verify("ns/alpha", &other_id), Err(PayloadError::BadTag));
        assert_eq!(keys.verify("ns/beta", &payload), Err(PayloadError::BadTag), "another bot's payload");
        assert_eq!(keys.verify("ns/alpha", "q:0123456789abcdef01234567"), Err(PayloadError::Malformed));
        assert_eq!(keys.verify("ns/alpha", "hello"), Err(PayloadError::Malformed));
        assert_eq!(quote_id_unverified("q:0123456789abcdef01234567"), Some("0123456789abcdef01234567"));
        assert_eq!(quote_id_unverified(&payload), Some("0123456789abcdef01234567"));
        assert!(PayloadKeys::parse("short").is_err());
        assert!(PayloadKeys::parse("# nothing\n").is_err());
    }
}
