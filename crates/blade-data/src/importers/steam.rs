//! UCSD Steam data (Kang & McAuley, ICDM 2018; Wan & McAuley, RecSys 2018). Every line is a
//! Python `str(dict)`, not JSON; a small Python-literal parser reads them.
//!
//! - `steam_reviews.json`: user = `username` (or `user_id` where there is no username),
//!   item = `product_id`, timestamp = `date` (`YYYY-MM-DD`, midnight UTC), no rating;
//! - `australian_user_reviews.json`: one line per user (`user_id`) with a `reviews` list
//!   (`item_id`, `posted`: `Posted November 5, 2011.`). Steam writes no year for reviews of the
//!   crawl's own year (`Posted March 3.`); such a review is a malformed row (its order relative
//!   to the others cannot be known), so this file usually needs `skip_bad_rows`;
//! - `steam_games.json`: item = `id`, title = `app_name` (or `title`), genres = `genres` (or
//!   `tags` when an entry has no genres).

use std::path::Path;

use serde_json::{Map, Value};

use super::time::{parse_steam_posted, parse_ymd};
use super::{
    find_file, insert_item, is_blank, parent_dir, python_literal, retain_used_items, utf8, BadRows,
    ImportOptions, LineReader,
};
use crate::{DataError, RawDataset, RawInteraction, RawItem, Result};

/// Reads a Steam reviews file (either layout) and, optionally, `steam_games.json`.
pub fn read_steam(
    reviews: &Path,
    games: Option<&Path>,
    opts: &ImportOptions,
) -> Result<RawDataset> {
    let mut ds = RawDataset {
        name: "steam".to_string(),
        ..RawDataset::default()
    };
    let mut lines = LineReader::open(reviews)?;
    let mut bad = BadRows::new(reviews, opts);
    while let Some((line, bytes)) = lines.next_line()? {
        if is_blank(bytes) {
            continue;
        }
        let record = match parse_object(bytes) {
            Ok(record) => record,
            Err(message) => {
                bad.row(line, message)?;
                continue;
            }
        };
        match record.get("reviews") {
            Some(Value::Array(list)) => {
                let user = text_field(&record, &["user_id"]);
                for review in list {
                    match australian_review(user.as_deref(), review) {
                        Ok(i) => ds.interactions.push(i),
                        Err(message) => bad.row(line, message)?,
                    }
                }
            }
            _ => match steam_review(&record) {
                Ok(i) => ds.interactions.push(i),
                Err(message) => bad.row(line, message)?,
            },
        }
    }
    ds.skipped_rows += bad.finish();
    if let Some(games) = games {
        read_games(games, opts, &mut ds)?;
        retain_used_items(&mut ds);
    }
    Ok(ds)
}

/// A line as a Python dict.
fn parse_object(bytes: &[u8]) -> std::result::Result<Map<String, Value>, String> {
    match python_literal::parse(utf8(bytes)?)? {
        Value::Object(map) => Ok(map),
        _ => Err("expected a Python dict `{...}`".to_string()),
    }
}

/// The first of `keys` holding a non-empty string (or a number, as text).
fn text_field<'a>(
    record: &'a Map<String, Value>,
    keys: &[&str],
) -> Option<std::borrow::Cow<'a, str>> {
    keys.iter().find_map(|k| match record.get(*k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().into()),
        Some(Value::Number(n)) => Some(n.to_string().into()),
        _ => None,
    })
}

fn steam_review(record: &Map<String, Value>) -> std::result::Result<RawInteraction, String> {
    let user = text_field(record, &["username", "user_id"])
        .ok_or("expected a `username` (or `user_id`)")?;
    let item = text_field(record, &["product_id"]).ok_or("expected a `product_id`")?;
    let date = text_field(record, &["date"]).ok_or("expected a `date` (YYYY-MM-DD)")?;
    let timestamp =
        parse_ymd(&date).ok_or_else(|| format!("expected a `date` YYYY-MM-DD, found `{date}`"))?;
    Ok(RawInteraction {
        user: user.into_owned(),
        item: item.into_owned(),
        timestamp,
        rating: None,
    })
}

fn australian_review(
    user: Option<&str>,
    review: &Value,
) -> std::result::Result<RawInteraction, String> {
    let user = user.ok_or("expected a `user_id` beside `reviews`")?;
    let Value::Object(review) = review else {
        return Err("expected each entry of `reviews` to be a dict".to_string());
    };
    let item = text_field(review, &["item_id"]).ok_or("expected an `item_id` in a review")?;
    let posted = text_field(review, &["posted"]).ok_or("expected a `posted` date in a review")?;
    let timestamp = parse_steam_posted(&posted).ok_or_else(|| {
        format!("expected `posted` like `Posted November 5, 2011.`, found `{posted}`")
    })?;
    Ok(RawInteraction {
        user: user.to_string(),
        item: item.into_owned(),
        timestamp,
        rating: None,
    })
}

fn read_games(path: &Path, opts: &ImportOptions, ds: &mut RawDataset) -> Result<()> {
    let mut lines = LineReader::open(path)?;
    let mut bad = BadRows::new(path, opts);
    while let Some((line, bytes)) = lines.next_line()? {
        if is_blank(bytes) {
            continue;
        }
        let record = match parse_object(bytes) {
            Ok(record) => record,
            Err(message) => {
                bad.row(line, message)?;
                continue;
            }
        };
        let Some(id) = text_field(&record, &["id"]) else {
            bad.no_id();
            continue;
        };
        let title = text_field(&record, &["app_name", "title"]).unwrap_or_default();
        let list = |key: &str| -> Vec<String> {
            match record.get(key) {
                Some(Value::Array(values)) => values
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut genres = list("genres");
        if genres.is_empty() {
            genres = list("tags");
        }
        let item = RawItem {
            title: title.into_owned(),
            genres,
        };
        insert_item(&mut ds.items, id.into_owned(), item);
    }
    ds.skipped_rows += bad.finish();
    Ok(())
}

/// [`crate::importers::import`] for Steam: a directory, or a reviews file.
pub(crate) fn import_path(path: &Path, opts: &ImportOptions) -> Result<RawDataset> {
    let (reviews, dir) = if path.is_file() {
        (path.to_path_buf(), parent_dir(path))
    } else {
        let reviews = find_file(path, "steam_reviews.json")
            .or_else(|| find_file(path, "australian_user_reviews.json"))
            .ok_or_else(|| {
                DataError::bad_file(
                    path,
                    "expected `steam_reviews.json` or `australian_user_reviews.json` (or `.gz`) here",
                )
            })?;
        (reviews, path)
    };
    let games = find_file(dir, "steam_games.json");
    read_steam(&reviews, games.as_deref(), opts)
}
