//! Readers of public dataset formats; each returns a [`crate::RawDataset`].
//!
//! Every reader takes the paths of its files and an [`ImportOptions`]. Files whose name ends in
//! `.gz` are decompressed transparently. A malformed row is a [`DataError::BadRow`] naming the
//! file, the 1-based line and what was expected; with [`ImportOptions::skip_bad_rows`] it is
//! logged (`log::warn`) and counted in [`RawDataset::skipped_rows`] instead. Blank lines are
//! ignored.
//!
//! Conventions shared by all readers:
//! - interactions are kept in file order; ids are the dataset's own strings;
//! - item metadata is kept only for items that occur in the interactions (the metadata dumps of
//!   Amazon, Steam and Goodreads describe millions of items), and the first record of an id wins;
//! - a metadata record that parses but has no item id describes nothing and is ignored (one
//!   summary warning); this happens in the real `steam_games.json`.
//!
//! [`import`] picks the reader for a [`Format`] and finds the standard file names in a directory.

pub mod amazon;
pub mod generic_csv;
pub mod goodreads;
pub mod movielens;
pub(crate) mod python_literal;
pub mod recbole;
pub mod steam;
pub(crate) mod time;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use amazon::read_amazon2018;
pub use generic_csv::read_csv;
pub use goodreads::read_goodreads;
pub use movielens::{read_ml100k, read_ml100k_dir, read_ml1m, read_ml1m_dir, ML100K_GENRES};
pub use recbole::{read_recbole, read_recbole_dir};
pub use steam::read_steam;

use crate::{DataError, RawDataset, RawItem, Result};

/// Settings shared by all importers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Skip (and count) malformed rows instead of failing on the first one.
    pub skip_bad_rows: bool,
}

/// The dataset formats [`import`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// RecBole atomic files (`<name>.inter`, optional `.item` / `.user`).
    RecBole,
    /// The original MovieLens-100K files (`u.data`, `u.item`).
    MovieLens100k,
    /// The original MovieLens-1M files (`ratings.dat`, `movies.dat`).
    MovieLens1m,
    /// Amazon Reviews 2018 JSON lines (reviews, optional `meta_*.json`).
    Amazon2018,
    /// UCSD Steam reviews and games (Python-literal lines).
    Steam,
    /// UCSD Goodreads interactions and books (JSON lines).
    Goodreads,
    /// Generic CSV: interactions (`user,item,timestamp[,rating]`), optional items.
    Csv,
}

impl Format {
    /// Every format, in documentation order.
    pub const ALL: [Format; 7] = [
        Format::RecBole,
        Format::MovieLens100k,
        Format::MovieLens1m,
        Format::Amazon2018,
        Format::Steam,
        Format::Goodreads,
        Format::Csv,
    ];

    /// The canonical name, as accepted by [`FromStr`] and printed by [`fmt::Display`].
    pub fn name(self) -> &'static str {
        match self {
            Format::RecBole => "recbole",
            Format::MovieLens100k => "ml-100k",
            Format::MovieLens1m => "ml-1m",
            Format::Amazon2018 => "amazon",
            Format::Steam => "steam",
            Format::Goodreads => "goodreads",
            Format::Csv => "csv",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = DataError;

    /// Canonical names plus a few aliases (`movielens-100k`, `amazon2018`, ...), case-insensitive.
    fn from_str(s: &str) -> Result<Self> {
        let format = match s.trim().to_ascii_lowercase().as_str() {
            "recbole" | "atomic" => Format::RecBole,
            "ml-100k" | "ml100k" | "movielens-100k" => Format::MovieLens100k,
            "ml-1m" | "ml1m" | "movielens-1m" => Format::MovieLens1m,
            "amazon" | "amazon2018" | "amazon-2018" => Format::Amazon2018,
            "steam" => Format::Steam,
            "goodreads" => Format::Goodreads,
            "csv" => Format::Csv,
            _ => {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                return Err(DataError::Invalid(format!(
                    "unknown dataset format `{s}`; expected one of {}",
                    names.join(", ")
                )));
            }
        };
        Ok(format)
    }
}

/// Imports the dataset at `path` in `format`.
///
/// What `path` may be, per format (`X` may also be `X.gz`):
/// - `recbole`: a directory holding `<name>.inter` (`<name>` = the directory's name, or else
///   the only `*.inter` file there) and optionally `<name>.item` / `<name>.user`; or the
///   `.inter` file itself, its siblings being used the same way;
/// - `ml-100k`: the directory holding `u.data` (and `u.item`, used when present);
/// - `ml-1m`: the directory holding `ratings.dat` (and `movies.dat`, used when present);
/// - `amazon`: a reviews file `<Category>.json` (or `<Category>_5.json`), its sibling
///   `meta_<Category>.json` being used when present; or a directory holding exactly one reviews
///   file and optionally its `meta_*.json`;
/// - `steam`: a directory holding `steam_reviews.json` (or `australian_user_reviews.json`) and
///   optionally `steam_games.json`; or the reviews file, with its sibling `steam_games.json`;
/// - `goodreads`: a directory holding one `goodreads_interactions_<genre>.json` and optionally
///   `goodreads_books_<genre>.json` or `goodreads_books.json`; or the interactions file, with
///   those siblings; all interactions are kept (see [`read_goodreads`] for `is_read` only);
/// - `csv`: a directory holding `interactions.csv` and optionally `items.csv`; or an
///   interactions CSV file alone.
pub fn import(format: Format, path: &Path, opts: &ImportOptions) -> Result<RawDataset> {
    match format {
        Format::RecBole => recbole::import_path(path, opts),
        Format::MovieLens100k => read_ml100k_dir(path, opts),
        Format::MovieLens1m => read_ml1m_dir(path, opts),
        Format::Amazon2018 => amazon::import_path(path, opts),
        Format::Steam => steam::import_path(path, opts),
        Format::Goodreads => goodreads::import_path(path, opts),
        Format::Csv => generic_csv::import_path(path, opts),
    }
}

/// Parses one Python literal (`str(dict)` as in the Steam files: dicts, lists, tuples, strings,
/// numbers, `True`/`False`/`None`) into JSON; the error says what was expected where.
///
/// Exposed for the fuzz harnesses (`crates/blade-fuzz`); the importers call it per line.
#[doc(hidden)]
pub fn parse_python_literal(text: &str) -> std::result::Result<serde_json::Value, String> {
    python_literal::parse(text)
}

/// Opens `path` for reading, decompressing it when its name ends in `.gz`.
pub(crate) fn open(path: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let is_gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    Ok(if is_gz {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(file)
    })
}

/// Reads a file line by line as bytes, with 1-based line numbers, without the line ending and
/// (on line 1) without a UTF-8 byte-order mark.
pub(crate) struct LineReader {
    path: PathBuf,
    reader: BufReader<Box<dyn Read>>,
    buf: Vec<u8>,
    line: usize,
}

impl LineReader {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 16, open(path)?),
            buf: Vec::new(),
            line: 0,
        })
    }

    /// The next line and its number, or `None` at the end of the file.
    pub(crate) fn next_line(&mut self) -> Result<Option<(usize, &[u8])>> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| DataError::io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let mut bytes = &self.buf[..];
        if self.line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        Ok(Some((self.line, bytes)))
    }
}

