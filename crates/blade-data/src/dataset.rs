//! The processed dataset: dense ids, a catalogue, one time-ordered sequence per user, and the
//! leave-one-out split with sliding-window training prompts (METHOD.md section 6).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{DataError, ItemId, RawDataset, Result, UserId};

/// One catalogue item after re-indexing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The dataset's original item id (the mapping dense id -> original id).
    pub raw_id: String,
    /// Human-readable title; the original id when the source has none.
    pub title: String,
    /// Indices into [`Catalog::genre_names`], sorted ascending, no repeats.
    pub genres: Vec<u16>,
}

/// The item catalogue: dense ids `0..len()`, titles and genres.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Items indexed by their dense [`ItemId`].
    pub items: Vec<Item>,
    /// Genre (or category) names; an item's `genres` index into this.
    pub genre_names: Vec<String>,
}

/// Settings of [`Dataset::from_raw`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// Keep only interactions with `rating >= min_rating` (interactions without a rating are kept).
    pub min_rating: Option<f32>,
    /// Iteratively drop users and items with fewer than `k_core` interactions (0 or 1: no filter).
    pub k_core: usize,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            min_rating: None,
            k_core: 5,
        }
    }
}

/// A preprocessed dataset: dense ids, catalogue, and each user's time-ordered item sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Short name (`ml-100k`, `synthetic`, ...).
    pub name: String,
    /// The catalogue, restricted to items that survived filtering.
    pub catalog: Catalog,
    /// The dataset's original user ids, indexed by dense [`UserId`].
    pub user_raw_ids: Vec<String>,
    /// Per user, the items in time order (ties broken by file order). No user is empty.
    pub sequences: Vec<Vec<ItemId>>,
    /// The settings this dataset was made with.
    pub preprocess: PreprocessConfig,
}

/// One evaluation case: a user's last `L` items before a held-out target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalCase {
    /// Dense user id.
    pub user: UserId,
    /// The prompt: up to `L` most recent items before the target, oldest first.
    pub history: Vec<ItemId>,
    /// Every item the user interacted with before the target (for history masking), sorted.
    pub seen: Vec<ItemId>,
    /// The held-out item.
    pub target: ItemId,
}

/// One training prompt: a window of up to `L` items and the item that followed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainPrompt {
    /// Dense user id.
    pub user: UserId,
    /// Up to `L` items, oldest first (at least one).
    pub history: Vec<ItemId>,
    /// The next item.
    pub target: ItemId,
}

/// The leave-one-out split of METHOD.md section 6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Maximum prompt length `L` used to build prompts and cases.
    pub max_history: usize,
    /// Per user, the training part of the sequence (all but the last two items).
    pub train_sequences: Vec<Vec<ItemId>>,
    /// Sliding-window prompts over the training sequences.
    pub train: Vec<TrainPrompt>,
    /// One case per user: target = second-to-last item.
    pub valid: Vec<EvalCase>,
    /// One case per user: target = last item (the validation item is part of the history).
    pub test: Vec<EvalCase>,
    /// Per item, its number of occurrences in the training sequences (popularity without leakage).
    pub item_popularity: Vec<u32>,
}

impl Catalog {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the catalogue has no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The item with dense id `id`, if there is one.
    pub fn item(&self, id: ItemId) -> Option<&Item> {
        self.items.get(id as usize)
    }

    /// The title of item `id`, if there is such an item.
    pub fn title(&self, id: ItemId) -> Option<&str> {
        self.item(id).map(|item| item.title.as_str())
    }

    /// The dataset's original id of item `id`, if there is such an item.
    pub fn raw_id(&self, id: ItemId) -> Option<&str> {
        self.item(id).map(|item| item.raw_id.as_str())
    }

    /// Per item (indexed by dense id), its sorted genre indices: the shape the genre-based
    /// metrics (fairness, ILD) take.
    pub fn item_genres(&self) -> Vec<Vec<u16>> {
        self.items.iter().map(|item| item.genres.clone()).collect()
    }
}

