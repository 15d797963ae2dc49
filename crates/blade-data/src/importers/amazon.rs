//! Amazon Reviews 2018 (Ni, Li & McAuley, EMNLP 2019), JSON lines.
//!
//! - reviews (`<Category>.json`, `<Category>_5.json`): user = `reviewerID`, item = `asin`,
//!   timestamp = `unixReviewTime`, rating = `overall`;
//! - metadata (`meta_<Category>.json`): title = `title` (HTML entities are kept as written),
//!   genres = `category` minus its first entry, the root that every item of the file shares
//!   (`["CDs & Vinyl", "Pop"]` -> `["Pop"]`). The 2014 release's Python-literal metadata
//!   (`categories`: a list of lists, the first one used) is read too.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{
    base_name, find_file, insert_item, is_blank, list_dir, parent_dir, python_literal,
    retain_used_items, utf8, BadRows, ImportOptions, LineReader,
};
use crate::{DataError, RawDataset, RawInteraction, RawItem, Result};

#[derive(Deserialize)]
struct Review {
    #[serde(rename = "reviewerID")]
    reviewer_id: String,
    asin: String,
    #[serde(rename = "unixReviewTime")]
    unix_review_time: i64,
    overall: Option<f32>,
}

/// Reads an Amazon 2018 reviews file and, optionally, its `meta_*.json` file. The dataset is
/// named `amazon-<category>` after the reviews file (`CDs_and_Vinyl_5.json.gz` ->
/// `amazon-cds-and-vinyl`).
pub fn read_amazon2018(
    reviews: &Path,
    meta: Option<&Path>,
    opts: &ImportOptions,
) -> Result<RawDataset> {
    let mut ds = RawDataset {
        name: format!(
            "amazon-{}",
            category_of(reviews).to_ascii_lowercase().replace('_', "-")
        ),
        ..RawDataset::default()
    };
    let mut lines = LineReader::open(reviews)?;
    let mut bad = BadRows::new(reviews, opts);
    while let Some((line, bytes)) = lines.next_line()? {
        if is_blank(bytes) {
            continue;
        }
        match serde_json::from_slice::<Review>(bytes) {
            Ok(r) if !r.reviewer_id.is_empty() && !r.asin.is_empty() => {
                ds.interactions.push(RawInteraction {
                    user: r.reviewer_id,
                    item: r.asin,
                    timestamp: r.unix_review_time,
                    rating: r.overall.filter(|x| x.is_finite()),
                })
            }
            Ok(_) => bad.row(line, "expected non-empty `reviewerID` and `asin`")?,
            Err(e) => bad.row(
                line,
                format!("expected a JSON review with reviewerID, asin, unixReviewTime: {e}"),
            )?,
        }
    }
    ds.skipped_rows += bad.finish();
    if let Some(meta) = meta {
        read_meta(meta, opts, &mut ds)?;
        retain_used_items(&mut ds);
    }
    Ok(ds)
}

/// `CDs_and_Vinyl` of `CDs_and_Vinyl_5.json.gz` / `meta_CDs_and_Vinyl.json`.
fn category_of(path: &Path) -> String {
    let base = base_name(path);
    let stem = base.strip_suffix(".json").unwrap_or(base);
    let stem = stem.strip_prefix("meta_").unwrap_or(stem);
    stem.strip_suffix("_5").unwrap_or(stem).to_string()
}

fn read_meta(path: &Path, opts: &ImportOptions, ds: &mut RawDataset) -> Result<()> {
    let mut lines = LineReader::open(path)?;
    let mut bad = BadRows::new(path, opts);
    while let Some((line, bytes)) = lines.next_line()? {
        if is_blank(bytes) {
            continue;
        }
        let value = match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => Ok(v),
            // The 2014 metadata is `str(dict)`; try it only for lines that look like it.
            Err(e) => match utf8(bytes) {
                Ok(text) if text.trim_start().starts_with("{'") => python_literal::parse(text),
                Ok(_) => Err(format!("expected a JSON object: {e}")),
                Err(m) => Err(m),
            },
        };
        let value = match value {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                bad.row(line, "expected a JSON object")?;
                continue;
            }
            Err(message) => {
                bad.row(line, message)?;
                continue;
            }
        };
        let Some(asin) = value
            .get("asin")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        else {
            bad.no_id();
            continue;
        };
        let title = value
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        let path_list = match (value.get("category"), value.get("categories")) {
            (Some(Value::Array(c)), _) => c.clone(),
            (_, Some(Value::Array(lists))) => match lists.first() {
                Some(Value::Array(first)) => first.clone(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let genres = path_list
            .iter()
            .skip(1)
            .filter_map(Value::as_str)
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect();
        insert_item(&mut ds.items, asin.to_string(), RawItem { title, genres });
    }
    ds.skipped_rows += bad.finish();
    Ok(())
}

/// The `meta_<Category>.json(.gz)` beside a reviews file, if any.
fn sibling_meta(reviews: &Path) -> Option<PathBuf> {
    find_file(
        parent_dir(reviews),
        &format!("meta_{}.json", category_of(reviews)),
    )
}

/// [`crate::importers::import`] for Amazon: a reviews file or a directory with one.
pub(crate) fn import_path(path: &Path, opts: &ImportOptions) -> Result<RawDataset> {
    if path.is_file() {
        let meta = sibling_meta(path);
        return read_amazon2018(path, meta.as_deref(), opts);
    }
    let reviews: Vec<String> = list_dir(path)?
        .into_iter()
        .filter(|f| {
            let base = f.strip_suffix(".gz").unwrap_or(f);
            base.ends_with(".json") && !base.starts_with("meta_")
        })
        .collect();
    let file = match reviews.as_slice() {
        [one] => path.join(one),
        [] => {
            return Err(DataError::bad_file(
                path,
                "expected an Amazon reviews file `<Category>.json` (or `.json.gz`) here",
            ))
        }
        _ => {
            return Err(DataError::bad_file(
                path,
                format!(
                    "several reviews files ({}); name the file",
                    reviews.join(", ")
                ),
            ))
        }
    };
    let meta = sibling_meta(&file);
    read_amazon2018(&file, meta.as_deref(), opts)
}
