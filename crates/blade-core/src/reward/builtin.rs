//! The built-in list rewards (METHOD.md section 5), thin adapters over `blade-metrics`, and
//! their weighted sum.

use std::fmt::Write as _;

use blade_data::{ItemId, UserId};
use blade_metrics::{
    hit_at_k, ild_cosine, ild_jaccard, list_dgu, list_mgu, mrr_at_k, ndcg_at_k, recall_at_k,
};

use super::{ListReward, RewardContext};

/// Declares a cut-off reward `$ty { k }` named `$token@k` that calls `$metric(list, targets, k)`.
macro_rules! at_k_reward {
    ($(#[$doc:meta])* $ty:ident, $token:literal, $metric:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty {
            /// The cut-off: only the first `k` items of the list count.
            pub k: usize,
        }

        impl ListReward for $ty {
            fn name(&self) -> String {
                format!(concat!($token, "@{}"), self.k)
            }

            fn score(&self, ctx: &RewardContext<'_>, list: &[ItemId]) -> f32 {
                $metric(list, ctx.targets, self.k) as f32
            }
        }
    };
}

at_k_reward!(
    /// `ndcg@K`: NDCG@K with binary gains against the targets, IDCG over `min(|targets|, K)`.
    Ndcg,
    "ndcg",
    ndcg_at_k
);
at_k_reward!(
    /// `recall@K`: the share of the targets found in the first K items.
    Recall,
    "recall",
    recall_at_k
);
at_k_reward!(
    /// `mrr@K`: `1 / rank` of the first target within the first K items, else 0.
    Mrr,
    "mrr",
    mrr_at_k
);
at_k_reward!(
    /// `hit@K`: 1 if any target is within the first K items, else 0.
    Hit,
    "hit",
    hit_at_k
);

/// `fairness`: `-MGU` of the list's genre shares against the user's own history's shares
/// (0 is perfectly calibrated; more negative is less fair).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fairness;

impl ListReward for Fairness {
    fn name(&self) -> String {
        "fairness".into()
    }

    fn score(&self, ctx: &RewardContext<'_>, list: &[ItemId]) -> f32 {
        let c = ctx.catalog;
        -list_mgu(list, ctx.history, &c.item_genres, c.n_genres) as f32
    }
}

/// `fairness_dgu`: `-DGU` (spread of the genre-share gaps) against the user's own history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dgu;

impl ListReward for Dgu {
    fn name(&self) -> String {
        "fairness_dgu".into()
    }

    fn score(&self, ctx: &RewardContext<'_>, list: &[ItemId]) -> f32 {
        let c = ctx.catalog;
        -list_dgu(list, ctx.history, &c.item_genres, c.n_genres) as f32
    }
}

/// The item distance [`Diversity`] averages over pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IldDistance {
    /// `1 - Jaccard` of the genre sets (`ild`).
    #[default]
    Jaccard,
    /// `1 - cosine` of the item embeddings (`ild_cos`); needs [`super::CatalogInfo::embeddings`].
    Cosine,
}

/// `ild` / `ild_cos`: intra-list diversity, the mean pairwise distance of the list's items.
///
/// With [`IldDistance::Cosine`] and a catalogue without embeddings the score is NaN, which
/// [`super::score_checked`] reports; [`super::parse_reward`] refuses that combination up front.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Diversity {
    /// Which item distance to average.
    pub distance: IldDistance,
}

impl ListReward for Diversity {
    fn name(&self) -> String {
        match self.distance {
            IldDistance::Jaccard => "ild".into(),
            IldDistance::Cosine => "ild_cos".into(),
        }
    }

    fn score(&self, ctx: &RewardContext<'_>, list: &[ItemId]) -> f32 {
        match (self.distance, &ctx.catalog.embeddings) {
            (IldDistance::Jaccard, _) => ild_jaccard(list, &ctx.catalog.item_genres) as f32,
            (IldDistance::Cosine, Some(emb)) => ild_cosine(list, emb) as f32,
            (IldDistance::Cosine, None) => f32::NAN,
        }
    }
}