/// How many warnings about individual skipped rows are logged per file before only a summary.
const MAX_ROW_WARNINGS: usize = 10;

/// Turns malformed rows of one file into errors, or counts and logs them with `skip_bad_rows`.
pub(crate) struct BadRows {
    path: PathBuf,
    skip: bool,
    skipped: usize,
    no_id: usize,
}

impl BadRows {
    pub(crate) fn new(path: &Path, opts: &ImportOptions) -> Self {
        Self {
            path: path.to_path_buf(),
            skip: opts.skip_bad_rows,
            skipped: 0,
            no_id: 0,
        }
    }

    /// Reports a malformed row: an error, or `Ok(())` after counting it.
    pub(crate) fn row(&mut self, line: usize, message: impl Into<String>) -> Result<()> {
        let err = DataError::bad_row(&self.path, line, message);
        if !self.skip {
            return Err(err);
        }
        self.skipped += 1;
        if self.skipped <= MAX_ROW_WARNINGS {
            log::warn!("skipping malformed row: {err}");
        }
        Ok(())
    }

    /// Notes a metadata record without an item id (ignored, see the module documentation).
    pub(crate) fn no_id(&mut self) {
        self.no_id += 1;
    }

    /// Logs the summary and returns the number of skipped rows.
    pub(crate) fn finish(self) -> usize {
        if self.skipped > 0 {
            log::warn!(
                "{}: skipped {} malformed rows",
                self.path.display(),
                self.skipped
            );
        }
        if self.no_id > 0 {
            log::warn!(
                "{}: ignored {} metadata records without an item id",
                self.path.display(),
                self.no_id
            );
        }
        self.skipped
    }
}

/// The line as UTF-8 text, or a bad-row message.
pub(crate) fn utf8(bytes: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("invalid UTF-8 ({e})"))
}

/// Decodes ISO-8859-1 (latin-1): every byte is the code point of the same value.
pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// True for lines with nothing but whitespace.
pub(crate) fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// Parses an explicit rating (finite number).
pub(crate) fn parse_rating(field: &str) -> std::result::Result<f32, String> {
    match field.trim().parse::<f32>() {
        Ok(r) if r.is_finite() => Ok(r),
        _ => Err(format!("expected a numeric rating, found `{field}`")),
    }
}

/// Parses a Unix timestamp given as an integer or a float (truncated to whole seconds).
pub(crate) fn parse_epoch(field: &str) -> std::result::Result<i64, String> {
    let f = field.trim();
    if let Ok(t) = f.parse::<i64>() {
        return Ok(t);
    }
    match f.parse::<f64>() {
        Ok(t) if t.is_finite() && t.abs() < 9.0e18 => Ok(t.floor() as i64),
        _ => Err(format!("expected a Unix timestamp, found `{field}`")),
    }
}

/// Keeps only the metadata of items that occur in the interactions.
pub(crate) fn retain_used_items(ds: &mut RawDataset) {
    let used: HashSet<&str> = ds.interactions.iter().map(|i| i.item.as_str()).collect();
    ds.items.retain(|id, _| used.contains(id.as_str()));
}

/// Inserts `item` unless the id already has metadata (the first record wins).
pub(crate) fn insert_item(items: &mut BTreeMap<String, RawItem>, id: String, item: RawItem) {
    items.entry(id).or_insert(item);
}

/// `dir/name` or `dir/name.gz`, whichever exists (the plain file first).
pub(crate) fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Some(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    gz.is_file().then_some(gz)
}

/// Like [`find_file`], but a missing file is an error naming what was looked for.
pub(crate) fn require_file(dir: &Path, name: &str) -> Result<PathBuf> {
    find_file(dir, name).ok_or_else(|| {
        DataError::bad_file(
            dir,
            format!("expected a file `{name}` (or `{name}.gz`) here"),
        )
    })
}

/// The file name without a `.gz` suffix (empty when the path has no UTF-8 file name).
pub(crate) fn base_name(path: &Path) -> &str {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.strip_suffix(".gz").unwrap_or(name)
}

/// The names of the files in `dir`, sorted (for deterministic discovery).
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        if entry.path().is_file() {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The directory containing `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
