//! Websockets to the server (interactive jobs' terminals, docs/interactive.md), with what the
//! HTTP calls have: the server in use and its token, TLS with the centre's CA (`--ca-file`) or
//! the public roots, a move to the next server on a connection error and to the leader when a
//! standby names it.
//!
//! reqwest does not upgrade connections, so this opens its own: TCP, then rustls (offering
//! HTTP/1.1 only, the version websockets upgrade from), then the websocket handshake of
//! tokio-tungstenite.

use crate::{CONNECT_TIMEOUT, Client, Error, LEADER_HEADER, MAX_HOPS, Result, tls_hint};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// What a websocket runs over: a TCP stream, or TLS over one.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open websocket.
pub type Socket = WebSocketStream<Box<dyn Io>>;

/// Largest message either way: a terminal frame of 64 KiB and its kind byte, with room.
const MAX_MESSAGE: usize = 128 * 1024;

/// The TLS settings of websockets: the CA file's certificates, else the public roots.
pub(crate) fn tls_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| Error::Config {
                    field: "--ca-file",
                    message: format!("not a PEM certificate: {e}"),
                })?;
                roots.add(cert).map_err(|e| Error::Config {
                    field: "--ca-file",
                    message: format!("cannot trust the certificate: {e}"),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config {
            field: "--server",
            message: format!("cannot set up TLS: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

impl Client {
    /// Opens a websocket to `path` on the server in use, with the token. A connection error
    /// moves the client to the next server given (and is returned); an answer naming the
    /// leader moves it there and tries again. An error answer is [`Error::Status`].
    pub async fn websocket(&self, path: &str) -> Result<Socket> {
        let mut hops = 0;
        loop {
            let base = self.inner.current.lock().expect("not poisoned").clone();
            let server = base.as_str().trim_end_matches('/').to_string();
            match self.websocket_at(&base, &server, path).await {
                Err(Led {
                    leader: Some(l), ..
                }) if hops < MAX_HOPS => {
                    self.follow(&base, &l);
                    hops += 1;
                }
                Err(Led { error, .. }) => return Err(error),
                Ok(s) => return Ok(s),
            }
        }
    }

    async fn websocket_at(
        &self,
        base: &reqwest::Url,
        server: &str,
        path: &str,
    ) -> std::result::Result<Socket, Led> {
        let unreachable = |message: String| {
            self.next_server(base);
            Led {
                error: Error::Unreachable {
                    server: server.to_string(),
                    message,
                },
                leader: None,
            }
        };
        let url = base.join(path).map_err(|e| Led {
            error: Error::Config {
                field: "path",
                message: format!("`{path}`: {e}"),
            },
            leader: None,
        })?;
        let tls = url.scheme() == "https";
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let mut ws_url = url.clone();
        // Both are valid schemes of a URL with a host, so neither can fail.
        let _ = ws_url.set_scheme(if tls { "wss" } else { "ws" });
        let mut req = ws_url.as_str().into_client_request().map_err(|e| Led {
            error: Error::Config {
                field: "--server",
                message: format!("cannot make a websocket request for {ws_url}: {e}"),
            },
            leader: None,
        })?;
        if let Some(auth) = &self.inner.auth
            && let Ok(v) = auth.parse()
        {
            req.headers_mut()
                .insert(tungstenite::http::header::AUTHORIZATION, v);
        }
        let connect = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port));
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable("connection timed out".into())),
        };
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if tls {
            let cfg = self.inner.ws_tls.clone().ok_or_else(|| Led {
                error: Error::Config {
                    field: "--ca-file",
                    message: "TLS is not set up for websockets".into(),
                },
                leader: None,
            })?;
            let name =
                rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                    .map_err(|e| Led {
                        error: Error::Config {
                            field: "--server",
                            message: format!("`{host}` is not a server name: {e}"),
                        },
                        leader: None,
                    })?;
            let hand = tokio_rustls::TlsConnector::from(cfg).connect(name, tcp);
            match tokio::time::timeout(CONNECT_TIMEOUT, hand).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    return Err(Led {
                        error: Error::Tls {
                            server: server.to_string(),
                            message: tls_hint(&format!("{e:?}: {e}")),
                        },
                        leader: None,
                    });
                }
                Err(_) => return Err(unreachable("TLS handshake timed out".into())),
            }
        } else {
            Box::new(tcp)
        };
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let hand = tokio_tungstenite::client_async_with_config(req, io, Some(config));
        match tokio::time::timeout(crate::REQUEST_TIMEOUT, hand).await {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(tungstenite::Error::Http(answer))) => {
                let leader = answer
                    .headers()
                    .get(LEADER_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = answer
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).chars().take(2000).collect())
                    .unwrap_or_default();
                Err(Led {
                    error: Error::Status {
                        server: server.to_string(),
                        status: answer.status().as_u16(),
                        body,
                    },
                    leader,
                })
            }
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable("websocket handshake timed out".into())),
        }
    }
}

/// A failed websocket open, and the leader a standby named in its answer.
struct Led {
    error: Error,
    leader: Option<String>,
}