/// `tail`: the share of the list's entries outside the popular head (top 20% by training
/// popularity); ids unknown to the catalogue count as tail, an empty list scores 0.
///
/// Same definition as [`blade_metrics::tail_share`] on one list, but reads the precomputed
/// [`super::CatalogInfo::head`] instead of re-sorting the catalogue on every call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailExposure;

impl ListReward for TailExposure {
    fn name(&self) -> String {
        "tail".into()
    }

    fn score(&self, ctx: &RewardContext<'_>, list: &[ItemId]) -> f32 {
        if list.is_empty() {
            return 0.0;
        }
        let head = &ctx.catalog.head;
        let tail = list
            .iter()
            .filter(|&&i| !head.get(i as usize).copied().unwrap_or(false))
            .count();
        (tail as f64 / list.len() as f64) as f32
    }
}

/// `taste@K`: a dense reward with a known optimum, from the synthetic generator's own user
/// tastes ([`super::CatalogInfo::user_tastes`]).
///
/// An item's affinity for user `u` is the mean of `taste_u` over the item's genres (how the
/// generator weighs items, 0 for an item without genres). The reward is the DCG of the list's
/// affinities over the first K slots, divided by the DCG of the best list: the K items not in
/// the prompt's history with the highest affinities, in that order. With history masking the
/// best list scores exactly 1 and every list a graded value in `[0, 1]`; an unmasked list may
/// repeat history items and exceed 1. The per-user item orders are sorted once, at
/// construction.
///
/// Without a user in the context, or a user the catalogue has no taste for, the score is NaN,
/// which [`super::score_checked`] reports; [`super::parse_reward`] refuses a catalogue without
/// tastes up front.
#[derive(Debug, Clone, PartialEq)]
pub struct Taste {
    /// The cut-off.
    pub k: usize,
    /// Per user, the item affinities (indexed by item id).
    affinity: Vec<Vec<f32>>,
    /// Per user, the item ids by affinity, highest first (ties by id).
    order: Vec<Vec<ItemId>>,
}

impl Taste {
    /// The reward at cut-off `k` over `tastes[u][genre]` and the catalogue's item genres.
    pub fn new(k: usize, tastes: &[Vec<f32>], item_genres: &[Vec<u16>]) -> Self {
        let affinity: Vec<Vec<f32>> = tastes
            .iter()
            .map(|t| {
                item_genres
                    .iter()
                    .map(|gs| {
                        let sum: f64 = gs
                            .iter()
                            .map(|&g| f64::from(t.get(usize::from(g)).copied().unwrap_or(0.0)))
                            .sum();
                        if gs.is_empty() {
                            0.0
                        } else {
                            (sum / gs.len() as f64) as f32
                        }
                    })
                    .collect()
            })
            .collect();
        let order = affinity
            .iter()
            .map(|a| {
                let mut ids: Vec<ItemId> = (0..a.len() as ItemId).collect();
                ids.sort_by(|&x, &y| a[y as usize].total_cmp(&a[x as usize]).then(x.cmp(&y)));
                ids
            })
            .collect();
        Self { k, affinity, order }
    }

    /// The K unseen items of highest affinity for `user`, best first.
    fn best_items<'a>(
        &'a self,
        user: UserId,
        history: &'a [ItemId],
    ) -> impl Iterator<Item = ItemId> + 'a {
        self.order
            .get(user as usize)
            .into_iter()
            .flatten()
            .copied()
            .filter(|i| !history.contains(i))
            .take(self.k)
    }

    /// The best list for `user` at this cut-off: the K unseen items of highest affinity.
    pub fn best_list(&self, user: UserId, history: &[ItemId]) -> Vec<ItemId> {
        self.best_items(user, history).collect()
    }

    /// DCG of `list`'s first `k` affinities.
    fn dcg(affinity: &[f32], list: impl IntoIterator<Item = ItemId>, k: usize) -> f64 {
        list.into_iter()
            .take(k)
            .enumerate()
            .map(|(j, i)| {
                let a = affinity.get(i as usize).copied().unwrap_or(0.0);
                f64::from(a) / ((j + 2) as f64).log2()
            })
            .sum()
    }

    /// The affinities of a known user and the DCG of their best unseen list.
    fn ideal(&self, ctx: &RewardContext<'_>) -> Option<(&[f32], f64)> {
        let u = ctx.user.filter(|&u| (u as usize) < self.affinity.len())?;
        let a = &self.affinity[u as usize];
        Some((a, Self::dcg(a, self.best_items(u, ctx.history), self.k)))
    }
}

