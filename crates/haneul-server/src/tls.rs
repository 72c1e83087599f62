//! TLS for the API: the certificate and key files an operator names, a resolver that swaps them
//! on reload without touching the listener, the rustls configuration (ALPN h2 then http/1.1),
//! and the local certificate authority `haneul up --tls` makes for a one-machine centre.

use crate::ServerError;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The PEM files of the server's certificate chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One provider for the whole process, named rather than taken from the process default, so a
/// second TLS crate in the build that brings another provider cannot make the choice ambiguous.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(path: &Path, what: impl std::fmt::Display) -> ServerError {
    ServerError::Tls {
        path: path.to_path_buf(),
        reason: what.to_string(),
    }
}

/// Reads and checks the pair: a chain with at least one certificate, a key that parses and
/// matches the leaf.
fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, ServerError> {
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| tls_err(&files.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&files.cert, e))?;
    if chain.is_empty() {
        return Err(tls_err(&files.cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| tls_err(&files.key, e))?;
    let ck = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        tls_err(
            &files.key,
            format!(
                "the key does not fit the certificate {}: {e}",
                files.cert.display()
            ),
        )
    })?;
    Ok(Arc::new(ck))
}

/// Hands out the current certificate; [`CertStore::reload`] replaces it for the handshakes
/// that follow, while connections already open keep theirs.
#[derive(Debug)]
pub struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Loads the files once; a bad pair is an error at start, not at the first handshake.
    pub fn open(files: TlsFiles) -> Result<Arc<CertStore>, ServerError> {
        let provider = provider();
        let current = RwLock::new(load(&files, &provider)?);
        Ok(Arc::new(CertStore {
            files,
            provider,
            current,
        }))
    }

    /// Reads the files again. On any error the certificate in use stays, so a rotation that
    /// wrote half a file does not take the API down.
    pub fn reload(&self) -> Result<(), ServerError> {
        let fresh = load(&self.files, &self.provider)?;
        if let Ok(mut cur) = self.current.write() {
            *cur = fresh;
        }
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The rustls configuration: this store resolves the certificate; HTTP/2 is offered
    /// first, HTTP/1.1 for clients without it.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, ServerError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(&self.files.cert, e))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

/// The files of the local authority under `DIR/tls/`.
#[derive(Debug, Clone)]
pub struct LocalCa {
    /// The authority's certificate: what clients trust (`--ca-file`).
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// The server's certificate and key, signed by the authority.
    pub server: TlsFiles,
    /// Whether this call made them (false: they were already there and are reused).
    pub created: bool,
}

/// Makes (or, when all four files are present, reuses) a local certificate authority and a
/// server certificate for `localhost`, `127.0.0.1` and `::1` under `dir`. Keys are written
/// 0600. Reuse keeps clients that already trust `ca.pem` working across restarts; the
/// authority's key stays so that a later version can re-issue the server certificate.
pub fn local_ca(dir: &Path) -> Result<LocalCa, ServerError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let out = LocalCa {
        ca_cert: dir.join("ca.pem"),
        ca_key: dir.join("ca.key"),
        server: TlsFiles {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        },
        created: false,
    };
    if [&out.ca_cert, &out.ca_key, &out.server.cert, &out.server.key]
        .iter()
        .all(|p| p.exists())
    {
        return Ok(out);
    }
    std::fs::create_dir_all(dir).map_err(|source| ServerError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let gen_err = |e: rcgen::Error| tls_err(dir, e);
    let year = 1970
        + (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            / 31_556_952) as i32;
    // From the start of last year, so a clock a little behind does not refuse a fresh file.
    let not_before = rcgen::date_time_ymd(year - 1, 1, 1);

    let ca_key = KeyPair::generate().map_err(gen_err)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "haneul local authority");
    ca.distinguished_name
        .push(DnType::OrganizationName, "haneul up");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    let ca_cert = ca.self_signed(&ca_key).map_err(gen_err)?;
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().map_err(gen_err)?;
    let mut leaf = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(gen_err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    leaf.not_after = rcgen::date_time_ymd(year + 5, 1, 1);
    let leaf_cert = leaf.signed_by(&server_key, &issuer).map_err(gen_err)?;

    // Keys first and the CA certificate last: a crash in between leaves a set that is
    // incomplete, so the next start makes a whole new one instead of mixing two.
    write_file(&out.ca_key, issuer.key().serialize_pem().as_bytes(), true)?;
    write_file(&out.server.key, server_key.serialize_pem().as_bytes(), true)?;
    write_file(&out.server.cert, leaf_cert.pem().as_bytes(), false)?;
    write_file(&out.ca_cert, ca_cert.pem().as_bytes(), false)?;
    Ok(LocalCa {
        created: true,
        ..out
    })
}

fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), ServerError> {
    use std::io::Write;
    let io = |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(if secret { 0o600 } else { 0o644 });
        // A key file left from an earlier, interrupted run may have other bits: fix them
        // before the secret goes in.
        if secret && path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}
