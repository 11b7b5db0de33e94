//! Small helpers over the `csv` crate that keep file and line numbers in every error.

use super::error::{DataError, Result};
use std::path::Path;

/// Opens a CSV file; `has_headers` decides whether the first row is a header.
pub fn open(path: &Path, has_headers: bool) -> Result<csv::Reader<std::fs::File>> {
    csv::ReaderBuilder::new()
        .has_headers(has_headers)
        .flexible(true)
        .from_path(path)
        .map_err(|e| csv_error(path, e))
}

pub fn csv_error(path: &Path, e: csv::Error) -> DataError {
    let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => DataError::io(path, io),
        other => DataError::Parse {
            path: path.to_path_buf(),
            line,
            message: format!("{other:?}"),
        },
    }
}

/// Index of a named column in the header, or an error naming the file and the missing column.
pub fn column(headers: &csv::StringRecord, name: &str, path: &Path) -> Result<usize> {
    headers
        .iter()
        .position(|h| h.trim().eq_ignore_ascii_case(name))
        .ok_or_else(|| DataError::Field {
            path: path.to_path_buf(),
            line: 1,
            field: name.to_string(),
            message: format!(
                "missing column (header is `{}`)",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        })
}

/// Field `idx` of a record, or an error naming the file, line and field.
pub fn field<'r>(rec: &'r csv::StringRecord, idx: usize, name: &str, path: &Path) -> Result<&'r str> {
    rec.get(idx).map(str::trim).ok_or_else(|| DataError::Field {
        path: path.to_path_buf(),
        line: line_of(rec),
        field: name.to_string(),
        message: format!("missing (row has {} fields)", rec.len()),
    })
}

/// Parses a field as a number, naming the file, line and field on failure.
pub fn parse_field<T: std::str::FromStr>(rec: &csv::StringRecord, idx: usize, name: &str, path: &Path) -> Result<T> {
    let raw = field(rec, idx, name, path)?;
    raw.parse().map_err(|_| DataError::Field {
        path: path.to_path_buf(),
        line: line_of(rec),
        field: name.to_string(),
        message: format!("`{raw}` is not a valid number"),
    })
}

pub fn line_of(rec: &csv::StringRecord) -> usize {
    rec.position().map(|p| p.line() as usize).unwrap_or(0)
}
