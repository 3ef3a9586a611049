//! Who is who across the fleet. Decisions (docs/ARCHITECTURE.md, "Identity"):
//!
//! * A **person** is a Telegram user id: the same human on every bot. Safety (bans,
//!   restrictions, blocks, reports) belongs to the person and holds on every bot.
//! * A **member** is a person on one bot ([`crate::matching::Member`]): profile, VIP and credits
//!   belong to the member, because the user paid that brand.
//! * A **bot** is named fleet-wide by `<namespace>/<name>` ([`BotId`]) and a **pool** by
//!   `<namespace>/<pool>` ([`PoolId`]): two `alpha` bots in two namespaces sharing one Postgres
//!   and one Redis never share users, keys or outboxes. A pool belongs to one namespace, so
//!   inside a pool's Redis keys a bot's bare name is unambiguous.

use std::fmt;

/// A Kubernetes object name as we accept it in ids: a DNS-1123 label (lower-case letters,
/// digits and '-', at most 63 characters), which in particular never holds '/' or ':', the
/// separators of our ids and keys.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not a valid Kubernetes name (lower-case letters, digits and '-', at most 63)")]
pub struct IdError {
    what: &'static str,
    value: String,
}

fn check(what: &'static str, value: &str) -> Result<(), IdError> {
    if is_dns_label(value) { Ok(()) } else { Err(IdError { what, value: value.to_string() }) }
}

/// A bot, fleet-wide: `<namespace>/<name>`. This is what SQL rows carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BotId {
    pub namespace: String,
    pub name: String,
}

impl BotId {
    pub fn new(namespace: &str, name: &str) -> Result<Self, IdError> {
        check("namespace", namespace)?;
        check("bot name", name)?;
        Ok(Self { namespace: namespace.to_string(), name: name.to_string() })
    }
}

impl fmt::Display for BotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A matching pool, fleet-wide: `<namespace>/<pool>`. Its rendering is the pool's hash tag
/// in Redis (every key of the pool lives under it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolId {
    pub namespace: String,
    pub name: String,
}

impl PoolId {
    pub fn new(namespace: &str, name: &str) -> Result<Self, IdError> {
        check("namespace", namespace)?;
        check("pool", name)?;
        Ok(Self { namespace: namespace.to_string(), name: name.to_string() })
    }
}

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_namespace() {
        assert_eq!(BotId::new("team-a", "alpha").unwrap().to_string(), "team-a/alpha");
        assert_eq!(PoolId::new("team-a", "eu-chat").unwrap().to_string(), "team-a/eu-chat");
        assert_ne!(BotId::new("team-a", "alpha").unwrap(), BotId::new("team-b", "alpha").unwrap());
    }

    #[test]
    fn names_that_could_forge_another_id_are_refused() {
        for bad in ["", "a/b", "a:b", "Alpha", "-a", "a-", &"x".repeat(64), "a b", "ä"] {
            assert!(BotId::new("ns", bad).is_err(), "{bad:?}");
            assert!(PoolId::new(bad, "pool").is_err(), "{bad:?}");
        }
    }
}
