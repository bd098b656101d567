//! Atomic file replacement for the state directory: write a temporary file
//! beside the target, fsync it, rename it over the target, fsync the
//! directory. A crash leaves either the old file or the new one, never half
//! of either.

use std::io::Write as _;
use std::path::Path;

use crate::error::{AuthError, io_error};

/// Replaces `path` with `bytes` atomically. With `private`, the file is
/// created with mode 0600 on unix (readable by its owner only) before any
/// byte is written to it.
pub fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<(), AuthError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let context = |what: &str| format!("{what} {}", temp.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(&temp)
        .map_err(|e| io_error(context("creating"), e))?;
    file.write_all(bytes)
        .map_err(|e| io_error(context("writing"), e))?;
    file.sync_all()
        .map_err(|e| io_error(context("syncing"), e))?;
    drop(file);
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        io_error(
            format!("renaming {} to {}", temp.display(), path.display()),
            e,
        )
    })?;
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}