/// Counts of interactions left after each preprocessing stage (for messages and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct StageCounts {
    raw: usize,
    rated: usize,
    deduplicated: usize,
    k_core: usize,
}

impl Dataset {
    /// Turns an importer's output into a dataset with dense ids (METHOD.md section 6).
    ///
    /// The steps, in order:
    /// 1. **Rating threshold.** With `cfg.min_rating = Some(r)`, interactions with a rating
    ///    below `r` are dropped; interactions without a rating are kept.
    /// 2. **Time order.** Interactions are sorted by timestamp, stably, so ties keep file order.
    /// 3. **Duplicates.** Of several interactions of the same (user, item) pair only the first in
    ///    that order (earliest timestamp, then first in the file) is kept: a sequence never
    ///    repeats an item.
    /// 4. **k-core.** Users and items with fewer than `cfg.k_core` interactions are dropped, and
    ///    this is repeated until every remaining user and item has at least `k_core`
    ///    (`k_core` 0 or 1: no filtering).
    /// 5. **Dense ids.** Surviving users and items are numbered in the ascending (byte-wise)
    ///    order of their original id strings, so the numbering does not depend on file order
    ///    (`"10"` sorts before `"9"`).
    ///
    /// The catalogue holds exactly the surviving items. An item's title is its metadata title,
    /// or its original id when the title is missing or blank; genre names (trimmed, blank ones
    /// ignored) of the surviving items form a sorted vocabulary, and each item's genres are
    /// sorted indices into it. Items that occur in interactions but have no metadata are kept,
    /// with their id as title and no genres.
    ///
    /// # Errors
    ///
    /// [`DataError::Invalid`] when `min_rating` is NaN, when nothing survives the filters (the
    /// message gives the count after each stage), or when there are more than 65,536 genres.
    pub fn from_raw(raw: &RawDataset, cfg: &PreprocessConfig) -> Result<Dataset> {
        if cfg.min_rating.is_some_and(f32::is_nan) {
            return Err(DataError::Invalid(
                "min_rating is NaN; give a number or no threshold".into(),
            ));
        }
        let interactions = &raw.interactions;
        let mut counts = StageCounts {
            raw: interactions.len(),
            ..StageCounts::default()
        };

        // 1. Rating threshold.
        let mut kept: Vec<usize> = (0..interactions.len())
            .filter(|&i| match (interactions[i].rating, cfg.min_rating) {
                (Some(rating), Some(min)) => rating >= min,
                _ => true,
            })
            .collect();
        counts.rated = kept.len();

        // 2. Time order; `sort_by_key` is stable, so equal timestamps keep file order.
        kept.sort_by_key(|&i| interactions[i].timestamp);

        // 3. Duplicates: the first (user, item) occurrence in time order wins.
        let mut pairs: HashSet<(&str, &str)> = HashSet::with_capacity(kept.len());
        kept.retain(|&i| pairs.insert((&interactions[i].user, &interactions[i].item)));
        drop(pairs);
        counts.deduplicated = kept.len();

        // Intern the ids so that the k-core loop works on integers.
        let mut user_ix: HashMap<&str, usize> = HashMap::new();
        let mut item_ix: HashMap<&str, usize> = HashMap::new();
        let mut user_names: Vec<&str> = Vec::new();
        let mut item_names: Vec<&str> = Vec::new();
        let mut alive: Vec<(usize, usize)> = Vec::with_capacity(kept.len());
        for &i in &kept {
            let user = interactions[i].user.as_str();
            let item = interactions[i].item.as_str();
            let u = *user_ix.entry(user).or_insert_with(|| {
                user_names.push(user);
                user_names.len() - 1
            });
            let it = *item_ix.entry(item).or_insert_with(|| {
                item_names.push(item);
                item_names.len() - 1
            });
            alive.push((u, it));
        }

        // 4. Iterative k-core: removing a user can push an item below k and vice versa.
        if cfg.k_core > 1 {
            let mut rounds = 0usize;
            loop {
                let mut user_count = vec![0usize; user_names.len()];
                let mut item_count = vec![0usize; item_names.len()];
                for &(u, it) in &alive {
                    user_count[u] += 1;
                    item_count[it] += 1;
                }
                let before = alive.len();
                alive
                    .retain(|&(u, it)| user_count[u] >= cfg.k_core && item_count[it] >= cfg.k_core);
                rounds += 1;
                if alive.len() == before {
                    break;
                }
            }
            log::debug!(
                "{}: k-core {} converged after {rounds} rounds",
                raw.name,
                cfg.k_core
            );
        }
        counts.k_core = alive.len();

        if alive.is_empty() {
            return Err(DataError::Invalid(format!(
                "dataset '{}': no interaction survives preprocessing ({} read, {} after the \
                 rating threshold {:?}, {} after removing duplicates, 0 after {}-core filtering); \
                 lower k_core or min_rating, or check the input",
                raw.name, counts.raw, counts.rated, cfg.min_rating, counts.deduplicated, cfg.k_core
            )));
        }

        // 5. Dense ids in original-id order.
        let users: BTreeSet<&str> = alive.iter().map(|&(u, _)| user_names[u]).collect();
        let items: BTreeSet<&str> = alive.iter().map(|&(_, it)| item_names[it]).collect();
        let user_dense: HashMap<&str, UserId> = users
            .iter()
            .enumerate()
            .map(|(d, &name)| (name, d as UserId))
            .collect();
        let item_dense: HashMap<&str, ItemId> = items
            .iter()
            .enumerate()
            .map(|(d, &name)| (name, d as ItemId))
            .collect();

        // `alive` is still in (timestamp, file order), so pushing in order gives sorted sequences.
        let mut sequences: Vec<Vec<ItemId>> = vec![Vec::new(); users.len()];
        for &(u, it) in &alive {
            let user = user_dense[user_names[u]] as usize;
            sequences[user].push(item_dense[item_names[it]]);
        }

        let catalog = build_catalog(raw, &items)?;
        log::info!(
            "{}: {} interactions read, {} after rating threshold, {} after dedup, {} after \
             {}-core: {} users, {} items",
            raw.name,
            counts.raw,
            counts.rated,
            counts.deduplicated,
            counts.k_core,
            cfg.k_core,
            users.len(),
            items.len()
        );
        Ok(Dataset {
            name: raw.name.clone(),
            catalog,
            user_raw_ids: users.iter().map(|s| (*s).to_owned()).collect(),
            sequences,
            preprocess: cfg.clone(),
        })
    }

