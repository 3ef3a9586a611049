//! Bot tokens: kept out of every log line, error and status.
//!
//! A token (`<bot id>:<secret>`) grants full control of a bot. It appears in Bot API URLs, so
//! HTTP client errors (teloxide's, reqwest's) carry it; everything that may reach a log goes
//! through [`mask_tokens`] first, and types holding a token print only its fingerprint.

use std::borrow::Cow;
use std::fmt;

use sha2::{Digest, Sha256};

/// Secrets shorter than this are not treated as tokens (Telegram's are 35 characters).
const MIN_SECRET_LEN: usize = 20;

/// A bot token. `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BotToken(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a bot token looks like <bot id>:<secret>; this one does not")]
    Malformed,
}

impl BotToken {
    /// Parses a token as read from a Secret or file (surrounding whitespace is dropped).
    pub fn parse(raw: &str) -> Result<Self, TokenError> {
        let raw = raw.trim();
        let (id, secret) = raw.split_once(':').ok_or(TokenError::Malformed)?;
        let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
        let secret_ok = !secret.is_empty() && secret.bytes().all(is_secret_byte);
        if id_ok && secret_ok { Ok(Self(raw.to_string())) } else { Err(TokenError::Malformed) }
    }

    /// The token itself, for the one place that needs it: the Bot API request.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn bot_id(&self) -> Option<i64> {
        self.0.split_once(':').and_then(|(id, _)| id.parse().ok())
    }

    /// What status and logs show instead of the token.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.0)
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BotToken({})", self.fingerprint())
    }
}

impl fmt::Display for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bot_id() {
            Some(id) => write!(f, "{id}:***"),
            None => f.write_str("***"),
        }
    }
}

/// A stable, non-reversible identifier of a token: `sha256:` and the first 12 hex digits.
pub fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.trim().as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn is_secret_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Replaces every bot token in `text` by `<bot id>:***`.
pub fn mask_tokens(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        // A token starts with a digit run not glued to a preceding digit…
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit()) {
            let id_end = i + bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            // …followed by ':' and a long run of secret characters.
            if bytes.get(id_end) == Some(&b':') {
                let secret_len = bytes[id_end + 1..].iter().take_while(|b| is_secret_byte(**b)).count();
                if secret_len >= MIN_SECRET_LEN {
                    let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
                    buf.push_str(&text[copied..=id_end]);
                    buf.push_str("***");
                    i = id_end + 1 + secret_len;
                    copied = i;
                    continue;
                }
            }
            i = id_end;
            continue;
        }
        i += 1;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

    #[test]
    fn tokens_inside_urls_and_errors_are_masked() {
        let err = format!("error sending request for url (https://api.telegram.org/bot{TOKEN}/sendMessage): timed out");
        let masked = mask_tokens(&err);
        assert!(!masked.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"));
        assert_eq!(masked, "error sending request for url (https://api.telegram.org/bot123456789:***/sendMessage): timed out");
    }

    #[test]
    fn several_tokens_are_all_masked_and_other_text_is_untouched() {
        let text = format!("a {TOKEN} b 42:short c {TOKEN}");
        assert_eq!(mask_tokens(&text), "a 123456789:*** b 42:short c 123456789:***");
        assert!(matches!(mask_tokens("nothing here 12:30"), Cow::Borrowed(_)));
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let t = BotToken::parse(&format!("  {TOKEN}\n")).unwrap();
        assert_eq!(t.to_string(), "123456789:***");
        assert!(!format!("{t:?}").contains("AAHd"));
        assert_eq!(t.expose(), TOKEN);
        assert_eq!(t.bot_id(), Some(123456789));
    }

    #[test]
    fn fingerprint_is_stable_and_short() {
        assert_eq!(fingerprint(TOKEN), fingerprint(&format!("{TOKEN}\n")));
        assert_ne!(fingerprint(TOKEN), fingerprint("123456789:other"));
        assert_eq!(fingerprint(TOKEN).len(), "sha256:".len() + 12);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", "no-colon", ":secret", "12a:secret", "123:", "123:has space"] {
            assert_eq!(BotToken::parse(bad), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn masking_survives_multibyte_text() {
        assert_eq!(mask_tokens(&format!("ошибка {TOKEN} 😀")), "ошибка 123456789:*** 😀");
    }
}
