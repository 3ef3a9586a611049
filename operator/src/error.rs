//! What can go wrong in a reconcile, as variants the error policy can act on.

use crate::telegram::TelegramError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the object has no namespace")]
    MissingNamespace,
    #[error("cannot serialize the resolved configuration: {0}")]
    Serialize(String),
    #[error("Telegram: {0}")]
    Telegram(TelegramError),
    /// No key could be generated (the OS random source failed): retried with backoff.
    #[error("cannot generate a payload key: {0}")]
    RandomSource(String),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Not a failure: a deleted bot's pods are taking its users out of the pool, and the
    /// finalizer waits this much longer (kube's finalizer helper keeps it only on an error).
    #[error("the bot is retiring; its pods drain for {0:?} more")]
    Draining(std::time::Duration),
}

impl Error {
    /// How long a retiring bot still drains, when that is what this "error" is.
    pub fn draining(&self) -> Option<std::time::Duration> {
        match self {
            Error::Draining(wait) => Some(*wait),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::CleanupFailed(e) => e.draining(),
                _ => None,
            },
            _ => None,
        }
    }

    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "Conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "Forbidden",
            Error::Kube(_) => "KubeApi",
            Error::MissingNamespace => "MissingNamespace",
            Error::Serialize(_) => "Serialize",
            Error::Telegram(_) => "Telegram",
            Error::RandomSource(_) => "RandomSource",
            Error::Draining(_) => "Draining",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => "Finalizer",
            },
        }
    }
}