    /// Number of users (every user has at least one interaction).
    pub fn num_users(&self) -> usize {
        self.sequences.len()
    }

    /// Number of catalogue items.
    pub fn num_items(&self) -> usize {
        self.catalog.len()
    }

    /// Total number of interactions over all users.
    pub fn num_interactions(&self) -> usize {
        self.sequences.iter().map(Vec::len).sum()
    }

    /// Checks the invariants a loaded or hand-built dataset must satisfy: one original id per
    /// user, no empty sequence, item ids inside the catalogue, genre ids inside the vocabulary.
    ///
    /// # Errors
    ///
    /// [`DataError::Invalid`] naming the first violation found.
    pub fn validate(&self) -> Result<()> {
        if self.user_raw_ids.len() != self.sequences.len() {
            return Err(DataError::Invalid(format!(
                "{} user ids but {} sequences",
                self.user_raw_ids.len(),
                self.sequences.len()
            )));
        }
        let n_items = self.catalog.len();
        for (user, seq) in self.sequences.iter().enumerate() {
            if seq.is_empty() {
                return Err(DataError::Invalid(format!(
                    "user {user} has an empty sequence"
                )));
            }
            if let Some(&bad) = seq.iter().find(|&&item| item as usize >= n_items) {
                return Err(DataError::Invalid(format!(
                    "user {user} has item {bad}, but the catalogue has {n_items} items"
                )));
            }
        }
        let n_genres = self.catalog.genre_names.len();
        for (id, item) in self.catalog.items.iter().enumerate() {
            if let Some(&bad) = item.genres.iter().find(|&&g| g as usize >= n_genres) {
                return Err(DataError::Invalid(format!(
                    "item {id} ({}) has genre {bad}, but there are {n_genres} genre names",
                    item.raw_id
                )));
            }
        }
        Ok(())
    }

