//! The original GroupLens MovieLens files.
//!
//! - ML-100K: `u.data` (`user\titem\trating\ttimestamp`) and `u.item` (24 `|`-separated fields:
//!   id, title, release date, video release date, IMDb URL, then 19 genre flags in the order of
//!   [`ML100K_GENRES`]).
//! - ML-1M: `ratings.dat` (`UserID::MovieID::Rating::Timestamp`) and `movies.dat`
//!   (`MovieID::Title::Genres`, genres `|`-separated).
//!
//! The item files are ISO-8859-1 (latin-1), so they are decoded byte by byte; titles keep their
//! year, as written (`Toy Story (1995)`).

use std::path::Path;

use super::{
    find_file, insert_item, is_blank, latin1, parse_epoch, parse_rating, require_file,
    retain_used_items, utf8, BadRows, ImportOptions, LineReader,
};
use crate::{RawDataset, RawInteraction, RawItem, Result};

/// The genres of ML-100K's `u.item` flags (and of `u.genre`), in column order.
pub const ML100K_GENRES: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// Reads ML-100K from a directory holding `u.data` and (used when present) `u.item`.
pub fn read_ml100k_dir(dir: &Path, opts: &ImportOptions) -> Result<RawDataset> {
    let data = require_file(dir, "u.data")?;
    let item = find_file(dir, "u.item");
    read_ml100k(&data, item.as_deref(), opts)
}

/// Reads ML-100K's `u.data` and, optionally, `u.item`.
pub fn read_ml100k(
    u_data: &Path,
    u_item: Option<&Path>,
    opts: &ImportOptions,
) -> Result<RawDataset> {
    let mut ds = RawDataset {
        name: "ml-100k".to_string(),
        ..RawDataset::default()
    };
    read_ratings(u_data, opts, &mut ds, |text| {
        let fields: Vec<&str> = text.split('\t').collect();
        match fields.as_slice() {
            [u, i, r, t] => Ok([*u, *i, *r, *t]),
            _ => Err(format!(
                "expected 4 tab-separated fields (user, item, rating, timestamp), found {}",
                fields.len()
            )),
        }
    })?;
    if let Some(path) = u_item {
        read_lines_latin1(path, opts, &mut ds, parse_u_item)?;
        retain_used_items(&mut ds);
    }
    Ok(ds)
}

/// Reads ML-1M from a directory holding `ratings.dat` and (used when present) `movies.dat`.
pub fn read_ml1m_dir(dir: &Path, opts: &ImportOptions) -> Result<RawDataset> {
    let ratings = require_file(dir, "ratings.dat")?;
    let movies = find_file(dir, "movies.dat");
    read_ml1m(&ratings, movies.as_deref(), opts)
}

/// Reads ML-1M's `ratings.dat` and, optionally, `movies.dat`.
pub fn read_ml1m(
    ratings: &Path,
    movies: Option<&Path>,
    opts: &ImportOptions,
) -> Result<RawDataset> {
    let mut ds = RawDataset {
        name: "ml-1m".to_string(),
        ..RawDataset::default()
    };
    read_ratings(ratings, opts, &mut ds, |text| {
        let fields: Vec<&str> = text.split("::").collect();
        match fields.as_slice() {
            [u, i, r, t] => Ok([*u, *i, *r, *t]),
            _ => Err(format!(
                "expected 4 `::`-separated fields (UserID::MovieID::Rating::Timestamp), found {}",
                fields.len()
            )),
        }
    })?;
    if let Some(path) = movies {
        read_lines_latin1(path, opts, &mut ds, parse_movies_dat)?;
        retain_used_items(&mut ds);
    }
    Ok(ds)
}

/// Reads a ratings file whose rows `split` turns into `[user, item, rating, timestamp]`.
fn read_ratings(
    path: &Path,
    opts: &ImportOptions,
    ds: &mut RawDataset,
    split: impl Fn(&str) -> std::result::Result<[&str; 4], String>,
) -> Result<()> {
    let mut lines = LineReader::open(path)?;
    let mut bad = BadRows::new(path, opts);
    while let Some((line, bytes)) = lines.next_line()? {
        if is_blank(bytes) {
            continue;
        }
        let parsed = utf8(bytes).and_then(|text| {
            let [user, item, rating, timestamp] = split(text)?;
            let (user, item) = (user.trim(), item.trim());
            if user.is_empty() || item.is_empty() {
                return Err("expected a non-empty user id and item id".to_string());
            }
            Ok(RawInteraction {
                user: user.to_string(),
                item: item.to_string(),
                timestamp: parse_epoch(timestamp)?,
                rating: Some(parse_rating(rating)?),
            })
        });
        match parsed {
            Ok(interaction) => ds.interactions.push(interaction),
            Err(message) => bad.row(line, message)?,
        }
    }
    ds.skipped_rows += bad.finish();
    Ok(())
}

/// Reads a latin-1 item file whose rows `parse` turns into `(id, item)`.
fn read_lines_latin1(
    path: &Path,
    opts: &ImportOptions,
    ds: &mut RawDataset,
    parse: fn(&str) -> std::result::Result<(String, RawItem), String>,
) -> Result<()> {
    let mut lines = LineReader::open(path)?;
    let mut bad = BadRows::new(path, opts);
    while let Some((line, bytes)) = lines.next_line()? {
        if is_blank(bytes) {
            continue;
        }
        match parse(&latin1(bytes)) {
            Ok((id, item)) => insert_item(&mut ds.items, id, item),
            Err(message) => bad.row(line, message)?,
        }
    }
    ds.skipped_rows += bad.finish();
    Ok(())
}

/// One row of `u.item`.
fn parse_u_item(text: &str) -> std::result::Result<(String, RawItem), String> {
    let fields: Vec<&str> = text.split('|').collect();
    if fields.len() != 5 + ML100K_GENRES.len() {
        return Err(format!(
            "expected 24 `|`-separated fields (id|title|release date|video release date|URL|19 \
             genre flags), found {}",
            fields.len()
        ));
    }
    let id = fields[0].trim();
    if id.is_empty() {
        return Err("expected a non-empty movie id".to_string());
    }
    let mut genres = Vec::new();
    for (flag, genre) in fields[5..].iter().zip(ML100K_GENRES) {
        match flag.trim() {
            "1" => genres.push(genre.to_string()),
            "0" => {}
            other => {
                return Err(format!(
                    "expected a genre flag 0 or 1 for {genre}, found `{other}`"
                ))
            }
        }
    }
    let title = fields[1].trim().to_string();
    Ok((id.to_string(), RawItem { title, genres }))
}

/// One row of `movies.dat`; the title is everything between the first and the last `::`.
fn parse_movies_dat(text: &str) -> std::result::Result<(String, RawItem), String> {
    let (Some((id, rest)), true) = (text.split_once("::"), text.matches("::").count() >= 2) else {
        return Err("expected 3 `::`-separated fields (MovieID::Title::Genres)".to_string());
    };
    let (title, genres) = rest.rsplit_once("::").unwrap_or((rest, ""));
    let id = id.trim();
    if id.is_empty() {
        return Err("expected a non-empty movie id".to_string());
    }
    let genres = genres
        .split('|')
        .map(str::trim)
        .filter(|g| !g.is_empty() && *g != "(no genres listed)")
        .map(str::to_string)
        .collect();
    Ok((
        id.to_string(),
        RawItem {
            title: title.trim().to_string(),
            genres,
        },
    ))
}
