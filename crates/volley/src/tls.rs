//! TLS on rustls: [`ServerTlsConfig`] for servers, [`ClientTlsConfig`] for channels, and the
//! PEM-loaded [`Certificate`] and [`Identity`] they take. Both sides negotiate ALPN `h2` and
//! refuse a peer that does not (`doc/PROTOCOL-HTTP2.md` requires it).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::Error;

const ALPN_H2: &[u8] = b"h2";

/// One or more PEM-encoded X.509 certificates (a CA, or a chain).
#[derive(Clone, Debug)]
pub struct Certificate {
    pem: Vec<u8>,
}

impl Certificate {
    /// Certificates from PEM text (`-----BEGIN CERTIFICATE-----` blocks).
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Certificate {
        Certificate {
            pem: pem.as_ref().to_vec(),
        }
    }

    fn parse(&self) -> Result<Vec<CertificateDer<'static>>, Error> {
        let certs = rustls_pemfile::certs(&mut self.pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::new(format!("invalid PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(Error::new("no certificate found in the PEM text"));
        }
        Ok(certs)
    }
}

/// A certificate chain and its private key (PEM): a server's identity, or a client's for
/// mutual TLS.
#[derive(Clone)]
pub struct Identity {
    cert: Certificate,
    key: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// An identity from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1).
    pub fn from_pem(cert: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Identity {
        Identity {
            cert: Certificate::from_pem(cert),
            key: key.as_ref().to_vec(),
        }
    }

    fn parse(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
        let chain = self.cert.parse()?;
        let key = rustls_pemfile::private_key(&mut self.key.as_slice())
            .map_err(|e| Error::new(format!("invalid PEM private key: {e}")))?
            .ok_or_else(|| Error::new("no private key found in the PEM text"))?;
        Ok((chain, key))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(certs: &[Certificate]) -> Result<rustls::RootCertStore, Error> {
    let mut store = rustls::RootCertStore::empty();
    for cert in certs {
        for der in cert.parse()? {
            store
                .add(der)
                .map_err(|e| Error::new(format!("unusable CA certificate: {e}")))?;
        }
    }
    Ok(store)
}

/// TLS for a server: its identity, and optionally the CA that client certificates must chain
/// to (mutual TLS).
#[derive(Clone, Debug, Default)]
pub struct ServerTlsConfig {
    identity: Option<Identity>,
    client_ca: Option<Certificate>,
    client_auth_optional: bool,
}

impl ServerTlsConfig {
    /// An empty configuration; an identity is required.
    pub fn new() -> ServerTlsConfig {
        ServerTlsConfig::default()
    }

    /// The server's certificate chain and key. Required.
    #[must_use]
    pub fn identity(mut self, identity: Identity) -> ServerTlsConfig {
        self.identity = Some(identity);
        self
    }

    /// Requires clients to present a certificate signed by `ca` (mutual TLS). Default: client
    /// certificates are not asked for.
    #[must_use]
    pub fn client_ca_root(mut self, ca: Certificate) -> ServerTlsConfig {
        self.client_ca = Some(ca);
        self
    }

    /// With [`ServerTlsConfig::client_ca_root`], also accepts clients that present no
    /// certificate (those that do must still chain to the CA). Default: false.
    #[must_use]
    pub fn client_auth_optional(mut self, optional: bool) -> ServerTlsConfig {
        self.client_auth_optional = optional;
        self
    }

    pub(crate) fn build(&self) -> Result<tokio_rustls::TlsAcceptor, Error> {
        let identity = self
            .identity
            .as_ref()
            .ok_or_else(|| Error::new("ServerTlsConfig needs an identity"))?;
        let (chain, key) = identity.parse()?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::new(format!("TLS: {e}")))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(std::slice::from_ref(ca))?),
                    provider(),
                );
                let verifier = if self.client_auth_optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| Error::new(format!("TLS client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| Error::new(format!("TLS identity: {e}")))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// TLS for a channel: which CAs to trust (the system's by default), the name to verify the
/// server's certificate against, and optionally a client identity (mutual TLS).
#[derive(Clone, Debug, Default)]
pub struct ClientTlsConfig {
    ca: Vec<Certificate>,
    native_roots: bool,
    domain_name: Option<String>,
    identity: Option<Identity>,
    accept_invalid_certs: bool,
}

impl ClientTlsConfig {
    /// Trusts the system's CA certificates unless [`ClientTlsConfig::ca_certificate`] is set,
    /// and verifies the server against the target's host name.
    pub fn new() -> ClientTlsConfig {
        ClientTlsConfig::default()
    }

    /// Trusts `ca` (may be called several times). Default: the system roots, which are then
    /// no longer used unless [`ClientTlsConfig::with_native_roots`] is also set.
    #[must_use]
    pub fn ca_certificate(mut self, ca: Certificate) -> ClientTlsConfig {
        self.ca.push(ca);
        self
    }

    /// Also trusts the system's CA certificates when custom CAs are set. Default: the system
    /// roots are used only when no CA is given.
    #[must_use]
    pub fn with_native_roots(mut self) -> ClientTlsConfig {
        self.native_roots = true;
        self
    }

    /// The name to send (SNI) and to verify the server's certificate against, instead of the
    /// target's host (gRPC's `server_host_override`). Default: the target's host.
    #[must_use]
    pub fn domain_name(mut self, name: impl Into<String>) -> ClientTlsConfig {
        self.domain_name = Some(name.into());
        self
    }

    /// The client's certificate and key, for servers that require mutual TLS. Default: none.
    #[must_use]
    pub fn identity(mut self, identity: Identity) -> ClientTlsConfig {
        self.identity = Some(identity);
        self
    }

    /// **Dangerous**: accepts any server certificate, trusted or not, for any name (the
    /// handshake's signatures are still checked, so the connection is encrypted, but to a
    /// server nobody vouched for: anyone in the path can pose as it). For tools and tests
    /// against servers with self-signed certificates (`volley --insecure`), never for
    /// production traffic. Default: false (certificates are verified).
    #[must_use]
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> ClientTlsConfig {
        self.accept_invalid_certs = accept;
        self
    }

    pub(crate) fn domain_override(&self) -> Option<&str> {
        self.domain_name.as_deref()
    }

    pub(crate) fn build(&self) -> Result<tokio_rustls::TlsConnector, Error> {
        if self.accept_invalid_certs {
            let builder = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::new(format!("TLS: {e}")))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())));
            return self.finish(builder);
        }
        let mut store = roots(&self.ca)?;
        if self.ca.is_empty() || self.native_roots {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "skipping a system CA certificate");
            }
            for cert in found.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(Error::new(
                    "no CA certificates: none given and none in the system",
                ));
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::new(format!("TLS: {e}")))?
            .with_root_certificates(store);
        self.finish(builder)
    }

    /// The configuration's client identity and ALPN, on a builder whose verification is set.
    fn finish(
        &self,
        builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    ) -> Result<tokio_rustls::TlsConnector, Error> {
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                let (chain, key) = identity.parse()?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| Error::new(format!("TLS client identity: {e}")))?
            }
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

