//! UCSD Goodreads (Wan & McAuley, RecSys 2018; Wan et al., ACL 2019), JSON lines.
//!
//! - `goodreads_interactions_<genre>.json`: user = `user_id`, item = `book_id`, timestamp =
//!   `date_added` (`Fri Aug 25 13:55:02 -0700 2017`, the offset honoured; `date_updated` when
//!   `date_added` is empty), rating = `rating` where it is 1..=5 (Goodreads writes 0 for "not
//!   rated", which becomes `None`). `is_read` is kept only for the `only_read` filter.
//! - `goodreads_books*.json`: item = `book_id`, title = `title` (or `title_without_series`),
//!   genres = the names of the (at most) [`MAX_SHELF_GENRES`] most popular `popular_shelves`
//!   by `count`, ties in file order, leaving out the reading-status shelves of
//!   [`STATUS_SHELVES`] which say nothing about the book. User shelves are free text, so these
//!   "genres" are the users' own words (`fantasy`, `series`, `kindle`, ...).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::time::parse_goodreads_date;
use super::{
    base_name, find_file, insert_item, is_blank, list_dir, parent_dir, retain_used_items, BadRows,
    ImportOptions, LineReader,
};
use crate::{DataError, RawDataset, RawInteraction, RawItem, Result};

/// How many shelves of a book become its genres.
pub const MAX_SHELF_GENRES: usize = 5;
/// Shelves that record reading status rather than content; never used as genres.
pub const STATUS_SHELVES: [&str; 3] = ["to-read", "currently-reading", "favorites"];

#[derive(Deserialize)]
struct Interaction {
    user_id: Value,
    book_id: Value,
    #[serde(default)]
    rating: Option<f32>,
    #[serde(default)]
    is_read: Option<bool>,
    #[serde(default)]
    date_added: Option<String>,
    #[serde(default)]
    date_updated: Option<String>,
}

#[derive(Deserialize)]
struct Shelf {
    count: Value,
    name: String,
}

#[derive(Deserialize)]
struct Book {
    #[serde(default)]
    book_id: Value,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    title_without_series: Option<String>,
    #[serde(default)]
    popular_shelves: Vec<Shelf>,
}

/// An id given as a JSON string or number.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads a Goodreads interactions file and, optionally, a books file. With `only_read`, the
/// interactions with `is_read == false` (shelved, not read) are left out (they are not malformed,
/// so not counted as skipped). The dataset is named `goodreads-<genre>` after the file.
pub fn read_goodreads(
    interactions: &Path,
    books: Option<&Path>,
    only_read: bool,
    opts: &ImportOptions,
) -> Result<RawDataset> {
    let genre = genre_of(interactions);
    let mut ds = RawDataset {
        name: if genre.is_empty() {
            "goodreads".to_string()
        } else {
            format!("goodreads-{genre}")
        },
        ..RawDataset::default()
    };
    let mut lines = LineReader::open(interactions)?;
    let mut bad = BadRows::new(interactions, opts);
    while let Some((line, bytes)) = lines.next_line()? {
        if is_blank(bytes) {
            continue;
        }
        let row = match serde_json::from_slice::<Interaction>(bytes) {
            Ok(row) => row,
            Err(e) => {
                bad.row(
                    line,
                    format!("expected a JSON interaction with user_id, book_id: {e}"),
                )?;
                continue;
            }
        };
        match convert(row) {
            Ok((interaction, is_read)) if is_read || !only_read => {
                ds.interactions.push(interaction)
            }
            Ok(_) => {}
            Err(message) => bad.row(line, message)?,
        }
    }
    ds.skipped_rows += bad.finish();
    if let Some(books) = books {
        read_books(books, opts, &mut ds)?;
        retain_used_items(&mut ds);
    }
    Ok(ds)
}

/// The interaction and its `is_read` flag (`true` when absent).
fn convert(row: Interaction) -> std::result::Result<(RawInteraction, bool), String> {
    let user = id_text(&row.user_id).ok_or("expected a non-empty `user_id`")?;
    let item = id_text(&row.book_id).ok_or("expected a non-empty `book_id`")?;
    let date = [&row.date_added, &row.date_updated]
        .into_iter()
        .flatten()
        .map(|d| d.trim())
        .find(|d| !d.is_empty())
        .ok_or(
            "expected a `date_added` (or `date_updated`) like `Fri Aug 25 13:55:02 -0700 2017`",
        )?;
    let timestamp = parse_goodreads_date(date).ok_or_else(|| {
        format!("expected a date like `Fri Aug 25 13:55:02 -0700 2017`, found `{date}`")
    })?;
    let rating = row.rating.filter(|r| r.is_finite() && *r > 0.0);
    let interaction = RawInteraction {
        user,
        item,
        timestamp,
        rating,
    };
    Ok((interaction, row.is_read.unwrap_or(true)))
}