    /// Writes the dataset as JSON to `path`, atomically: a temporary file in the same folder is
    /// written, flushed and renamed over `path`, so a reader never sees half a file. Missing
    /// parent folders are created.
    ///
    /// # Errors
    ///
    /// [`DataError::Io`] naming the file when it cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = serde_json::to_vec(self)
            .map_err(|e| DataError::bad_file(path, format!("cannot serialise the dataset: {e}")))?;
        write_atomic(path, &json)
    }

    /// Reads a dataset written by [`Dataset::save`] and checks it with [`Dataset::validate`].
    ///
    /// # Errors
    ///
    /// [`DataError::Io`] when the file cannot be read, [`DataError::BadFile`] naming the file
    /// when it is not a dataset JSON or breaks an invariant.
    pub fn load(path: impl AsRef<Path>) -> Result<Dataset> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let dataset: Dataset = serde_json::from_str(&text).map_err(|e| {
            DataError::bad_file(path, format!("expected a blade dataset (JSON): {e}"))
        })?;
        dataset
            .validate()
            .map_err(|e| DataError::bad_file(path, format!("inconsistent dataset: {e}")))?;
        Ok(dataset)
    }

    /// The leave-one-out split of METHOD.md section 6 with prompts of at most `max_history`
    /// items (`L`; a value of 0 is treated as 1, since a prompt needs an item).
    ///
    /// For every user with at least 3 items, with sequence `s` of length `n`:
    /// - training sequence: `s[..n-2]`;
    /// - validation case: target `s[n-2]`, history the last `L` items of `s[..n-2]`, seen the
    ///   sorted distinct items of `s[..n-2]`;
    /// - test case: target `s[n-1]`, history the last `L` items of `s[..n-1]` (so it includes
    ///   the validation item), seen the sorted distinct items of `s[..n-1]`;
    /// - training prompts: for every position `t >= 1` of the training sequence, history
    ///   `train[max(0, t-L)..t]` and target `train[t]`.
    ///
    /// Users with fewer than 3 items are skipped entirely: they get no case and no prompt, their
    /// training sequence is empty and they do not count in `item_popularity` (their items stay
    /// in the catalogue). `train_sequences` is indexed by [`UserId`]; `valid` and `test` are in
    /// user order; `item_popularity` has one entry per catalogue item.
    pub fn leave_one_out(&self, max_history: usize) -> Split {
        let l = max_history.max(1);
        let mut split = Split {
            max_history: l,
            train_sequences: Vec::with_capacity(self.sequences.len()),
            train: Vec::new(),
            valid: Vec::new(),
            test: Vec::new(),
            item_popularity: vec![0; self.catalog.len()],
        };
        for (user, seq) in self.sequences.iter().enumerate() {
            let n = seq.len();
            if n < 3 {
                split.train_sequences.push(Vec::new());
                continue;
            }
            let user = user as UserId;
            let train = &seq[..n - 2];
            for t in 1..train.len() {
                split.train.push(TrainPrompt {
                    user,
                    history: train[t.saturating_sub(l)..t].to_vec(),
                    target: train[t],
                });
            }
            for &item in train {
                if let Some(count) = split.item_popularity.get_mut(item as usize) {
                    *count += 1;
                }
            }
            split.valid.push(eval_case(user, train, seq[n - 2], l));
            split
                .test
                .push(eval_case(user, &seq[..n - 1], seq[n - 1], l));
            split.train_sequences.push(train.to_vec());
        }
        split
    }
}

