//! A live dashboard for custom training loops (the alignment trainer): it drives burn-train's
//! terminal dashboard (or the plain-text renderer) with named scalar series, so online RL
//! steps show up exactly like burn-train's own supervised epochs.

use std::sync::Arc;

use burn::train::metric::{
    MetricAttributes, MetricDefinition, MetricEntry, MetricId, NumericAttributes, NumericEntry,
    SerializedEntry,
};
use burn::train::renderer::tui::TuiMetricsRendererWrapper;
use burn::train::renderer::{MetricState, MetricsRenderer};
use burn::train::Interrupter;

use crate::sft::Dashboard;

/// Named scalar series shown live, split into training and validation.
pub struct LiveDashboard {
    /// burn-train's terminal dashboard, or `None` for plain text lines.
    renderer: Option<Box<dyn MetricsRenderer>>,
    latest: Vec<(String, f64)>,
    step: usize,
    total: usize,
    interrupter: Interrupter,
    ids: Vec<(String, MetricId)>,
    split_open: bool,
}

impl LiveDashboard {
    /// Opens the dashboard: the TUI on a terminal (or when asked), plain text otherwise.
    pub fn new(kind: Dashboard, label: &str, total_steps: usize) -> Self {
        use std::io::IsTerminal;
        let interrupter = Interrupter::new();
        let tui = match kind {
            Dashboard::Tui => true,
            Dashboard::Plain => false,
            Dashboard::Auto => std::io::stdout().is_terminal(),
        };
        let renderer: Option<Box<dyn MetricsRenderer>> = if tui {
            let mut r: Box<dyn MetricsRenderer> =
                Box::new(TuiMetricsRendererWrapper::new(interrupter.clone(), None));
            r.start(1, 0, Some(total_steps), Some(label));
            Some(r)
        } else {
            println!("{label}: {total_steps} steps");
            None
        };
        Self {
            renderer,
            latest: Vec::new(),
            step: 0,
            total: total_steps,
            interrupter,
            ids: Vec::new(),
            split_open: false,
        }
    }

    /// Whether the user asked to stop (the TUI's quit key).
    pub fn should_stop(&self) -> bool {
        self.interrupter.should_stop()
    }

    fn id(&mut self, name: &str, higher_is_better: bool) -> MetricId {
        if let Some((_, id)) = self.ids.iter().find(|(n, _)| n == name) {
            return id.clone();
        }
        let id = MetricId::new(Arc::new(name.to_string()));
        let Some(renderer) = self.renderer.as_mut() else {
            return id;
        };
        renderer.register_metric(MetricDefinition {
            metric_id: id.clone(),
            name: Arc::new(name.to_string()),
            description: None,
            attributes: MetricAttributes::Numeric(NumericAttributes {
                unit: None,
                higher_is_better,
            }),
        });
        self.ids.push((name.to_string(), id.clone()));
        id
    }

    fn state(&mut self, name: &str, value: f64, higher_is_better: bool) -> MetricState {
        let id = self.id(name, higher_is_better);
        let entry = SerializedEntry {
            formatted: format!("{value:.4}"),
            serialized: value.to_string(),
        };
        MetricState::Numeric(
            MetricEntry::new(id, entry),
            Some(NumericEntry::Value(value)),
        )
    }

    /// Starts the training split of `steps` steps.
    pub fn begin(&mut self, steps: usize) {
        if let Some(r) = self.renderer.as_mut() {
            // the TUI counts epochs from 1: announce the (single) epoch before its split
            r.update_epoch(0);
            r.start_split("train", steps);
        }
        self.split_open = true;
    }

    fn remember(&mut self, name: &str, value: f64) {
        match self.latest.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.latest.push((name.to_string(), value)),
        }
    }

    /// Records one training scalar at the current step.
    pub fn train(&mut self, name: &str, value: f64, higher_is_better: bool) {
        self.remember(name, value);
        if self.renderer.is_some() {
            let s = self.state(name, value, higher_is_better);
            if let Some(r) = self.renderer.as_mut() {
                r.update_train(s);
            }
        }
    }

    /// Records one validation scalar.
    /// In plain mode this also prints one line with the latest training scalars.
    pub fn valid(&mut self, name: &str, value: f64, higher_is_better: bool) {
        if self.renderer.is_none() {
            let train: Vec<String> = self
                .latest
                .iter()
                .map(|(n, v)| format!("{n} {v:.4}"))
                .collect();
            println!(
                "step {}/{}: {} | {name} {value:.4}",
                self.step,
                self.total,
                train.join(" | ")
            );
            return;
        }
        let s = self.state(name, value, higher_is_better);
        if let Some(r) = self.renderer.as_mut() {
            r.update_valid(s);
        }
    }

    /// Marks `step` steps as done.
    pub fn progress(&mut self, step: usize) {
        self.step = step;
        if let Some(r) = self.renderer.as_mut() {
            r.update_split(step);
        }
    }

    /// Closes the split and the dashboard.
    pub fn finish(mut self) {
        if let Some(r) = self.renderer.as_mut() {
            if self.split_open {
                r.end_split();
            }
            r.end();
            let _ = r.on_train_end(None);
        }
    }
}