fn read_books(path: &Path, opts: &ImportOptions, ds: &mut RawDataset) -> Result<()> {
    let mut lines = LineReader::open(path)?;
    let mut bad = BadRows::new(path, opts);
    while let Some((line, bytes)) = lines.next_line()? {
        if is_blank(bytes) {
            continue;
        }
        let book = match serde_json::from_slice::<Book>(bytes) {
            Ok(book) => book,
            Err(e) => {
                bad.row(
                    line,
                    format!("expected a JSON book with book_id, title: {e}"),
                )?;
                continue;
            }
        };
        let Some(id) = id_text(&book.book_id) else {
            bad.no_id();
            continue;
        };
        let title = book
            .title
            .filter(|t| !t.trim().is_empty())
            .or(book.title_without_series)
            .unwrap_or_default();
        let genres = match shelf_genres(book.popular_shelves) {
            Ok(genres) => genres,
            Err(message) => {
                bad.row(line, message)?;
                continue;
            }
        };
        let item = RawItem {
            title: title.trim().to_string(),
            genres,
        };
        insert_item(&mut ds.items, id, item);
    }
    ds.skipped_rows += bad.finish();
    Ok(())
}

/// The names of the most popular content shelves, most popular first (ties in file order).
fn shelf_genres(shelves: Vec<Shelf>) -> std::result::Result<Vec<String>, String> {
    let mut counted = Vec::new();
    for shelf in shelves {
        let count = match &shelf.count {
            Value::String(s) => s.trim().parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        let count =
            count.ok_or_else(|| format!("expected a numeric shelf count for `{}`", shelf.name))?;
        let name = shelf.name.trim();
        if !name.is_empty() && !STATUS_SHELVES.contains(&name.to_ascii_lowercase().as_str()) {
            counted.push((count, name.to_string()));
        }
    }
    counted.sort_by_key(|c| std::cmp::Reverse(c.0)); // stable: ties keep file order
    Ok(counted
        .into_iter()
        .take(MAX_SHELF_GENRES)
        .map(|(_, name)| name)
        .collect())
}

/// `poetry` of `goodreads_interactions_poetry.json.gz` (empty when there is no genre part).
fn genre_of(path: &Path) -> String {
    let base = base_name(path);
    let stem = base.strip_suffix(".json").unwrap_or(base);
    stem.strip_prefix("goodreads_interactions")
        .map(|g| g.trim_start_matches('_'))
        .unwrap_or("")
        .replace('_', "-")
}

/// The books file for an interactions file: `goodreads_books_<genre>.json` beside it, else
/// `goodreads_books.json`.
fn books_for(interactions: &Path) -> Option<PathBuf> {
    let dir = parent_dir(interactions);
    let base = base_name(interactions);
    let stem = base.strip_suffix(".json").unwrap_or(base);
    let genre = stem.strip_prefix("goodreads_interactions").unwrap_or("");
    find_file(dir, &format!("goodreads_books{genre}.json"))
        .or_else(|| find_file(dir, "goodreads_books.json"))
}

/// [`crate::importers::import`] for Goodreads: a directory, or an interactions file. All
/// interactions are kept.
pub(crate) fn import_path(path: &Path, opts: &ImportOptions) -> Result<RawDataset> {
    let file = if path.is_file() {
        path.to_path_buf()
    } else {
        let found: Vec<String> = list_dir(path)?
            .into_iter()
            .filter(|f| {
                let base = f.strip_suffix(".gz").unwrap_or(f);
                base.starts_with("goodreads_interactions") && base.ends_with(".json")
            })
            .collect();
        match found.as_slice() {
            [one] => path.join(one),
            [] => {
                return Err(DataError::bad_file(
                    path,
                    "expected a `goodreads_interactions_<genre>.json` (or `.json.gz`) here",
                ))
            }
            _ => {
                return Err(DataError::bad_file(
                    path,
                    format!(
                        "several interactions files ({}); name the file",
                        found.join(", ")
                    ),
                ))
            }
        }
    };
    let books = books_for(&file);
    read_goodreads(&file, books.as_deref(), false, opts)
}