/// A certificate verifier that accepts every certificate
/// ([`ClientTlsConfig::danger_accept_invalid_certs`]); handshake signatures are still
/// verified with the provider's algorithms.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A channel's TLS: the connector and the server name to verify.
#[derive(Clone)]
pub(crate) struct ClientTls {
    pub(crate) connector: tokio_rustls::TlsConnector,
    pub(crate) server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    pub(crate) fn new(config: &ClientTlsConfig, default_host: &str) -> Result<ClientTls, Error> {
        let name = config.domain_override().unwrap_or(default_host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| Error::new(format!("invalid TLS server name {name:?}: {e}")))?;
        Ok(ClientTls {
            connector: config.build()?,
            server_name,
        })
    }

    /// The TLS handshake over `io`; fails unless the server selected ALPN `h2`.
    pub(crate) async fn connect<IO>(
        &self,
        io: IO,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let tls = self.connector.connect(self.server_name.clone(), io).await?;
        if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
            return Err(std::io::Error::other(
                "the server did not negotiate ALPN h2",
            ));
        }
        Ok(tls)
    }
}

/// The server side of a TLS handshake; fails unless the client negotiated ALPN `h2`.
pub(crate) async fn accept<IO>(
    acceptor: &tokio_rustls::TlsAcceptor,
    io: IO,
) -> std::io::Result<tokio_rustls::server::TlsStream<IO>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let tls = acceptor.accept(io).await?;
    if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
        return Err(std::io::Error::other(
            "the client did not negotiate ALPN h2",
        ));
    }
    Ok(tls)
}