/// The case "predict `target` after `before`": the last `l` items as history, all as seen.
fn eval_case(user: UserId, before: &[ItemId], target: ItemId, l: usize) -> EvalCase {
    let mut seen = before.to_vec();
    seen.sort_unstable();
    seen.dedup();
    EvalCase {
        user,
        history: before[before.len().saturating_sub(l)..].to_vec(),
        seen,
        target,
    }
}

/// The catalogue of the surviving `items` (in dense-id order) from the raw metadata.
fn build_catalog(raw: &RawDataset, items: &BTreeSet<&str>) -> Result<Catalog> {
    let genre_lists: Vec<Vec<&str>> = items
        .iter()
        .map(|id| {
            raw.items.get(*id).map_or_else(Vec::new, |meta| {
                meta.genres
                    .iter()
                    .map(|g| g.trim())
                    .filter(|g| !g.is_empty())
                    .collect()
            })
        })
        .collect();
    let vocabulary: BTreeSet<&str> = genre_lists.iter().flatten().copied().collect();
    if vocabulary.len() > usize::from(u16::MAX) + 1 {
        return Err(DataError::Invalid(format!(
            "dataset '{}' has {} distinct genres; at most 65536 are supported",
            raw.name,
            vocabulary.len()
        )));
    }
    let genre_ix: BTreeMap<&str, u16> = vocabulary
        .iter()
        .enumerate()
        .map(|(i, &g)| (g, i as u16))
        .collect();
    let catalog_items = items
        .iter()
        .zip(&genre_lists)
        .map(|(&id, genres)| {
            let title = raw
                .items
                .get(id)
                .map(|meta| meta.title.trim())
                .filter(|t| !t.is_empty())
                .unwrap_or(id);
            let mut genres: Vec<u16> = genres.iter().map(|g| genre_ix[g]).collect();
            genres.sort_unstable();
            genres.dedup();
            Item {
                raw_id: id.to_owned(),
                title: title.to_owned(),
                genres,
            }
        })
        .collect();
    Ok(Catalog {
        items: catalog_items,
        genre_names: vocabulary.into_iter().map(str::to_owned).collect(),
    })
}

