//! The access file: the keys of every role, in a small versioned `key = value` text file.
//!
//! ```text
//! # comments and blank lines are ignored
//! titan-access 1
//! worker = <64 hex digits>
//! client = <64 hex digits>
//! read-only = <64 hex digits>
//! master = <64 hex digits>
//! ```
//!
//! A master writes one on its first start ([`AccessFile::load_or_create`]) with a fresh random
//! secret for every role and one of its own (`master`, which never leaves it); clients and
//! workers read the keys they need from it, or from a copy holding only those. Names this build
//! does not know are kept (a later version adds, e.g., the TLS certificate's fingerprint) and a
//! higher version number is refused. The file is created with mode 0600 and atomically: written
//! to a temporary file, synced, and linked into place only if no file is there yet, so two
//! masters starting at once end up with the same keys. A file others may read is refused.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::secret::random_bytes;
use super::{AuthError, Role, Secret};

/// The format version this build writes and reads.
pub const ACCESS_VERSION: u32 = 1;

/// The access file's name inside a master's data directory.
pub const ACCESS_FILE_NAME: &str = "access";

/// The line that opens every access file, before its version number.
const MAGIC: &str = "titan-access";

/// The name of the master-only secret.
const MASTER: &str = "master";

/// Longest access file read (a handful of keys; anything bigger is not one).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The keys an access file holds. A master's has all of them; a client's copy may hold one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessFile {
    pub worker: Option<Secret>,
    pub client: Option<Secret>,
    pub read_only: Option<Secret>,
    /// The master's own secret: tickets and log keys are derived from it.
    pub master: Option<Secret>,
    /// Entries this build does not know, kept as they were (name, value).
    pub extra: Vec<(String, String)>,
}

impl AccessFile {
    /// Fresh random secrets for every role and the master.
    pub fn generate() -> Result<AccessFile, AuthError> {
        Ok(AccessFile {
            worker: Some(Secret::from_bytes(random_bytes()?)),
            client: Some(Secret::from_bytes(random_bytes()?)),
            read_only: Some(Secret::from_bytes(random_bytes()?)),
            master: Some(Secret::from_bytes(random_bytes()?)),
            extra: Vec::new(),
        })
    }

    /// The key of `role`, if the file has it.
    pub fn key(&self, role: Role) -> Option<&Secret> {
        match role {
            Role::Worker => self.worker.as_ref(),
            Role::Client => self.client.as_ref(),
            Role::ReadOnly => self.read_only.as_ref(),
        }
    }

    fn slot(&mut self, name: &str) -> Option<&mut Option<Secret>> {
        match Role::from_name(name) {
            Some(Role::Worker) => Some(&mut self.worker),
            Some(Role::Client) => Some(&mut self.client),
            Some(Role::ReadOnly) => Some(&mut self.read_only),
            None if name == MASTER => Some(&mut self.master),
            None => None,
        }
    }

    /// Parses the text of an access file; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<AccessFile, AuthError> {
        let error = |line: usize, reason: String| AuthError::Parse {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut file = AccessFile::default();
        let mut versioned = false;
        for (index, raw) in text.lines().enumerate() {
            let (line, content) = (index + 1, raw.trim());
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            if !versioned {
                check_version(content).map_err(|reason| error(line, reason))?;
                versioned = true;
                continue;
            }
            let Some((name, value)) = content.split_once('=') else {
                return Err(error(line, "expected `name = value`".to_string()));
            };
            let (name, value) = (name.trim(), value.trim());
            match file.slot(name) {
                Some(Some(_)) => return Err(error(line, format!("{name} is given twice"))),
                Some(slot) => {
                    let secret = Secret::from_hex(value)
                        .map_err(|reason| error(line, format!("{name}: {reason}")))?;
                    *slot = Some(secret);
                }
                None => file.extra.push((name.to_string(), value.to_string())),
            }
        }
        if !versioned {
            return Err(error(0, format!("no `{MAGIC} {ACCESS_VERSION}` line")));
        }
        Ok(file)
    }

    /// The file's text (it holds secrets: write it only to a file of mode 0600).
    pub fn to_text(&self) -> String {
        let mut text = String::from(
            "# Titan's access file: the keys of every role. Keep it secret (mode 0600): whoever\n\
             # reads it can run jobs as the workers' user. See README.md, \"Security\", for\n\
             # handing out single keys and for rotating them.\n",
        );
        text.push_str(&format!("{MAGIC} {ACCESS_VERSION}\n"));
        let entries = [
            (Role::Worker.name(), &self.worker),
            (Role::Client.name(), &self.client),
            (Role::ReadOnly.name(), &self.read_only),
            (MASTER, &self.master),
        ];
        for (name, secret) in entries {
            if let Some(secret) = secret {
                text.push_str(&format!("{name} = {}\n", secret.to_hex()));
            }
        }
        for (name, value) in &self.extra {
            text.push_str(&format!("{name} = {value}\n"));
        }
        text
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<AccessFile, AuthError> {
        let read = |source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = fs::metadata(path).map_err(read)?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(AuthError::Parse {
                path: path.to_path_buf(),
                line: 0,
                reason: format!("{} bytes is too large for an access file", meta.len()),
            });
        }
        let text = fs::read_to_string(path).map_err(read)?;
        AccessFile::parse(&text, path)
    }

