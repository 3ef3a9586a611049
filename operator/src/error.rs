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
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "Conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "Forbidden",
            Error::Kube(_) => "KubeApi",
            Error::MissingNamespace => "MissingNamespace",
            Error::Serialize(_) => "Serialize",
            Error::Telegram(_) => "Telegram",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => "Finalizer",
            },
        }
    }
}
