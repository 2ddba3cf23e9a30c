//! Secrets at rest: the operator's keys and sealing values with them.
//!
//! A secret's value is sealed with XChaCha20-Poly1305 (the `chacha20poly1305` crate, from
//! RustCrypto) under the operator's 256-bit key, with a random 192-bit nonce per value,
//! and bound to where it belongs (the app and name, or the release) as associated data,
//! so a sealed value copied to another row does not open. The stored form is
//! `v1:<key id>:<hex(nonce ‖ ciphertext)>`; the key id is a hash of the key, so values
//! still under an old key can be found and sealed again ([`crate::api::secrets::reseal_all`]).
//!
//! Values leave the control plane only in the serving feed, which only runtimes (and
//! admins) read. No API answer, log line or trace carries one.

pub mod keys;

pub use keys::{KeyError, SecretKeys};

/// What a sealed value is bound to (the AEAD's associated data).
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    /// An app's current secret `name`.
    Secret {
        /// App id.
        app_id: &'a str,
        /// Secret name.
        name: &'a str,
    },
    /// The secrets a release was made with (one JSON object).
    Release {
        /// Release id.
        release_id: &'a str,
    },
}

impl Binding<'_> {
    /// The associated data.
    pub fn aad(&self) -> Vec<u8> {
        match self {
            Binding::Secret { app_id, name } => {
                format!("platform secret\0{app_id}\0{name}").into_bytes()
            }
            Binding::Release { release_id } => {
                format!("platform release secrets\0{release_id}").into_bytes()
            }
        }
    }
}

/// Checks a secret's name: an environment variable name (letters, digits and `_`, not
/// starting with a digit), at most 256 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "secret name {name:?} is not valid: use letters, digits and '_', not starting with a digit (it becomes an environment variable)"
        ))
    }
}

/// Largest secret value accepted.
pub const MAX_VALUE: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_env_names() {
        assert!(check_name("API_KEY").is_ok());
        assert!(check_name("_x1").is_ok());
        for bad in ["", "1ABC", "A-B", "A B", "A=B", "Ä"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
