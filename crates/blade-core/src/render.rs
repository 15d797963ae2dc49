//! A plain-text renderer for burn-train, for logs, pipes and CI: one line per finished split
//! with the latest value of every metric, instead of the terminal dashboard.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::MetricDefinition;
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};

/// Prints `epoch e/E <split>: <metric> ... (<seconds>s)` lines to stdout.
pub struct PlainRenderer {
    epoch: usize,
    total_epochs: usize,
    split: String,
    started: Instant,
    latest: BTreeMap<String, String>,
    names: BTreeMap<String, String>,
}

impl PlainRenderer {
    /// A renderer with nothing recorded yet.
    pub fn new() -> Self {
        Self {
            epoch: 0,
            total_epochs: 0,
            split: String::new(),
            started: Instant::now(),
            latest: BTreeMap::new(),
            names: BTreeMap::new(),
        }
    }

    fn record(&mut self, state: MetricState) {
        let entry = match state {
            MetricState::Generic(e) | MetricState::Numeric(e, _) => e,
        };
        let id = format!("{:?}", entry.metric_id);
        let name = self.names.get(&id).cloned().unwrap_or_default();
        // burn formats entries as "epoch <mean> - batch <last>": keep the epoch mean
        let text = entry.serialized_entry.formatted;
        let value = text
            .split(" - ")
            .next()
            .unwrap_or(&text)
            .trim_start_matches("epoch ")
            .to_string();
        self.latest
            .insert(format!("{name}{id}"), format!("{name} {value}"));
    }
}

impl Default for PlainRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsRendererTraining for PlainRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.record(state);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.record(state);
    }
}

impl MetricsRendererEvaluation for PlainRenderer {
    fn update_test(&mut self, _name: EvaluationName, state: MetricState) {
        self.record(state);
    }
}

impl TrainingProgressLogger for PlainRenderer {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        _: Option<usize>,
        label: Option<&str>,
    ) {
        self.total_epochs = total_epochs;
        self.epoch = starting_epoch;
        println!("{}: {} epochs", label.unwrap_or("training"), total_epochs);
    }

    fn update_epoch(&mut self, epoch: usize) {
        self.epoch = epoch + 1;
    }

    fn start_split(&mut self, split: &str, _total_items: usize) {
        self.split = split.to_string();
        self.started = Instant::now();
        self.latest.clear();
    }

    fn update_split(&mut self, _items_processed: usize) {}

    fn end_split(&mut self) {
        let metrics: Vec<&str> = self.latest.values().map(String::as_str).collect();
        println!(
            "epoch {}/{} {:>5}: {} ({:.1}s)",
            self.epoch.max(1),
            self.total_epochs,
            self.split,
            metrics.join(" | "),
            self.started.elapsed().as_secs_f64()
        );
    }

    fn end(&mut self) {}

    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for PlainRenderer {
    fn start_global_progress(&mut self, _total_tests: usize) {}
    fn start_test(&mut self, _name: &str, _total_items: usize) {}
    fn update_test_progress(&mut self, _items_processed: usize) {}
    fn end_test(&mut self) {}
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRenderer for PlainRenderer {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(
            format!("{:?}", definition.metric_id),
            definition.name.to_string(),
        );
    }
}