impl ListReward for Taste {
    fn name(&self) -> String {
        format!("taste@{}", self.k)
    }

    fn score(&self, ctx: &RewardContext<'_>, list: &[ItemId]) -> f32 {
        match self.ideal(ctx) {
            None => f32::NAN,
            Some((a, ideal)) if ideal > 0.0 => {
                (Self::dcg(a, list.iter().copied(), self.k) / ideal) as f32
            }
            Some(_) => 0.0,
        }
    }

    /// 1 for a user with any positive affinity among their unseen items (the best list scores
    /// its own ideal DCG), 0 when every unseen item has affinity 0.
    fn optimum(&self, ctx: &RewardContext<'_>) -> Option<f32> {
        let (_, ideal) = self.ideal(ctx)?;
        Some(if ideal > 0.0 { 1.0 } else { 0.0 })
    }
}

/// `endcg@K`: the expected NDCG@K of the list when the next item is drawn from the prompt's
/// next-item belief `P` ([`super::CatalogInfo::belief`]; in blade the SFT reference's own
/// softmax over the unseen items): `sum_{j < K} P(y_j) / log2(j + 2)`, each item counted once.
/// With one held-out item, that is `E_{t ~ P}[NDCG@K(y, t)]`, the conditional expectation of
/// the sparse `ndcg@K` given the prompt: a dense, graded reward whose best list (the `K`
/// unseen items of highest `P`, in that order: the model's own full ranking) is known per
/// prompt. It does not look at the targets. NaN without a belief or when the belief cannot be
/// computed ([`super::parse_reward`] refuses a catalogue without one up front).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedNdcg {
    /// The cut-off.
    pub k: usize,
}

impl ExpectedNdcg {
    /// The expected DCG of `list`'s first `k` items under `p`, an item counted at its first
    /// position only.
    fn dcg(p: &[f32], list: &[ItemId], k: usize) -> f64 {
        let mut total = 0.0;
        for (j, &i) in list.iter().take(k).enumerate() {
            if list[..j].contains(&i) {
                continue;
            }
            total += f64::from(p.get(i as usize).copied().unwrap_or(0.0)) / ((j + 2) as f64).log2();
        }
        total
    }

    /// The best value: the `k` largest probabilities in order.
    fn ideal(p: &[f32], k: usize) -> f64 {
        let mut top: Vec<f32> = p.to_vec();
        let k = k.min(top.len());
        if k == 0 {
            return 0.0;
        }
        top.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        top.truncate(k);
        top.sort_by(|a, b| b.total_cmp(a));
        top.iter()
            .enumerate()
            .map(|(j, &q)| f64::from(q) / ((j + 2) as f64).log2())
            .sum()
    }
}

impl ListReward for ExpectedNdcg {
    fn name(&self) -> String {
        format!("endcg@{}", self.k)
    }

    fn score(&self, ctx: &RewardContext<'_>, list: &[ItemId]) -> f32 {
        match ctx
            .catalog
            .belief
            .as_ref()
            .and_then(|b| b.0.probs(ctx.window, ctx.history))
        {
            Some(p) => Self::dcg(&p, list, self.k) as f32,
            None => f32::NAN,
        }
    }

    /// The expected DCG of the belief's own top-K list.
    fn optimum(&self, ctx: &RewardContext<'_>) -> Option<f32> {
        let p = ctx
            .catalog
            .belief
            .as_ref()?
            .0
            .probs(ctx.window, ctx.history)?;
        Some(Self::ideal(&p, self.k) as f32)
    }
}

/// `w1*a + w2*b - ...`: a weighted sum of rewards, e.g. the composite
/// `accuracy + lambda * (fairness or diversity)` of METHOD.md section 5.
///
/// Its name renders the sum back in spec syntax (`ndcg@10 + 0.3*ild`), which
/// [`super::parse_reward`] reads back when every term is a built-in.
pub struct WeightedSum {
    /// `(weight, reward)` pairs, in the order they are rendered.
    pub terms: Vec<(f32, Box<dyn ListReward>)>,
}

