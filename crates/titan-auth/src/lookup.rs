//! Where a worker, a CLI command or another client finds its key, first match wins:
//!
//! 1. `--access-file PATH` (the command's flag),
//! 2. `TITAN_KEY=ROLE:HEX` (one key, e.g. handed to a child process),
//! 3. `TITAN_ACCESS_FILE=PATH`,
//! 4. `titan_data/access` in the working directory: where a master started there with its
//!    default data directory writes its file, so the README's quick start needs no extra step.
//!
//! From an access file a worker takes the worker key; a client takes the client key, or the
//! read-only key when the file holds only that.

use std::path::{Path, PathBuf};

use super::handshake::ProofKey;
use super::{AccessFile, AuthError, Role, Secret, ACCESS_FILE_NAME};

/// The environment variable holding one key as `ROLE:HEX`.
pub const ENV_KEY: &str = "TITAN_KEY";
/// The environment variable naming an access file.
pub const ENV_ACCESS_FILE: &str = "TITAN_ACCESS_FILE";

/// The data directory a master uses unless told otherwise (`titan master --data-dir`).
const DEFAULT_DATA_DIR: &str = "titan_data";

/// What the key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// A worker: the worker key.
    Worker,
    /// A client: the client key, else the read-only key.
    Client,
}

impl Want {
    fn who(self) -> &'static str {
        match self {
            Want::Worker => "a worker",
            Want::Client => "a client",
        }
    }

    fn need(self) -> &'static str {
        match self {
            Want::Worker => "the worker key",
            Want::Client => "a client or read-only key",
        }
    }

    fn accepts(self, role: Role) -> bool {
        match self {
            Want::Worker => role == Role::Worker,
            Want::Client => role != Role::Worker,
        }
    }
}

/// A role and its secret: what a connection proves in its handshake.
#[derive(Clone)]
pub struct Credential {
    pub role: Role,
    secret: Secret,
    proof: ProofKey,
}

impl Credential {
    pub fn new(role: Role, secret: Secret) -> Credential {
        let proof = ProofKey::new(&secret);
        Credential {
            role,
            secret,
            proof,
        }
    }

    /// The key the handshake's proofs are made with.
    pub fn proof_key(&self) -> &ProofKey {
        &self.proof
    }

    /// `ROLE:HEX`, the value of [`ENV_KEY`] that hands this key to a child process.
    pub fn to_env_value(&self) -> String {
        format!("{}:{}", self.role.name(), self.secret.to_hex())
    }

    /// Parses `ROLE:HEX`; errors never quote the key.
    pub fn from_env_value(value: &str) -> Result<Credential, AuthError> {
        let bad = |reason: &str| AuthError::BadEnvKey {
            reason: reason.to_string(),
        };
        let (role, hex) = value
            .split_once(':')
            .ok_or_else(|| bad("no ':' between the role and the key"))?;
        let role = Role::from_name(role)
            .ok_or_else(|| bad("the role must be worker, client or read-only"))?;
        let secret = Secret::from_hex(hex).map_err(|reason| bad(&reason))?;
        Ok(Credential::new(role, secret))
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({} key)", self.role)
    }
}

/// The places a key may come from, gathered once (see the module doc for their order).
#[derive(Clone, Debug, Default)]
pub struct KeyLookup {
    /// `--access-file`.
    pub flag: Option<PathBuf>,
    /// `TITAN_KEY`.
    pub env_key: Option<String>,
    /// `TITAN_ACCESS_FILE`.
    pub env_file: Option<PathBuf>,
    /// The file tried last.
    pub default: PathBuf,
}

impl KeyLookup {
    /// The flag given (if any), this process's environment, and `titan_data/access` under the
    /// working directory.
    pub fn from_env(flag: Option<PathBuf>) -> KeyLookup {
        let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        KeyLookup {
            flag,
            env_key: non_empty(ENV_KEY),
            env_file: non_empty(ENV_ACCESS_FILE).map(PathBuf::from),
            default: default_access_file(),
        }
    }

    /// The key for `want`, from the first place that has one.
    pub fn credential(&self, want: Want) -> Result<Credential, AuthError> {
        if let Some(path) = &self.flag {
            return from_file(path, want);
        }
        if let Some(value) = &self.env_key {
            let credential = Credential::from_env_value(value)?;
            if !want.accepts(credential.role) {
                return Err(AuthError::WrongRole {
                    have: credential.role,
                    who: want.who(),
                    need: want.need(),
                });
            }
            return Ok(credential);
        }
        if let Some(path) = &self.env_file {
            return from_file(path, want);
        }
        match from_file(&self.default, want) {
            Err(AuthError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(AuthError::NoKey {
                    default: self.default.clone(),
                })
            }
            other => other,
        }
    }

