//! Board profiles (`boards/<name>.toml`): target, glibc floor, camera, threads, detector and
//! display for one kind of board, so `sitfer run --board NAME` needs no other flags.

mod embedded;
mod error;
mod profile;

pub use embedded::names as builtin_names;
pub use error::BoardError;
pub use profile::{BoardProfile, CameraProfile, DisplayOutput, DisplayProfile, InferenceProfile, KNOWN_TARGETS};

use std::path::Path;

/// Loads `--board ARG`: a built-in name (`jetson-orin-nano`), or a path to a `.toml` profile
/// (anything with a `/` or a `.toml` suffix, so a typo in a name is not read as a file).
pub fn load(arg: &str) -> Result<BoardProfile, BoardError> {
    if arg.contains('/') || arg.ends_with(".toml") {
        return load_path(Path::new(arg));
    }
    match embedded::EMBEDDED.iter().find(|(name, _)| *name == arg) {
        Some((name, text)) => BoardProfile::from_toml(&format!("built-in board {name}"), text),
        None => Err(BoardError::Unknown {
            name: arg.to_string(),
            known: builtin_names(),
        }),
    }
}

/// Largest profile read: real ones are under 2 KiB; a path to a device or a huge file is not a
/// profile and must not be read into memory whole.
pub const MAX_PROFILE_BYTES: u64 = 64 << 10;

pub fn load_path(path: &Path) -> Result<BoardProfile, BoardError> {
    use std::io::Read;
    let file = path.display().to_string();
    let io = |source| BoardError::Io {
        file: file.clone(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_PROFILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_PROFILE_BYTES {
        return Err(BoardError::TooLarge {
            file,
            limit: MAX_PROFILE_BYTES,
        });
    }
    BoardProfile::from_toml(&file, &text)
}

#[cfg(test)]
mod tests;
