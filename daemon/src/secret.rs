//! Secrets kept in files: API tokens, the audit key.

use std::path::Path;

/// Reads a secret file (trimmed). A file other users can read is a leaked secret:
/// refused, with the fix in the message.
pub fn read_owner_only(path: &Path) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} can be read by other users (mode {:o}); `chmod 600` it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    Ok(std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .trim()
        .to_string())
}
