//! Experiments with blade, as library code: run folders and their manifest ([`run`]), the data
//! settings a run records ([`data`]), multi-seed comparisons ([`compare`]), tables and pictures.
//! The `blade` command line parses arguments and prints; what it runs lives here, so a program
//! can run the same experiments (on an item-level or an LLM policy) without the CLI.

pub mod compare;
pub mod data;
pub mod plot;
pub mod run;
pub mod table;

pub use compare::{compare, CompareOutcome, CompareSpec};
pub use data::DataSpec;
pub use run::{align_run, model_dir, open_run, Checkpoint, OpenedRun, RunKind, RunManifest};
pub use table::report_table;