/// Writes `bytes` to `path` through a synced temporary sibling file and a rename, so that no
/// half-written file is ever left at `path`; missing parent folders are created.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] for content that is streamed rather than held in memory: `fill` writes the
/// file through a buffered writer into the temporary sibling, which is synced and renamed onto
/// `path` only if `fill` succeeds (and removed otherwise).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, e))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| DataError::bad_file(path, "expected a file path, not a folder"))?;
    // unique per call, not only per process: two threads of one process (`blade compare
    // --jobs 2` sharing an SFT run's reference cache) may write the same file at once, and a
    // shared temporary name let one rename the other's half-written file away
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = parent.join(format!(
        ".{}.tmp-{}-{call}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        fill(&mut file)?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DataError::io(path, e)
    })?;
    // flush the folder's entry too, so the rename survives a power loss; platforms that cannot
    // open a folder (Windows) keep the atomic rename without this
    if let Ok(dir) = std::fs::File::open(&parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RawInteraction, RawItem};

    fn inter(user: &str, item: &str, timestamp: i64) -> RawInteraction {
        RawInteraction {
            user: user.into(),
            item: item.into(),
            timestamp,
            rating: None,
        }
    }

    #[test]
    fn concurrent_atomic_writes_of_one_file_all_succeed() {
        // threads of one process writing the same path (compare's jobs sharing a reference
        // cache): each write must land whole, none may fail, nothing temporary may stay
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        let contents: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 200_000]).collect();
        for _ in 0..5 {
            std::thread::scope(|s| {
                let handles: Vec<_> = contents
                    .iter()
                    .map(|c| s.spawn(|| write_atomic(&path, c)))
                    .collect();
                for h in handles {
                    h.join().unwrap().expect("every concurrent write succeeds");
                }
            });
            let read = std::fs::read(&path).unwrap();
            assert!(contents.contains(&read), "the file is one write, whole");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cache.json")]);
    }

    #[test]
    fn duplicates_keep_the_earliest() {
        let raw = RawDataset {
            name: "t".into(),
            // u's "b" appears at t=5 and t=1: the t=1 copy wins, so b comes before a (t=2).
            interactions: vec![inter("u", "b", 5), inter("u", "a", 2), inter("u", "b", 1)],
            ..RawDataset::default()
        };
        let cfg = PreprocessConfig {
            min_rating: None,
            k_core: 0,
        };
        let ds = Dataset::from_raw(&raw, &cfg).expect("valid");
        // Dense ids: a = 0, b = 1.
        assert_eq!(ds.sequences, vec![vec![1, 0]]);
    }

    #[test]
    fn metadata_titles_and_genres() {
        let mut raw = RawDataset {
            name: "t".into(),
            interactions: vec![inter("u", "x", 1), inter("u", "y", 2), inter("u", "z", 3)],
            ..RawDataset::default()
        };
        raw.items.insert(
            "x".into(),
            RawItem {
                title: "Ex".into(),
                genres: vec!["Rock".into(), " Jazz ".into(), "Rock".into(), "".into()],
            },
        );
        raw.items.insert(
            "y".into(),
            RawItem {
                title: "  ".into(),
                genres: vec!["Blues".into()],
            },
        );
        // "w" has metadata but no interaction: it must not reach the catalogue or vocabulary.
        raw.items.insert(
            "w".into(),
            RawItem {
                title: "W".into(),
                genres: vec!["Pop".into()],
            },
        );
        let cfg = PreprocessConfig {
            min_rating: None,
            k_core: 1,
        };
        let ds = Dataset::from_raw(&raw, &cfg).expect("valid");
        assert_eq!(ds.catalog.genre_names, vec!["Blues", "Jazz", "Rock"]);
        assert_eq!(ds.catalog.item_genres(), vec![vec![1, 2], vec![0], vec![]]);
        assert_eq!(ds.catalog.title(0), Some("Ex"));
        assert_eq!(ds.catalog.title(1), Some("y"));
        assert_eq!(ds.catalog.title(2), Some("z"));
        assert_eq!(ds.catalog.title(3), None);
        ds.validate().expect("consistent");
    }

    #[test]
    fn validate_catches_out_of_range_items() {
        let mut ds = Dataset {
            name: "t".into(),
            catalog: Catalog {
                items: vec![Item {
                    raw_id: "a".into(),
                    title: "a".into(),
                    genres: vec![],
                }],
                genre_names: vec![],
            },
            user_raw_ids: vec!["u".into()],
            sequences: vec![vec![0]],
            preprocess: PreprocessConfig::default(),
        };
        ds.validate().expect("consistent");
        ds.sequences[0].push(1);
        assert!(ds.validate().is_err());
        ds.sequences[0] = vec![];
        assert!(ds.validate().is_err());
    }

    #[test]
    fn max_history_zero_is_one() {
        let ds = Dataset {
            name: "t".into(),
            catalog: Catalog {
                items: (0..4)
                    .map(|i| Item {
                        raw_id: i.to_string(),
                        title: i.to_string(),
                        genres: vec![],
                    })
                    .collect(),
                genre_names: vec![],
            },
            user_raw_ids: vec!["u".into()],
            sequences: vec![vec![0, 1, 2, 3]],
            preprocess: PreprocessConfig::default(),
        };
        let split = ds.leave_one_out(0);
        assert_eq!(split.max_history, 1);
        assert_eq!(split.train.len(), 1);
        assert_eq!(split.train[0].history, vec![0]);
        assert_eq!(split.test[0].history, vec![2]);
    }
}
