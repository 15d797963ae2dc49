//! Generic CSV with a header row (comma-separated; tab-separated when the file name ends in
//! `.tsv`). Column names are matched case-insensitively.
//!
//! - interactions: `user` (or `user_id`), `item` (or `item_id`), `timestamp` (a Unix time,
//!   integer or float, or a `YYYY-MM-DD` date at midnight UTC), optional `rating` (empty = none);
//! - items: `item` (or `item_id`), optional `title`, optional `genres` (`|`-separated).

use std::path::Path;

use csv::{ByteRecord, ReaderBuilder};

use super::time::parse_ymd;
use super::{
    base_name, find_file, insert_item, open, parse_epoch, parse_rating, retain_used_items, BadRows,
    ImportOptions,
};
use crate::{DataError, RawDataset, RawInteraction, RawItem, Result};

/// Reads an interactions CSV and, optionally, an items CSV. The dataset is named after the
/// interactions file's stem.
pub fn read_csv(
    interactions: &Path,
    items: Option<&Path>,
    opts: &ImportOptions,
) -> Result<RawDataset> {
    let base = base_name(interactions);
    let name = base.rsplit_once('.').map_or(base, |(stem, _)| stem);
    let mut ds = RawDataset {
        name: name.to_string(),
        ..RawDataset::default()
    };
    let mut table = Table::open(interactions)?;
    let user_col = table.require(&["user", "user_id"])?;
    let item_col = table.require(&["item", "item_id"])?;
    let time_col = table.require(&["timestamp"])?;
    let rating_col = table.find(&["rating"]);
    let mut bad = BadRows::new(interactions, opts);
    while let Some(line) = table.next()? {
        let parsed = (|| {
            let user = table.field(user_col)?;
            let item = table.field(item_col)?;
            if user.is_empty() || item.is_empty() {
                return Err("expected a non-empty user and item".to_string());
            }
            let time = table.field(time_col)?;
            let timestamp = parse_epoch(time).or_else(|e| parse_ymd(time).ok_or(e))?;
            let rating = match rating_col.map(|c| table.field(c)).transpose()? {
                Some(r) if !r.is_empty() => Some(parse_rating(r)?),
                _ => None,
            };
            Ok(RawInteraction {
                user: user.to_string(),
                item: item.to_string(),
                timestamp,
                rating,
            })
        })();
        match parsed {
            Ok(interaction) => ds.interactions.push(interaction),
            Err(message) => bad.row(line, message)?,
        }
    }
    ds.skipped_rows += bad.finish();
    if let Some(items) = items {
        read_items(items, opts, &mut ds)?;
        retain_used_items(&mut ds);
    }
    Ok(ds)
}

fn read_items(path: &Path, opts: &ImportOptions, ds: &mut RawDataset) -> Result<()> {
    let mut table = Table::open(path)?;
    let id_col = table.require(&["item", "item_id"])?;
    let title_col = table.find(&["title"]);
    let genres_col = table.find(&["genres"]);
    let mut bad = BadRows::new(path, opts);
    while let Some(line) = table.next()? {
        let parsed = (|| {
            let id = table.field(id_col)?;
            if id.is_empty() {
                return Err("expected a non-empty item id".to_string());
            }
            let title = title_col.map(|c| table.field(c)).transpose()?.unwrap_or("");
            let genres = genres_col
                .map(|c| table.field(c))
                .transpose()?
                .unwrap_or("");
            let genres = genres
                .split('|')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect();
            Ok((
                id.to_string(),
                RawItem {
                    title: title.to_string(),
                    genres,
                },
            ))
        })();
        match parsed {
            Ok((id, item)) => insert_item(&mut ds.items, id, item),
            Err(message) => bad.row(line, message)?,
        }
    }
    ds.skipped_rows += bad.finish();
    Ok(())
}

/// A CSV file with its lower-cased header and the current record.
struct Table {
    path: std::path::PathBuf,
    reader: csv::Reader<Box<dyn std::io::Read>>,
    header: Vec<String>,
    record: ByteRecord,
}

impl Table {
    fn open(path: &Path) -> Result<Self> {
        let delimiter = if base_name(path).to_ascii_lowercase().ends_with(".tsv") {
            b'\t'
        } else {
            b','
        };
        let mut reader = ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(open(path)?);
        let header = reader
            .byte_headers()
            .map_err(|e| csv_error(path, e))?
            .iter()
            .map(|h| {
                String::from_utf8_lossy(h)
                    .trim()
                    .trim_start_matches('\u{feff}')
                    .to_ascii_lowercase()
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            header,
            record: ByteRecord::new(),
        })
    }

    fn find(&self, names: &[&str]) -> Option<usize> {
        names
            .iter()
            .find_map(|n| self.header.iter().position(|h| h == n))
    }

    fn require(&self, names: &[&str]) -> Result<usize> {
        self.find(names).ok_or_else(|| {
            DataError::bad_file(
                &self.path,
                format!(
                    "header has no `{}` column (found: {})",
                    names.join("`/`"),
                    self.header.join(", ")
                ),
            )
        })
    }

    /// Advances to the next record; returns its 1-based line, or `None` at the end.
    fn next(&mut self) -> Result<Option<usize>> {
        loop {
            match self.reader.read_byte_record(&mut self.record) {
                Ok(false) => return Ok(None),
                Ok(true) => {
                    if self
                        .record
                        .iter()
                        .all(|f| f.iter().all(u8::is_ascii_whitespace))
                    {
                        continue;
                    }
                    let line = self.record.position().map_or(0, |p| p.line() as usize);
                    return Ok(Some(line));
                }
                Err(e) => return Err(csv_error(&self.path, e)),
            }
        }
    }

    /// Field `index` of the current record, trimmed.
    fn field(&self, index: usize) -> std::result::Result<&str, String> {
        let bytes = self.record.get(index).ok_or_else(|| {
            // a quote never closed swallows the line ends after it into one field
            let unterminated = self.record.iter().any(|f| f.contains(&b'\n'));
            format!(
                "{}expected {} fields as in the header, found {}",
                if unterminated {
                    "unterminated quote: a field opened with `\"` on this line runs past its end; "
                } else {
                    ""
                },
                self.header.len(),
                self.record.len()
            )
        })?;
        std::str::from_utf8(bytes)
            .map(str::trim)
            .map_err(|e| format!("invalid UTF-8 in field {} ({e})", index + 1))
    }
}

fn csv_error(path: &Path, e: csv::Error) -> DataError {
    let line = e.position().map(|p| p.line() as usize);
    match (e.into_kind(), line) {
        (csv::ErrorKind::Io(io), _) => DataError::io(path, io),
        (kind, Some(line)) => DataError::bad_row(path, line, format!("{kind:?}")),
        (kind, None) => DataError::bad_file(path, format!("{kind:?}")),
    }
}

/// [`crate::importers::import`] for CSV: a directory with `interactions.csv` (and optionally
/// `items.csv`), or an interactions file alone.
pub(crate) fn import_path(path: &Path, opts: &ImportOptions) -> Result<RawDataset> {
    if path.is_file() {
        return read_csv(path, None, opts);
    }
    let interactions = super::require_file(path, "interactions.csv")?;
    let items = find_file(path, "items.csv");
    let mut ds = read_csv(&interactions, items.as_deref(), opts)?;
    if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
        ds.name = name.to_string();
    }
    Ok(ds)
}
