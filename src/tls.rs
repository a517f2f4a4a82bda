//! The process-wide TLS crypto provider: ring, for every rustls client (the GitHub adapter's
//! reqwest client, gix's reqwest transport for `https://` remotes).
//!
//! reqwest is built with `rustls-no-provider` so that aws-lc-rs (a long C build) is not
//! compiled; a reqwest client built before a provider is installed would panic, so both
//! adapters call [`install_crypto_provider`] before they build one.

/// Installs ring as rustls' default provider. Idempotent and cheap.
pub fn install_crypto_provider() {
    // Err only means a provider is installed already: ring, by an earlier call (it is the only
    // provider compiled in).
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_the_process_provider() {
        install_crypto_provider();
        install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("installed");
        let ring = rustls::crypto::ring::default_provider();
        let suites = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(suites(provider), suites(&ring));
        // What reqwest does when it builds a client (without a provider it would panic).
        rustls::ClientConfig::builder();
    }
}
