//! TLS for tests: certificates made with the `openssl` CLI (a CA, a server certificate for
//! `localhost` and 127.0.0.1, a client certificate), a rustls server configuration from them, and
//! a TLS front for the Docker Engine that, like a daemon started with `--tlsverify`, accepts
//! only clients with a certificate from the CA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{DockerHost, DockerSettings};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, UnixStream};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian's openssl package)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes into `dir`: `ca.pem`/`ca.key`, `server.pem`/`server.key` (for `localhost` and
/// 127.0.0.1) and `client.pem`/`client.key`, all signed by the CA and valid for two days.
pub fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=harness-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let ext = format!(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={usage}\nkeyUsage=critical,digitalSignature\n"
        );
        let (key, csr, pem, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(dir.join(&extfile), ext).expect("write the extension file");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ],
        );
    }
}

/// A server configuration with `server.pem`/`server.key` from `dir`; with `client_auth`, only
/// clients presenting a certificate signed by `ca.pem` are accepted.
pub fn server_config(dir: &Path, client_auth: bool) -> rustls::ServerConfig {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .expect("read server.pem")
        .collect::<Result<_, _>>()
        .expect("parse server.pem");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("read server.key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = if client_auth {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("read ca.pem") {
            roots.add(cert.expect("parse ca.pem")).expect("add the CA");
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    builder
        .with_single_cert(chain, key)
        .expect("server certificate and key")
}

/// The Docker Engine behind verified TLS on 127.0.0.1, forwarding each connection to the real
/// socket. [`cert_path`](Self::cert_path) holds `ca.pem`, `cert.pem` and `key.pem` as the
/// Docker CLI expects them in `DOCKER_CERT_PATH`. Stopped when dropped.
#[derive(Debug)]
pub struct DockerTlsFront {
    port: u16,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DockerTlsFront {
    /// Makes certificates and starts listening on a free 127.0.0.1 port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for certificates");
        make_certificates(dir.path());
        for (from, to) in [("client.pem", "cert.pem"), ("client.key", "key.pem")] {
            std::fs::copy(dir.path().join(from), dir.path().join(to)).expect("copy client files");
        }
        let config = Arc::new(server_config(dir.path(), true));
        let upstream = match DockerSettings::from_value(
            std::env::var("DOCKER_HOST").ok().as_deref(),
            &["unix:///var/run/docker.sock"],
        )
        .expect("DOCKER_HOST is valid")
        .host
        {
            DockerHost::Unix(path) => path,
            DockerHost::Tcp(addr) => panic!("the TLS front needs a unix Docker socket, not {addr}"),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("docker-tls-front".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime for the TLS front");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = stopped => {}
                        () = serve(listener, config, upstream) => {}
                    }
                });
            })
            .expect("spawn the TLS front thread");
        Self {
            port,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `tcp://127.0.0.1:<port>`, for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The directory for `DOCKER_CERT_PATH`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for DockerTlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: TcpListener, config: Arc<rustls::ServerConfig>, upstream: PathBuf) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
        tokio::spawn(async move {
            // A client without a valid certificate fails the handshake and gets nothing.
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Ok(mut docker) = UnixStream::connect(&upstream).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut docker).await;
        });
    }
}
