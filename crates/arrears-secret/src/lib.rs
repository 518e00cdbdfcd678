//! Secrets kept in files: API tokens, SMTP and connector passwords, the webhook
//! token, the bureau's API key, the audit key.
//!
//! A secret file that other users can read is as good as leaked, so it is refused
//! with the command that fixes it, wherever it is configured.

use std::io::Read;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{path} can be read by other users (mode {mode:o}); `chmod 600` it")]
    Exposed { path: String, mode: u32 },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid UTF-8")]
    NotText { path: String },
}

/// The file's whole content, once its permissions show only its owner can read it.
/// Callers trim what their format allows (a token's spaces, a password's line break).
pub fn read(path: &Path) -> Result<String, SecretFileError> {
    let io = |source| SecretFileError::Io {
        path: path.display().to_string(),
        source,
    };
    // Permissions are checked on the handle that is then read, so the file cannot be
    // swapped for another between the check and the read.
    let mut file = std::fs::File::open(path).map_err(io)?;
    check_private(path, &file.metadata().map_err(io)?)?;
    let mut raw = Vec::new();
    file.read_to_end(&mut raw).map_err(io)?;
    String::from_utf8(raw).map_err(|_| SecretFileError::NotText {
        path: path.display().to_string(),
    })
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), SecretFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    // Group bits too: a group is other users, and one that can write the file can
    // replace the secret.
    if mode & 0o077 != 0 {
        return Err(SecretFileError::Exposed {
            path: path.display().to_string(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), SecretFileError> {
    // No mode bits to read; ACLs are the administrator's to set.
    Ok(())
}

/// [`read`], trimmed, with the error as text: for config loaders that report it in
/// their own words (the audit key).
pub fn read_owner_only(path: &Path) -> Result<String, String> {
    read(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| e.to_string())
}

/// Writes a secret file as its owner must keep it: readable by the owner only, and
/// narrowed before the secret is written, so there is no moment at which others could
/// read it (also when the file existed with wider permissions).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.set_len(0)?;
    f.write_all(text.as_bytes())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_with_mode(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn only_owner_only_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        for mode in [0o644, 0o640, 0o604, 0o620, 0o666] {
            write_with_mode(&f, "x", mode);
            let e = read(&f).unwrap_err().to_string();
            assert!(
                e.contains(&format!("mode {mode:o}")) && e.contains("chmod 600"),
                "{e}"
            );
        }
        for mode in [0o600, 0o400] {
            write_with_mode(&f, "secret\n", mode);
            assert_eq!(read(&f).unwrap(), "secret\n");
        }
        let missing = dir.path().join("nope");
        let e = read(&missing).unwrap_err().to_string();
        assert!(e.starts_with("cannot read") && e.contains("nope"), "{e}");
    }
}
