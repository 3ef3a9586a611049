//! Webhook ingress, step 1: only Telegram, which knows the secret the operator registered,
//! may deliver updates. Anything else is refused before the body is even read.

use axum::http::HeaderMap;
use botfleet_crds::webhook::WebhookSecret;

pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngressError {
    /// Answered 401: Telegram never retries a 401 for long, a forger learns nothing.
    #[error("missing or wrong X-Telegram-Bot-Api-Secret-Token")]
    BadSecret,
}

/// Checks the secret header of one webhook request.
pub fn authenticate(expected: &WebhookSecret, headers: &HeaderMap) -> Result<(), IngressError> {
    let received = headers.get(SECRET_HEADER).map(|v| v.as_bytes());
    if expected.matches(received) { Ok(()) } else { Err(IngressError::BadSecret) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(SECRET_HEADER, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn an_update_with_the_registered_secret_is_accepted() {
        let secret = WebhookSecret::parse("s3cret_value").unwrap();
        assert_eq!(authenticate(&secret, &headers(Some("s3cret_value"))), Ok(()));
    }

    #[test]
    fn a_missing_or_wrong_secret_is_refused() {
        let secret = WebhookSecret::parse("s3cret_value").unwrap();
        assert_eq!(authenticate(&secret, &headers(None)), Err(IngressError::BadSecret));
        assert_eq!(authenticate(&secret, &headers(Some("s3cret_valuf"))), Err(IngressError::BadSecret));
    }
}