    /// The master's start: loads `path`, or creates it with fresh secrets when there is none.
    /// Refuses a file others may read or one that lacks a key the master needs. Returns the
    /// file and whether it was created now.
    pub fn load_or_create(path: &Path) -> Result<(AccessFile, bool), AuthError> {
        let (file, created) = match fs::symlink_metadata(path) {
            Ok(_) => (AccessFile::load(path)?, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let fresh = AccessFile::generate()?;
                match fresh.create_new(path)? {
                    true => (fresh, true),
                    // Another master created it meanwhile: use its keys.
                    false => (AccessFile::load(path)?, false),
                }
            }
            Err(source) => {
                return Err(AuthError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        check_private(path)?;
        file.require_master_keys(path)?;
        Ok((file, created))
    }

    fn require_master_keys(&self, path: &Path) -> Result<(), AuthError> {
        let hint = "; a master needs all four (delete the file to generate new ones)";
        let missing = [
            (Role::Worker.name(), self.worker.is_none()),
            (Role::Client.name(), self.client.is_none()),
            (Role::ReadOnly.name(), self.read_only.is_none()),
            (MASTER, self.master.is_none()),
        ];
        match missing.into_iter().find(|(_, missing)| *missing) {
            Some((role, _)) => Err(AuthError::MissingKey {
                path: path.to_path_buf(),
                role,
                hint,
            }),
            None => Ok(()),
        }
    }

    /// Writes the file at `path` unless one is there: a temporary file of mode 0600 in the same
    /// directory, synced, then hard-linked into place (which fails if `path` exists, unlike a
    /// rename), and the directory synced. Returns false when a file was there already.
    pub fn create_new(&self, path: &Path) -> Result<bool, AuthError> {
        let write = |source| AuthError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(write)?;
        let suffix: [u8; 8] = random_bytes()?;
        let temp = dir.join(format!(
            ".{ACCESS_FILE_NAME}.tmp-{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(suffix)
        ));
        let written = write_private(&temp, self.to_text().as_bytes());
        let linked = written.and_then(|()| fs::hard_link(&temp, path));
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                fs::File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(write)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(write(e)),
        }
    }
}

fn check_version(line: &str) -> Result<(), String> {
    let mut words = line.split_whitespace();
    if words.next() != Some(MAGIC) {
        return Err(format!(
            "not an access file: it must start with `{MAGIC} {ACCESS_VERSION}`"
        ));
    }
    match words.next().map(str::parse::<u32>) {
        Some(Ok(ACCESS_VERSION)) if words.next().is_none() => Ok(()),
        Some(Ok(v)) if v > ACCESS_VERSION => Err(format!(
            "written by a newer Titan (version {v}; this build reads {ACCESS_VERSION})"
        )),
        _ => Err(format!("expected `{MAGIC} {ACCESS_VERSION}`")),
    }
}

/// Creates `path` (which must not exist) with mode 0600 and `bytes` in it, synced.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Refuses a file that users other than its owner may read or write.
fn check_private(path: &Path) -> Result<(), AuthError> {
    let meta = fs::metadata(path).map_err(|source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AuthError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("titan-auth-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_generated_file_round_trips_through_its_text_with_unknown_entries_kept() {
        let mut file = AccessFile::generate().unwrap();
        file.extra
            .push(("tls-fingerprint".into(), "sha256:ab".into()));
        let parsed = AccessFile::parse(&file.to_text(), Path::new("x")).unwrap();
        assert_eq!(parsed, file);
        assert_ne!(file.worker, file.client, "every role has its own secret");
    }

    #[test]
    fn a_partial_file_holds_only_its_keys() {
        let secret = Secret::random().unwrap();
        let text = format!(
            "titan-access 1\n\n# a dashboard's copy\nread-only = {}\n",
            secret.to_hex()
        );
        let file = AccessFile::parse(&text, Path::new("x")).unwrap();
        assert_eq!(file.key(Role::ReadOnly), Some(&secret));
        assert_eq!(file.key(Role::Client), None);
    }

    #[test]
    fn bad_files_name_the_line_and_never_quote_a_key() {
        let cases = [
            ("worker = 00\n", "not an access file"),
            ("titan-access 2\n", "newer Titan"),
            (
                "titan-access 1\nworker\n",
                "line 2: expected `name = value`",
            ),
            (
                "titan-access 1\nclient = xyz\n",
                "line 2: client: a key is 64 hex digits",
            ),
            ("", "no `titan-access 1` line"),
        ];
        for (text, want) in cases {
            let err = AccessFile::parse(text, Path::new("f"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains("xyz"), "{err}");
        }
        let key = "11".repeat(32);
        let twice = format!("titan-access 1\nworker = {key}\nworker = {key}\n");
        let err = AccessFile::parse(&twice, Path::new("f"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3: worker is given twice") && !err.contains(&key),
            "{err}"
        );
    }

    #[test]
    fn load_or_create_makes_a_private_file_once_and_reads_it_back() {
        let dir = temp_dir("create");
        let path = dir.join("data").join(ACCESS_FILE_NAME);
        let (first, created) = AccessFile::load_or_create(&path).unwrap();
        assert!(created);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (second, created) = AccessFile::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first, second);
        assert!(!AccessFile::generate().unwrap().create_new(&path).unwrap());
        assert_eq!(AccessFile::load(&path).unwrap(), first, "never replaced");
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = AccessFile::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_master_refuses_a_file_without_all_its_keys() {
        let dir = temp_dir("partial");
        let path = dir.join(ACCESS_FILE_NAME);
        let partial = AccessFile {
            client: Some(Secret::random().unwrap()),
            ..AccessFile::default()
        };
        assert!(partial.create_new(&path).unwrap());
        let err = AccessFile::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("has no worker key"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }
}
