//! The GitHub App JWT's RS256 signature, made with ring through jsonwebtoken's
//! [`CryptoProvider`] hook (jsonwebtoken is built without its aws-lc-rs and RustCrypto
//! backends; ring is already there for TLS). RS256 only, the App JWT's algorithm: every other
//! algorithm is refused. Verifying is there for completeness (the tests' fake GitHub checks
//! the JWTs berth signs). ring's errors carry no detail (`Unspecified`), so neither do the
//! signature errors made from them.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents,
    UnparsedPublicKey,
};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes ring jsonwebtoken's provider for this process. Idempotent. Public for the tests' fake
/// GitHub, which verifies the JWTs berth signs.
pub fn install() {
    // Err only means it is installed already (this is the only provider berth has).
    let _ = PROVIDER.install_default();
}

/// The RSA key from an [`EncodingKey::from_rsa_pem`] key (PKCS#1 DER), checked once.
fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *algorithm != Algorithm::RS256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let pair = RsaKeyPair::from_der(key.as_bytes())
        .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?;
    Ok(Box::new(Rs256(pair)))
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *algorithm != Algorithm::RS256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(Rs256Public(key.kind().clone())))
}

struct Rs256(RsaKeyPair);

impl Signer<Vec<u8>> for Rs256 {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let mut sig = vec![0; self.0.public().modulus_len()];
        let rng = ring::rand::SystemRandom::new();
        self.0
            .sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig)
            .map_err(|_| signature::Error::new())?;
        Ok(sig)
    }
}

impl JwtSigner for Rs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

struct Rs256Public(DecodingKeyKind);

impl Verifier<Vec<u8>> for Rs256Public {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let alg = &RSA_PKCS1_2048_8192_SHA256;
        match &self.0 {
            DecodingKeyKind::SecretOrDer(der) => UnparsedPublicKey::new(alg, der).verify(msg, sig),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(alg, msg, sig)
            }
        }
        .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Rs256Public {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn openssl(args: &[&str]) -> std::process::Output {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A JWT signed here verifies with openssl (an independent RS256 implementation), and one
    /// signed with another key does not verify here.
    #[test]
    fn rs256_signatures_agree_with_openssl() {
        install();
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let (key, public, other) = (path("key.pem"), path("pub.pem"), path("other.pem"));
        openssl(&["genrsa", "-traditional", "-out", &key, "2048"]);
        openssl(&["rsa", "-in", &key, "-pubout", "-out", &public]);
        openssl(&["genrsa", "-traditional", "-out", &other, "2048"]);
        let pem = |p: &str| std::fs::read(p).unwrap();

        let claims = serde_json::json!({"iss": "42", "iat": 1, "exp": 4_000_000_000u64});
        let header = jsonwebtoken::Header::new(Algorithm::RS256);
        let signing_key = EncodingKey::from_rsa_pem(&pem(&key)).unwrap();
        let jwt = jsonwebtoken::encode(&header, &claims, &signing_key).unwrap();

        let (signed, sig) = jwt.rsplit_once('.').unwrap();
        std::fs::write(path("msg"), signed).unwrap();
        let sig = {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig)
                .unwrap()
        };
        std::fs::write(path("sig"), sig).unwrap();
        let out = openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            &public,
            "-signature",
            &path("sig"),
            &path("msg"),
        ]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");

        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.set_required_spec_claims(&["exp", "iss"]);
        let ok = DecodingKey::from_rsa_pem(&pem(&public)).unwrap();
        let decoded = jsonwebtoken::decode::<serde_json::Value>(&jwt, &ok, &v).unwrap();
        assert_eq!(decoded.claims["iss"], "42");
        let forged = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(&pem(&other)).unwrap(),
        )
        .unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&forged, &ok, &v).is_err());
        // Only RS256.
        let hs = jsonwebtoken::Header::new(Algorithm::HS256);
        assert!(jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(b"k")).is_err());
    }
}
