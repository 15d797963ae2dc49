//! Markdown and CSV tables of evaluation reports.

use blade_core::EvalReport;

/// The metrics shown in a single-run table, in order; `{k}` is replaced by each cut-off.
const COLUMNS: &[&str] = &[
    "recall@{k}",
    "ndcg@{k}",
    "mrr@{k}",
    "precision@{k}",
    "mgu@{k}",
    "dgu@{k}",
    "ild@{k}",
    "div_ratio@{k}",
    "or_ratio@{k}",
    "coverage@{k}",
    "tail_share@{k}",
];

/// A Markdown table of reports: one row per method and mode, one column per metric and k.
pub fn report_table(reports: &[EvalReport]) -> String {
    let Some(first) = reports.first() else {
        return String::new();
    };
    let mut out = String::new();
    for &k in &first.ks {
        let cols: Vec<String> = COLUMNS
            .iter()
            .map(|c| c.replace("{k}", &k.to_string()))
            .collect();
        out.push_str(&format!("| method | mode | {} |\n", cols.join(" | ")));
        out.push_str(&format!("|---|---|{}\n", "---:|".repeat(cols.len())));
        for r in reports {
            for (mode, table) in [
                ("generation", &r.generation),
                ("full-rank", &r.full_ranking),
            ] {
                let vals: Vec<String> = cols
                    .iter()
                    .map(|c| table.get(c).map_or("-".into(), |v| format!("{v:.4}")))
                    .collect();
                out.push_str(&format!(
                    "| {} | {} | {} |\n",
                    r.method,
                    mode,
                    vals.join(" | ")
                ));
            }
        }
        out.push('\n');
    }
    let users = first.users;
    out.push_str(&format!(
        "users: {users}; history masked: {}; lower is better for mgu, dgu, or_ratio\n",
        first.mask_history
    ));
    out
}

/// Mean and sample standard deviation (0 for fewer than two values).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_is_the_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[7.0]), (7.0, 0.0));
    }
}
