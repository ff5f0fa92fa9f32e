//! HMAC-signed HTTP URLs for files in local storage, served by the server's
//! `GET /v1/files/{key}?expires=…&signature=…`.
//!
//! The signature is HMAC-SHA256 (RFC 2104) with `fluxo.download_secret` over
//! `"{key}\n{expires}"`, hex-encoded; `expires` is a Unix time in seconds.
//!
//! ```
//! use fluxo::storage::signed;
//! let url = signed::sign_url("https://x.example", b"s3cret", "2026/11/29/t/a b.csv", 2_000_000_000);
//! assert!(url.starts_with("https://x.example/v1/files/2026/11/29/t/a%20b.csv?expires=2000000000&signature="));
//! let sig = url.rsplit('=').next().unwrap();
//! assert!(signed::verify(b"s3cret", "2026/11/29/t/a b.csv", 2_000_000_000, sig, 1_900_000_000).is_ok());
//! ```

use sha2::{Digest, Sha256};

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The hex signature of `key` valid until `expires` (Unix seconds).
pub fn signature(secret: &[u8], key: &str, expires: u64) -> String {
    hex::encode(hmac_sha256(secret, format!("{key}\n{expires}").as_bytes()))
}

/// Percent-encodes a key for a URL path, keeping `/` between segments.
pub fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// `{base}/v1/files/{key}?expires={expires}&signature={hex}`.
pub fn sign_url(base: &str, secret: &[u8], key: &str, expires: u64) -> String {
    format!(
        "{}/v1/files/{}?expires={expires}&signature={}",
        base.trim_end_matches('/'),
        encode_path(key),
        signature(secret, key, expires)
    )
}

/// Why a download is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Expired,
    BadSignature,
}

/// Checks a signature in constant time, then the expiry against `now` (Unix seconds).
pub fn verify(
    secret: &[u8],
    key: &str,
    expires: u64,
    signature_hex: &str,
    now: u64,
) -> Result<(), Refusal> {
    let expected = signature(secret, key, expires);
    let given = signature_hex.as_bytes();
    let same = given.len() == expected.len()
        && given
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(Refusal::BadSignature);
    }
    if now > expires {
        return Err(Refusal::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn tampered_or_expired_urls_are_refused() {
        let sig = signature(b"k", "a/b.csv", 100);
        assert_eq!(verify(b"k", "a/b.csv", 100, &sig, 50), Ok(()));
        assert_eq!(
            verify(b"k", "a/c.csv", 100, &sig, 50),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(b"k", "a/b.csv", 101, &sig, 50),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(b"other", "a/b.csv", 100, &sig, 50),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(b"k", "a/b.csv", 100, &sig, 101),
            Err(Refusal::Expired)
        );
    }
}
