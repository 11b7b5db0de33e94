//! Reading a safetensors file the runtime wrote with a `format` and `version` in its metadata
//! (the instance buffer, the online head): the size bounded before anything is read, then the
//! format and version checked, once for every such file.

use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;

/// What went wrong, for the caller to wrap in its own error with the file's name.
pub enum VersionedReadError {
    Io(std::io::Error),
    Invalid(String),
    /// The version the file declares.
    Version(String),
}

/// The file's bytes and metadata, when it is at most `limit` bytes and declares `format` and
/// `version`. `what` names the kind of file in messages ("a buffer file").
pub fn read_versioned(
    path: &Path,
    limit: u64,
    format: &str,
    version: u32,
    what: &str,
) -> Result<(Vec<u8>, HashMap<String, String>), VersionedReadError> {
    let size = std::fs::metadata(path).map_err(VersionedReadError::Io)?.len();
    if size > limit {
        return Err(VersionedReadError::Invalid(format!(
            "{size} bytes exceeds the limit of {limit} bytes"
        )));
    }
    let bytes = std::fs::read(path).map_err(VersionedReadError::Io)?;
    let (_, meta) =
        SafeTensors::read_metadata(&bytes).map_err(|e| VersionedReadError::Invalid(format!("not {what}: {e}")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let found = meta.get("format").cloned().unwrap_or_default();
    if found != format {
        return Err(VersionedReadError::Invalid(format!(
            "not a {format} file (format `{found}`)"
        )));
    }
    let found = meta.get("version").cloned().unwrap_or_default();
    if found != version.to_string() {
        return Err(VersionedReadError::Version(found));
    }
    Ok((bytes, meta))
}
