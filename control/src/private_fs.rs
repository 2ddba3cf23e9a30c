//! Files and directories only their owner may read: the data directory, the SQLite
//! database and the local blob store hold module bytes, tokens' hashes and users' password
//! hashes, so they are created 0700 (directories) and 0600 (files). Existing ones are left
//! as they are: a directory the operator chose (and may not own) is theirs to set.

use std::path::Path;

/// Creates `dir` (and missing parents) readable by the owner only; an existing one is
/// left alone.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    // The umask may have masked bits off; never on, but set exactly what is meant.
    restrict(dir, 0o700)
}

/// Creates the empty file `path` readable by the owner only when it is missing; an
/// existing one is left alone.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?;
    restrict(path, 0o600)
}

/// Sets `path`'s mode to `mode` (Unix; elsewhere nothing).
pub fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}
