//! An HTTPS front for webhook-mode bots, as an ingress controller is one: TLS with the test
//! control plane's serving certificate (127.0.0.1, signed by its CA, which the fake Telegram is
//! told to trust), and `POST /telegram/<bot>` passed to a ready pod of the bot's Service, found
//! through its EndpointSlices (round robin). Used by `tests/kubelet.rs`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams};
use tokio_rustls::rustls;

pub struct HttpsFront {
    /// `https://127.0.0.1:<port>`: a bot's `ingress.publicUrl`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Route {
    client: Client,
    namespace: String,
    http: reqwest::Client,
    next: AtomicUsize,
}

impl HttpsFront {
    /// Serves on a free port of 127.0.0.1 with this certificate and key (PEM), for the bots of
    /// `namespace`.
    pub async fn start(cert: &Path, key: &Path, client: Client, namespace: &str) -> HttpsFront {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert).expect("certificate file").collect::<Result<_, _>>().expect("certificate");
        let key = PrivateKeyDer::from_pem_file(key).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("serving certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the front");
        let port = listener.local_addr().expect("address").port();
        let route = Arc::new(Route {
            client,
            namespace: namespace.to_string(),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client"),
            next: AtomicUsize::new(0),
        });
        let app = axum::Router::new().route("/telegram/{bot}", axum::routing::post(pass)).with_state(route);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let io = hyper_util::rt::TokioIo::new(tls);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        HttpsFront { url: format!("https://127.0.0.1:{port}"), task }
    }
}

/// The ready addresses (`ip:port`) of the Service `<bot>-runtime`.
async fn ready_endpoints(route: &Route, bot: &str) -> Vec<String> {
    let slices = Api::<EndpointSlice>::namespaced(route.client.clone(), &route.namespace);
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={bot}-runtime"));
    let Ok(list) = slices.list(&params).await else { return Vec::new() };
    let mut targets = Vec::new();
    for slice in &list.items {
        let port = slice.ports.iter().flatten().find(|p| p.name.as_deref() == Some("http")).and_then(|p| p.port).unwrap_or(8080);
        for endpoint in slice.endpoints.iter().flatten() {
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true) {
                targets.extend(endpoint.addresses.iter().map(|a| format!("{a}:{port}")));
            }
        }
    }
    targets.sort();
    targets
}

async fn pass(State(route): State<Arc<Route>>, UrlPath(bot): UrlPath<String>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let targets = ready_endpoints(&route, &bot).await;
    if targets.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no ready endpoint").into_response();
    }
    let target = &targets[route.next.fetch_add(1, Ordering::Relaxed) % targets.len()];
    let mut request = route.http.post(format!("http://{target}{}", uri.path())).body(body);
    for name in ["content-type", "x-telegram-bot-api-secret-token"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, answer.bytes().await.unwrap_or_default()).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