    /// The access file this lookup would read, if it reads one (not with a `TITAN_KEY`).
    pub fn file(&self) -> Option<&Path> {
        match (&self.flag, &self.env_key, &self.env_file) {
            (Some(flag), _, _) => Some(flag),
            (None, Some(_), _) => None,
            (None, None, Some(file)) => Some(file),
            (None, None, None) => Some(&self.default),
        }
    }
}

/// `titan_data/access`, relative to the working directory.
pub fn default_access_file() -> PathBuf {
    Path::new(DEFAULT_DATA_DIR).join(ACCESS_FILE_NAME)
}

fn from_file(path: &Path, want: Want) -> Result<Credential, AuthError> {
    let file = AccessFile::load(path)?;
    let roles: &[Role] = match want {
        Want::Worker => &[Role::Worker],
        Want::Client => &[Role::Client, Role::ReadOnly],
    };
    roles
        .iter()
        .find_map(|&role| file.key(role).map(|s| Credential::new(role, s.clone())))
        .ok_or_else(|| AuthError::MissingKey {
            path: path.to_path_buf(),
            role: roles[0].name(),
            hint: match want {
                Want::Worker => "; a worker needs the worker key",
                Want::Client => " (nor a read-only key); a client needs one of them",
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{proof, Nonce, Party};

    fn write(dir: &Path, name: &str, file: &AccessFile) -> PathBuf {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        assert!(file.create_new(&path).unwrap());
        path
    }

    #[test]
    fn the_flag_wins_then_titan_key_then_the_env_file_then_the_default() {
        let dir = std::env::temp_dir().join(format!("titan-auth-lookup-{}", std::process::id()));
        let full = AccessFile::generate().unwrap();
        let other = AccessFile::generate().unwrap();
        let (a, b) = (write(&dir, "a", &full), write(&dir, "b", &other));
        let key = |f: &AccessFile, r| f.key(r).unwrap().clone();
        let lookup = KeyLookup {
            flag: Some(a.clone()),
            env_key: Some(format!("client:{}", key(&other, Role::Client).to_hex())),
            env_file: Some(b.clone()),
            default: dir.join("missing"),
        };
        let proves = |c: Credential, s: Secret| {
            let (n1, n2) = (Nonce([1; 32]), Nonce([2; 32]));
            let role = c.role;
            proof(c.proof_key(), Party::Client, role, &n1, &n2)
                == proof(&ProofKey::new(&s), Party::Client, role, &n1, &n2)
        };
        assert!(proves(
            lookup.credential(Want::Client).unwrap(),
            key(&full, Role::Client)
        ));
        let no_flag = KeyLookup {
            flag: None,
            ..lookup.clone()
        };
        assert!(proves(
            no_flag.credential(Want::Client).unwrap(),
            key(&other, Role::Client)
        ));
        let err = no_flag.credential(Want::Worker).unwrap_err().to_string();
        assert_eq!(
            err,
            "TITAN_KEY holds the client key; a worker needs the worker key"
        );
        let file_only = KeyLookup {
            env_key: None,
            ..no_flag.clone()
        };
        let worker = file_only.credential(Want::Worker).unwrap();
        assert_eq!(worker.role, Role::Worker);
        assert!(proves(worker, key(&other, Role::Worker)));
        let nothing = KeyLookup {
            env_file: None,
            ..file_only
        };
        let err = nothing.credential(Want::Client).unwrap_err().to_string();
        assert!(
            err.starts_with("no access key: pass --access-file PATH"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_client_falls_back_to_the_read_only_key_and_a_worker_needs_its_own() {
        let dir = std::env::temp_dir().join(format!("titan-auth-ro-{}", std::process::id()));
        let read_only = AccessFile {
            read_only: Some(Secret::random().unwrap()),
            ..AccessFile::default()
        };
        let path = write(&dir, "ro", &read_only);
        let lookup = KeyLookup {
            flag: Some(path),
            ..KeyLookup::default()
        };
        assert_eq!(
            lookup.credential(Want::Client).unwrap().role,
            Role::ReadOnly
        );
        let err = lookup.credential(Want::Worker).unwrap_err().to_string();
        assert!(
            err.contains("has no worker key; a worker needs the worker key"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn titan_key_values_parse_and_errors_do_not_quote_them() {
        let secret = Secret::random().unwrap();
        let value = format!("read-only:{}", secret.to_hex());
        let credential = Credential::from_env_value(&value).unwrap();
        assert_eq!(credential.role, Role::ReadOnly);
        assert_eq!(credential.to_env_value(), value);
        assert!(!format!("{credential:?}").contains(&secret.to_hex()));
        for bad in ["client", "root:00", "client:nothex"] {
            let err = Credential::from_env_value(bad).unwrap_err().to_string();
            assert!(err.starts_with("TITAN_KEY is not ROLE:HEX"), "{err}");
            assert!(!err.contains("nothex"), "{err}");
        }
    }
}
