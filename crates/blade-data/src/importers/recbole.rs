//! RecBole atomic files: tab-separated, with a header of `name:type` fields
//! (`user_id:token\titem_id:token\trating:float\ttimestamp:float`). Columns are found by the name
//! before the colon.
//!
//! - `.inter`: user = `user_id` (or `user`), item = `item_id` (or `item`, `product_id`,
//!   `book_id`), optional `rating`, `timestamp` (or `time`; floats are truncated to seconds).
//!   Without a timestamp column the 0-based row index is used, which keeps file order.
//! - `.item`: id as above; title = the first of `movie_title`, `title`, `name` (kept as written);
//!   genres = the first of `class`, `genre`, `genres`, `categories`, split on spaces (RecBole's
//!   `token_seq` separator).
//! - `.user` (optional): only validated (a user-id column, as many fields per row as the header).

use std::path::Path;

use super::{
    find_file, insert_item, is_blank, list_dir, parent_dir, parse_epoch, parse_rating,
    require_file, retain_used_items, utf8, BadRows, ImportOptions, LineReader,
};
use crate::{DataError, RawDataset, RawInteraction, RawItem, Result};

const USER_COLUMNS: &[&str] = &["user_id", "user"];
const ITEM_COLUMNS: &[&str] = &["item_id", "item", "product_id", "book_id"];
const TIME_COLUMNS: &[&str] = &["timestamp", "time"];
const TITLE_COLUMNS: &[&str] = &["movie_title", "title", "name"];
const GENRE_COLUMNS: &[&str] = &["class", "genre", "genres", "categories"];

/// Reads `dir/<name>.inter` and, when present, `dir/<name>.item` and `dir/<name>.user`
/// (each possibly `.gz`).
pub fn read_recbole_dir(dir: &Path, name: &str, opts: &ImportOptions) -> Result<RawDataset> {
    let inter = require_file(dir, &format!("{name}.inter"))?;
    let item = find_file(dir, &format!("{name}.item"));
    let user = find_file(dir, &format!("{name}.user"));
    read_recbole(&inter, item.as_deref(), user.as_deref(), name, opts)
}

/// Reads a RecBole `.inter` file with optional `.item` and `.user` files; `name` names the
/// dataset.
pub fn read_recbole(
    inter: &Path,
    item: Option<&Path>,
    user: Option<&Path>,
    name: &str,
    opts: &ImportOptions,
) -> Result<RawDataset> {
    let mut ds = RawDataset {
        name: name.to_string(),
        ..RawDataset::default()
    };
    read_inter(inter, opts, &mut ds)?;
    if let Some(path) = item {
        read_items(path, opts, &mut ds)?;
        retain_used_items(&mut ds);
    }
    if let Some(path) = user {
        ds.skipped_rows += validate_users(path, opts)?;
    }
    Ok(ds)
}

/// [`crate::importers::import`] for RecBole: a directory or a `.inter` file.
pub(crate) fn import_path(path: &Path, opts: &ImportOptions) -> Result<RawDataset> {
    if path.is_file() {
        let base = super::base_name(path);
        let Some(name) = base.strip_suffix(".inter") else {
            return Err(DataError::bad_file(
                path,
                "expected a RecBole `.inter` file",
            ));
        };
        return read_recbole_dir(parent_dir(path), name, opts);
    }
    let dir_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !dir_name.is_empty() && find_file(path, &format!("{dir_name}.inter")).is_some() {
        return read_recbole_dir(path, dir_name, opts);
    }
    let inters: Vec<String> = list_dir(path)?
        .into_iter()
        .filter_map(|f| {
            let base = f.strip_suffix(".gz").unwrap_or(&f);
            base.strip_suffix(".inter").map(str::to_string)
        })
        .collect();
    match inters.as_slice() {
        [name] => read_recbole_dir(path, name, opts),
        [] => Err(DataError::bad_file(
            path,
            "expected a RecBole `<name>.inter` file here",
        )),
        _ => Err(DataError::bad_file(
            path,
            format!(
                "several `.inter` files ({}); name the file",
                inters.join(", ")
            ),
        )),
    }
}

/// The header's field names (before the colon) and the number of fields.
struct Header {
    names: Vec<String>,
}