impl WeightedSum {
    /// A sum of the given `(weight, reward)` terms.
    pub fn new(terms: Vec<(f32, Box<dyn ListReward>)>) -> Self {
        Self { terms }
    }
}

impl std::fmt::Debug for WeightedSum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WeightedSum({})", self.name())
    }
}

impl ListReward for WeightedSum {
    fn name(&self) -> String {
        let mut out = String::new();
        for (i, (w, reward)) in self.terms.iter().enumerate() {
            let negative = w.is_sign_negative();
            match (i, negative) {
                (0, false) => {}
                (0, true) => out.push('-'),
                (_, false) => out.push_str(" + "),
                (_, true) => out.push_str(" - "),
            }
            let magnitude = w.abs();
            if magnitude != 1.0 {
                // `Display` of f32 is the shortest text that parses back to the same value.
                let _ = write!(out, "{magnitude}*");
            }
            out.push_str(&reward.name());
        }
        out
    }

    fn score(&self, ctx: &RewardContext<'_>, list: &[ItemId]) -> f32 {
        self.terms
            .iter()
            .map(|(w, reward)| f64::from(*w) * f64::from(reward.score(ctx, list)))
            .sum::<f64>() as f32
    }
}

#[cfg(test)]
mod tests {
    use super::super::CatalogInfo;
    use super::*;

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() < 1e-6
    }

    /// Items 0 -> {0}, 1 -> {1}, 2 -> {0, 1}, 3 -> {2}, 4 -> {}, 5..=9 -> {0}; items 0 and 1
    /// are the head (2 = ceil(10 / 5) most popular).
    fn catalog() -> CatalogInfo {
        let mut genres = vec![vec![0], vec![1], vec![0, 1], vec![2], vec![]];
        genres.extend(std::iter::repeat_n(vec![0], 5));
        let popularity = vec![50, 40, 3, 3, 2, 2, 1, 1, 1, 1];
        CatalogInfo::new(genres, 3, popularity)
    }

    fn ctx<'a>(cat: &'a CatalogInfo, history: &'a [u32], targets: &'a [u32]) -> RewardContext<'a> {
        RewardContext {
            user: None,
            history,
            window: history,
            targets,
            catalog: cat,
        }
    }

    /// A fixed next-item distribution, whatever the prompt; counts its calls.
    struct Fixed(Vec<f32>, std::sync::atomic::AtomicUsize);

    impl crate::reward::NextItemBelief for Fixed {
        fn name(&self) -> String {
            "fixed".into()
        }
        fn probs(&self, _w: &[ItemId], _s: &[ItemId]) -> Option<std::sync::Arc<[f32]>> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Some(self.0.clone().into())
        }
    }

    #[test]
    fn expected_ndcg_is_the_belief_weighted_dcg_and_its_best_list_is_the_belief_ranking() {
        let belief = Fixed(vec![0.1, 0.4, 0.0, 0.3, 0.2], Default::default());
        let cat = CatalogInfo::new(vec![vec![0]; 5], 1, vec![1; 5])
            .with_belief(std::sync::Arc::new(belief));
        let r = crate::reward::parse_reward("endcg@2", &cat).unwrap();
        assert_eq!(r.name(), "endcg@2");
        let c = ctx(&cat, &[2], &[]);
        let best = 0.4 + 0.3 / 3f64.log2();
        assert!(close(r.score(&c, &[1, 3]), best));
        assert!(close(r.score(&c, &[3, 1]), 0.3 + 0.4 / 3f64.log2()));
        // only the first K count, an item counts once, a seen (P = 0) item adds nothing
        assert!(close(r.score(&c, &[1, 3, 4]), best));
        assert!(close(r.score(&c, &[1, 1]), 0.4));
        assert!(close(r.score(&c, &[2, 0]), 0.1 / 3f64.log2()));
        assert!(close(r.optimum(&c).unwrap(), best));
        // the same value as ndcg@2 averaged over targets drawn from the belief
        let ndcg = Ndcg { k: 2 };
        let p = [0.1, 0.4, 0.0, 0.3, 0.2];
        let avg: f64 = (0..5u32)
            .map(|t| p[t as usize] * f64::from(ndcg.score(&ctx(&cat, &[2], &[t]), &[3, 0])))
            .sum();
        assert!(close(r.score(&c, &[3, 0]), avg));
        // without a belief it is refused by the parser and scores NaN
        let bare = catalog();
        let err = crate::reward::parse_reward("ndcg@10 + endcg@10", &bare).unwrap_err();
        assert!(err.to_string().contains("needs a next-item model"), "{err}");
        assert!(ExpectedNdcg { k: 2 }
            .score(&ctx(&bare, &[], &[]), &[0])
            .is_nan());
    }

    #[test]
    fn accuracy_rewards_closed_form() {
        let cat = catalog();
        let c = ctx(&cat, &[1], &[7]);
        let list = [5, 7, 6];
        assert!(close(Ndcg { k: 10 }.score(&c, &list), 1.0 / 3f64.log2()));
        assert!(close(Recall { k: 10 }.score(&c, &list), 1.0));
        assert!(close(Mrr { k: 10 }.score(&c, &list), 0.5));
        assert!(close(Hit { k: 10 }.score(&c, &list), 1.0));
        for r in [
            &Ndcg { k: 1 } as &dyn ListReward,
            &Recall { k: 1 },
            &Mrr { k: 1 },
        ] {
            assert_eq!(r.score(&c, &list), 0.0, "{}", r.name());
        }
        assert_eq!(Ndcg { k: 10 }.name(), "ndcg@10");
        assert_eq!(Hit { k: 5 }.name(), "hit@5");
    }

    #[test]
    fn fairness_is_minus_mgu_against_the_history() {
        let cat = catalog();
        // History [0, 1]: shares (1/2, 1/2, 0). List [2] has the same shares.
        let c = ctx(&cat, &[0, 1], &[]);
        assert_eq!(Fairness.score(&c, &[2]), 0.0);
        assert_eq!(Dgu.score(&c, &[2]), 0.0);
        // List [0, 5]: shares (1, 0, 0); gaps (+1/2, -1/2, 0): MGU = 1/3, DGU = 1.
        assert!(close(Fairness.score(&c, &[0, 5]), -1.0 / 3.0));
        assert!(close(Dgu.score(&c, &[0, 5]), -1.0));
        // List [3, 1]: shares (0, 1/2, 1/2); gaps (-1/2, 0, +1/2): MGU = 1/3, DGU = 1.
        assert!(close(Fairness.score(&c, &[3, 1]), -1.0 / 3.0));
    }

    #[test]
    fn diversity_and_tail_closed_form() {
        let emb = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![-1.0, 0.0]];
        let cat = catalog().with_embeddings(emb);
        let c = ctx(&cat, &[], &[]);
        let ild = Diversity::default();
        // d(0,1) = 1, d(0,2) = 1 - 1/2, d(1,2) = 1 - 1/2.
        assert!(close(ild.score(&c, &[0, 1, 2]), 2.0 / 3.0));
        assert_eq!(ild.score(&c, &[0, 5]), 0.0);
        let cos = Diversity {
            distance: IldDistance::Cosine,
        };
        // Cosine distances: d(0,1) = 1, d(0,2) = 2, d(1,2) = 1.
        assert!(close(cos.score(&c, &[0, 1, 2]), 4.0 / 3.0));
        assert_eq!((ild.name(), cos.name()), ("ild".into(), "ild_cos".into()));
        // Without embeddings the cosine version refuses to invent a value.
        assert!(cos.score(&ctx(&catalog(), &[], &[]), &[0, 1]).is_nan());

        // Head = {0, 1}; 99 is unknown and counts as tail.
        let list = [0, 2, 3, 99];
        assert!(close(TailExposure.score(&c, &list), 0.75));
        let reference = blade_metrics::tail_share(&[list], &cat.popularity);
        assert!(close(TailExposure.score(&c, &list), reference));
        assert_eq!(TailExposure.score(&c, &[]), 0.0);
        assert_eq!(TailExposure.score(&c, &[0, 1]), 0.0);
    }

    #[test]
    fn taste_is_graded_and_the_best_unseen_list_scores_one() {
        let cat = catalog();
        // user 0 likes genre 0, user 1 genre 1 (genre 2 a little)
        let tastes = vec![vec![0.8, 0.1, 0.1], vec![0.0, 0.7, 0.3]];
        let taste = Taste::new(2, &tastes, &cat.item_genres);
        assert_eq!(taste.name(), "taste@2");
        let at = |user, history: &'static [u32]| RewardContext {
            user: Some(user),
            ..ctx(&cat, history, &[])
        };
        // user 0: affinities 0.8 for items 0 and 5..=9, 0.45 for item 2, 0 for item 4
        assert_eq!(taste.best_list(0, &[]), vec![0, 5]);
        assert_eq!(taste.best_list(0, &[0, 5]), vec![6, 7]);
        assert!(close(taste.score(&at(0, &[]), &[0, 5]), 1.0));
        assert!(close(taste.score(&at(0, &[0, 5]), &[6, 7]), 1.0));
        let ideal = 0.8 + 0.8 / 3f64.log2();
        let graded = (f64::from(0.45f32) + f64::from(0.1f32) / 3f64.log2()) / ideal;
        assert!(close(taste.score(&at(0, &[]), &[2, 1]), graded));
        // order matters: the better item first scores higher
        assert!(taste.score(&at(0, &[]), &[0, 2]) > taste.score(&at(0, &[]), &[2, 0]));
        // user 1: items 1 (0.7), 2 (0.35), 3 (0.3)
        assert_eq!(taste.best_list(1, &[1]), vec![2, 3]);
        assert!(close(taste.score(&at(1, &[]), &[0, 4]), 0.0));
        // no user, or one without a taste: NaN, which score_checked turns into an error
        assert!(taste.score(&ctx(&cat, &[], &[]), &[0]).is_nan());
        assert!(taste.score(&at(7, &[]), &[0]).is_nan());
        assert!(super::super::score_checked(&taste, &ctx(&cat, &[], &[]), &[0]).is_err());
        // the optimum is the best list's score; other rewards do not know theirs
        assert_eq!(taste.optimum(&at(1, &[1])), Some(1.0));
        let best = taste.best_list(1, &[1]);
        assert!(close(taste.score(&at(1, &[1]), &best), 1.0));
        assert_eq!(taste.optimum(&ctx(&cat, &[], &[])), None);
        assert_eq!(taste.optimum(&at(7, &[])), None);
        assert_eq!(Ndcg { k: 10 }.optimum(&at(0, &[])), None);
        let both = [at(0, &[]), at(1, &[5])];
        assert_eq!(super::super::mean_optimum(&taste, &both), Some(1.0));
        assert_eq!(super::super::mean_optimum(&Fairness, &both), None);
    }

    #[test]
    fn weighted_sum_is_the_sum_of_its_parts_and_renders_as_a_spec() {
        let cat = catalog();
        let c = ctx(&cat, &[0, 1], &[7]);
        let list = [5, 7, 3];
        let sum = WeightedSum::new(vec![
            (1.0, Box::new(Ndcg { k: 10 })),
            (0.3, Box::new(Diversity::default())),
            (-0.2, Box::new(TailExposure)),
        ]);
        let parts = f64::from(Ndcg { k: 10 }.score(&c, &list))
            + 0.3 * f64::from(Diversity::default().score(&c, &list))
            - 0.2 * f64::from(TailExposure.score(&c, &list));
        assert!(close(sum.score(&c, &list), parts));
        assert_eq!(sum.name(), "ndcg@10 + 0.3*ild - 0.2*tail");
        let lead = WeightedSum::new(vec![
            (-0.5, Box::new(TailExposure)),
            (-1.0, Box::new(Fairness)),
        ]);
        assert_eq!(lead.name(), "-0.5*tail - fairness");
        assert_eq!(WeightedSum::new(vec![]).score(&c, &list), 0.0);
    }
}
