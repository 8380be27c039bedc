//! The TLS transport's client configuration: system roots (unless disabled), extra CA files and
//! an optional client certificate, from the `LOGSPOUT_TLS_*` variables.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Why the TLS client configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("error with TLSConfig: cannot read CA certificates from {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("error with TLSConfig: cannot load client certificate {cert} / key {key}: {reason}")]
    ClientCert {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("FATAL: TLS CA trust store is empty! Can not trust any TLS endpoints: tls://{0}")]
    EmptyTrustStore(String),
}

/// The `LOGSPOUT_TLS_*` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS=true`.
    pub disable_system_roots: bool,
    /// `LOGSPOUT_TLS_CA_CERTS`: PEM files.
    pub ca_certs: Vec<PathBuf>,
    /// `LOGSPOUT_TLS_CLIENT_CERT` and `LOGSPOUT_TLS_CLIENT_KEY`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsSettings {
    /// Reads the CA files and the client certificate and key, as the original does at start-up
    /// whether or not a route uses TLS (a bad file is fatal there too).
    pub fn check_files(&self) -> Result<(), TlsError> {
        self.add_ca_files(&mut RootCertStore::empty())?;
        self.client_cert()?;
        Ok(())
    }

    /// A connector for a route to `address` (named in the empty-store error).
    pub fn connector(&self, address: &str) -> Result<TlsConnector, TlsError> {
        let mut roots = RootCertStore::empty();
        if !self.disable_system_roots {
            // Unreadable system certificates are not fatal: the CA files may be enough.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
        self.add_ca_files(&mut roots)?;
        if roots.is_empty() {
            return Err(TlsError::EmptyTrustStore(address.to_owned()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::EmptyTrustStore(format!("{address} ({e})")))?
            .with_root_certificates(roots);
        let config = match self.client_cert()? {
            None => builder.with_no_client_auth(),
            Some((chain, key, client_error)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| client_error(e.to_string()))?,
        };
        Ok(TlsConnector::from(Arc::new(config)))
    }

    fn add_ca_files(&self, roots: &mut RootCertStore) -> Result<(), TlsError> {
        for path in &self.ca_certs {
            let ca_error = |reason: String| TlsError::CaFile {
                path: path.clone(),
                reason,
            };
            for cert in read_certificates(path).map_err(ca_error)? {
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The client certificate chain and key, if configured, and how to report a problem with
    /// them.
    fn client_cert(&self) -> Result<Option<ClientCert<'_>>, TlsError> {
        let Some((cert, key)) = &self.client_cert else {
            return Ok(None);
        };
        let client_error = move |reason: String| TlsError::ClientCert {
            cert: cert.clone(),
            key: key.clone(),
            reason,
        };
        let chain = read_certificates(cert).map_err(client_error)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| client_error(e.to_string()))?;
        Ok(Some((chain, key, Box::new(client_error))))
    }
}

/// The certificates of a PEM file (at least one).
fn read_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs)
}

/// A client certificate chain, its key, and the error for a problem with them.
type ClientCert<'a> = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    Box<dyn Fn(String) -> TlsError + 'a>,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_trust_store_is_refused_with_the_original_message() {
        let settings = TlsSettings {
            disable_system_roots: true,
            ..TlsSettings::default()
        };
        let err = settings.connector("logs:6514").err().unwrap().to_string();
        assert_eq!(
            err,
            "FATAL: TLS CA trust store is empty! Can not trust any TLS endpoints: tls://logs:6514"
        );
    }

    #[test]
    fn an_unreadable_ca_file_is_an_error() {
        let settings = TlsSettings {
            ca_certs: vec!["/nonexistent/ca.pem".into()],
            ..TlsSettings::default()
        };
        let err = settings.connector("logs:6514").err().unwrap().to_string();
        assert!(
            err.starts_with(
                "error with TLSConfig: cannot read CA certificates from /nonexistent/ca.pem"
            ),
            "{err}"
        );
    }
}