impl Header {
    fn read(lines: &mut LineReader, path: &Path) -> Result<Self> {
        let Some((_, bytes)) = lines.next_line()? else {
            return Err(DataError::bad_file(
                path,
                "empty file; expected a `name:type` header",
            ));
        };
        let text = utf8(bytes).map_err(|m| DataError::bad_row(path, 1, m))?;
        let names = text
            .split('\t')
            .map(|f| {
                f.split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .collect();
        Ok(Self { names })
    }

    fn find(&self, candidates: &[&str]) -> Option<usize> {
        candidates
            .iter()
            .find_map(|c| self.names.iter().position(|n| n == c))
    }

    fn require(&self, candidates: &[&str], path: &Path) -> Result<usize> {
        self.find(candidates).ok_or_else(|| {
            DataError::bad_file(
                path,
                format!(
                    "header has no `{}` column (found: {})",
                    candidates.join("`/`"),
                    self.names.join(", ")
                ),
            )
        })
    }
}

/// The field at `index`, or a message saying how many fields were expected.
fn field<'a>(
    fields: &[&'a str],
    index: usize,
    header: &Header,
) -> std::result::Result<&'a str, String> {
    fields.get(index).copied().ok_or_else(|| {
        format!(
            "expected {} tab-separated fields as in the header, found {}",
            header.names.len(),
            fields.len()
        )
    })
}

fn read_inter(path: &Path, opts: &ImportOptions, ds: &mut RawDataset) -> Result<()> {
    let mut lines = LineReader::open(path)?;
    let header = Header::read(&mut lines, path)?;
    let user_col = header.require(USER_COLUMNS, path)?;
    let item_col = header.require(ITEM_COLUMNS, path)?;
    let time_col = header.find(TIME_COLUMNS);
    let rating_col = header.find(&["rating"]);
    let mut bad = BadRows::new(path, opts);
    let mut row_index = 0i64;
    while let Some((line, bytes)) = lines.next_line()? {
        if is_blank(bytes) {
            continue;
        }
        let parsed = utf8(bytes).and_then(|text| {
            let fields: Vec<&str> = text.split('\t').collect();
            let user = field(&fields, user_col, &header)?.trim();
            let item = field(&fields, item_col, &header)?.trim();
            if user.is_empty() || item.is_empty() {
                return Err("expected a non-empty user id and item id".to_string());
            }
            let timestamp = match time_col {
                Some(c) => parse_epoch(field(&fields, c, &header)?)?,
                None => row_index,
            };
            let rating = match rating_col {
                Some(c) => match field(&fields, c, &header)?.trim() {
                    "" => None,
                    r => Some(parse_rating(r)?),
                },
                None => None,
            };
            Ok(RawInteraction {
                user: user.to_string(),
                item: item.to_string(),
                timestamp,
                rating,
            })
        });
        match parsed {
            Ok(interaction) => {
                ds.interactions.push(interaction);
                row_index += 1;
            }
            Err(message) => bad.row(line, message)?,
        }
    }
    ds.skipped_rows += bad.finish();
    Ok(())
}

fn read_items(path: &Path, opts: &ImportOptions, ds: &mut RawDataset) -> Result<()> {
    let mut lines = LineReader::open(path)?;
    let header = Header::read(&mut lines, path)?;
    let id_col = header.require(ITEM_COLUMNS, path)?;
    let title_col = header.find(TITLE_COLUMNS);
    let genre_col = header.find(GENRE_COLUMNS);
    let mut bad = BadRows::new(path, opts);
    while let Some((line, bytes)) = lines.next_line()? {
        if is_blank(bytes) {
            continue;
        }
        let parsed = utf8(bytes).and_then(|text| {
            let fields: Vec<&str> = text.split('\t').collect();
            let id = field(&fields, id_col, &header)?.trim();
            if id.is_empty() {
                return Err("expected a non-empty item id".to_string());
            }
            let title = match title_col {
                Some(c) => field(&fields, c, &header)?.trim().to_string(),
                None => String::new(),
            };
            let genres = match genre_col {
                Some(c) => field(&fields, c, &header)?
                    .split(' ')
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect(),
                None => Vec::new(),
            };
            Ok((id.to_string(), RawItem { title, genres }))
        });
        match parsed {
            Ok((id, item)) => insert_item(&mut ds.items, id, item),
            Err(message) => bad.row(line, message)?,
        }
    }
    ds.skipped_rows += bad.finish();
    Ok(())
}

/// Checks a `.user` file's layout; returns the number of skipped rows.
fn validate_users(path: &Path, opts: &ImportOptions) -> Result<usize> {
    let mut lines = LineReader::open(path)?;
    let header = Header::read(&mut lines, path)?;
    let user_col = header.require(USER_COLUMNS, path)?;
    let mut bad = BadRows::new(path, opts);
    while let Some((line, bytes)) = lines.next_line()? {
        if is_blank(bytes) {
            continue;
        }
        let checked = utf8(bytes).and_then(|text| {
            let fields: Vec<&str> = text.split('\t').collect();
            if fields.len() != header.names.len() {
                return Err(format!(
                    "expected {} tab-separated fields as in the header, found {}",
                    header.names.len(),
                    fields.len()
                ));
            }
            match fields[user_col].trim() {
                "" => Err("expected a non-empty user id".to_string()),
                _ => Ok(()),
            }
        });
        if let Err(message) = checked {
            bad.row(line, message)?;
        }
    }
    Ok(bad.finish())
}
