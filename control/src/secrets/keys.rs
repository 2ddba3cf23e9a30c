//! The operator's secret keys: one current key that seals, and old keys that still open
//! values sealed before a rotation.

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use super::Binding;

const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;

/// Problems with keys or sealed values. None of them carries a value.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read or written.
    #[error("secrets key file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A sealed value names a key the control plane does not have.
    #[error(
        "a secret is sealed with key {0}, which is not loaded: start with that key as --secrets-old-key-file (see the README, \"Secrets\")"
    )]
    UnknownKey(String),
    /// A sealed value did not open (damaged, or moved to another row).
    #[error("a sealed secret did not open (damaged, or not sealed for this place)")]
    Open,
    /// Sealing failed.
    #[error("cannot seal a secret")]
    Seal,
}

/// One key and its id.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"platform secrets key id\0");
        h.update(bytes);
        Key {
            id: hex::encode(&h.finalize()[..8]),
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }
}

/// The current key and any old ones.
#[derive(Clone)]
pub struct SecretKeys {
    current: Key,
    old: Vec<Key>,
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeys")
            .field("current", &self.current.id)
            .field("old", &self.old.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

impl SecretKeys {
    /// Keys from raw bytes (the first seals).
    pub fn from_bytes(current: &[u8; 32], old: &[[u8; 32]]) -> Self {
        SecretKeys {
            current: Key::new(current),
            old: old.iter().map(Key::new).collect(),
        }
    }

    /// A fresh random key (tests, and `platform up`'s first start).
    pub fn random_bytes() -> [u8; 32] {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        k
    }

    /// Reads a key file: 64 hex digits (32 bytes), surrounding whitespace ignored.
    pub fn read_key_file(path: &Path) -> Result<[u8; 32], KeyError> {
        let err = |message: String| KeyError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let bytes = hex::decode(text.trim()).map_err(|_| {
            err("not a key: expected 64 hex digits (make one with `openssl rand -hex 32`)".into())
        })?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| err("not a key: expected 64 hex digits (32 bytes)".into()))
    }

    /// Reads the key file at `path`, first creating it (mode 0600) with a random key when
    /// it does not exist.
    pub fn read_or_create_key_file(path: &Path) -> Result<[u8; 32], KeyError> {
        if !path.exists() {
            let key = Self::random_bytes();
            crate::write_secret_file(path, &hex::encode(key)).map_err(|e| KeyError::File {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
        Self::read_key_file(path)
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plain` for `at` under the current key.
    pub fn seal(&self, plain: &[u8], at: Binding<'_>) -> Result<String, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = at.aad();
        let ct = self
            .current
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| KeyError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!(
            "{VERSION}:{}:{}",
            self.current.id,
            hex::encode(out)
        ))
    }

    /// Opens a value sealed for `at` by [`SecretKeys::seal`], under any loaded key.
    pub fn open(&self, sealed: &str, at: Binding<'_>) -> Result<Vec<u8>, KeyError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some(VERSION), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::Open);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
            .ok_or_else(|| KeyError::UnknownKey(id.to_string()))?;
        let data = hex::decode(data).map_err(|_| KeyError::Open)?;
        if data.len() < NONCE_LEN {
            return Err(KeyError::Open);
        }
        let (nonce, ct) = data.split_at(NONCE_LEN);
        let aad = at.aad();
        key.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| KeyError::Open)
    }

    /// The key id a sealed value names.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        sealed.split(':').nth(1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const AT: Binding<'static> = Binding::Secret {
        app_id: "app1",
        name: "API_KEY",
    };

    #[test]
    fn seals_and_opens_only_in_place() {
        let keys = SecretKeys::from_bytes(&SecretKeys::random_bytes(), &[]);
        let sealed = keys.seal(b"hunter2", AT).unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, keys.seal(b"hunter2", AT).unwrap(), "nonces differ");
        assert_eq!(keys.open(&sealed, AT).unwrap(), b"hunter2");
        let elsewhere = Binding::Secret {
            app_id: "app2",
            name: "API_KEY",
        };
        assert!(matches!(keys.open(&sealed, elsewhere), Err(KeyError::Open)));
        let mut damaged = sealed.clone();
        damaged.pop();
        damaged.push('0');
        assert!(keys.open(&damaged, AT).is_err());
    }

    #[test]
    fn old_keys_open_after_a_rotation() {
        let (k1, k2) = (SecretKeys::random_bytes(), SecretKeys::random_bytes());
        let before = SecretKeys::from_bytes(&k1, &[]);
        let sealed = before.seal(b"v", AT).unwrap();
        let after = SecretKeys::from_bytes(&k2, &[k1]);
        assert_eq!(after.open(&sealed, AT).unwrap(), b"v");
        assert_ne!(after.current_id(), before.current_id());
        assert_eq!(SecretKeys::key_id_of(&sealed), Some(before.current_id()));
        let without_old = SecretKeys::from_bytes(&k2, &[]);
        assert!(matches!(
            without_old.open(&sealed, AT),
            Err(KeyError::UnknownKey(_))
        ));
    }

    #[test]
    fn key_files_are_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets-key");
        let k = SecretKeys::read_or_create_key_file(&path).unwrap();
        assert_eq!(SecretKeys::read_or_create_key_file(&path).unwrap(), k);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "short").unwrap();
        assert!(SecretKeys::read_key_file(&path).is_err());
    }
}
