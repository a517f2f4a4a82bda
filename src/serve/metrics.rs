//! berth's Prometheus metrics: one registry, served as OpenMetrics text on `GET /metrics`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReconcileLabels {
    result: String,
    cause: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WebhookLabels {
    event: String,
    result: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobLabels {
    job: String,
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobRunLabels {
    job: String,
    kind: String,
    result: String,
}

/// Every `result` label `berth_job_runs_total` may carry (to remove a job's series).
const RUN_RESULTS: [&str; 6] = [
    "succeeded",
    "failed",
    "timed_out",
    "skipped",
    "missed",
    "interrupted",
];

/// What the job metrics start from for a job that enters the table (or at startup): its
/// history's last success, last start and failures in a row.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSeed {
    pub job: String,
    /// [`crate::model::jobs::Task::kind`].
    pub kind: String,
    /// Unix seconds; `None`: it never succeeded (the gauge is 0, so staleness alerts fire).
    pub last_success: Option<f64>,
    pub last_start: Option<f64>,
    pub consecutive_failures: u64,
}

type F64Gauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// `berth_last_applied_commit_info{commit}`: at most one series, the newest commit.
#[derive(Debug, Default)]
struct LastApplied(Mutex<Option<String>>);

impl Collector for LastApplied {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let commit = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(commit) = commit else {
            return Ok(());
        };
        let info = Info::new(vec![("commit".to_string(), commit)]);
        let metric = encoder.encode_descriptor(
            "berth_last_applied_commit",
            "The commit of the tracked branch berth last applied",
            None,
            info.metric_type(),
        )?;
        info.encode(metric)
    }
}

/// Every metric berth exports. Cheap to share (`Arc<Metrics>`); all methods take `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: Histogram,
    last_applied: Arc<LastApplied>,
    webhooks: Family<WebhookLabels, Counter>,
    drift_repairs: Counter,
    firewall_drift: Counter,
    idle_checks: Counter,
    git_fetch_duration: Histogram,
    job_last_start: Family<JobLabels, F64Gauge>,
    job_last_success: Family<JobLabels, F64Gauge>,
    job_last_duration: Family<JobLabels, F64Gauge>,
    job_runs: Family<JobRunLabels, Counter>,
    job_failures: Family<JobLabels, Gauge>,
    /// The jobs (name → kind) whose series exist: the recorded table's.
    jobs_known: Mutex<std::collections::BTreeMap<String, String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "berth_reconciles",
            "Reconciles finished, by result (success, noop, failure_transient, failure_permanent) and cause",
            reconciles.clone(),
        );
        // 50 ms … ~14 min.
        let reconcile_duration = Histogram::new(exponential_buckets(0.05, 2.0, 15));
        registry.register_with_unit(
            "berth_reconcile_duration",
            "Time from taking a batch of work to the end of its reconcile",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let last_applied = Arc::new(LastApplied::default());
        registry.register_collector(Box::new(last_applied.clone()));
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "berth_webhook_deliveries",
            "Webhook deliveries received, by event and outcome",
            webhooks.clone(),
        );
        let drift_repairs = Counter::default();
        registry.register(
            "berth_drift_repairs",
            "Objects re-created or corrected because the Engine drifted from git without a commit",
            drift_repairs.clone(),
        );
        let firewall_drift = Counter::default();
        registry.register(
            "berth_firewall_drift_repairs",
            "Firewall repairs: berth's nftables table was gone or changed on the host (a firewall reload, a Docker restart, a hand edit) and was put back",
            firewall_drift.clone(),
        );
        let idle_checks = Counter::default();
        registry.register(
            "berth_idle_checks",
            "Polls and webhooks that found the branch where the last reconcile left it (one ref look-up, no reconcile)",
            idle_checks.clone(),
        );
        // 10 ms … ~2.7 min.
        let git_fetch_duration = Histogram::new(exponential_buckets(0.01, 2.0, 15));
        registry.register_with_unit(
            "berth_git_fetch_duration",
            "Time taken by git fetches of the tracked repository",
            Unit::Seconds,
            git_fetch_duration.clone(),
        );
        let job_last_start = Family::<JobLabels, F64Gauge>::default();
        registry.register(
            "berth_job_last_start_timestamp_seconds",
            "When the job's last run started (Unix time)",
            job_last_start.clone(),
        );
        let job_last_success = Family::<JobLabels, F64Gauge>::default();
        registry.register(
            "berth_job_last_success_timestamp_seconds",
            "When the job's last successful run ended (Unix time): what staleness alerts use",
            job_last_success.clone(),
        );
        let job_last_duration = Family::<JobLabels, F64Gauge>::default();
        registry.register(
            "berth_job_last_duration_seconds",
            "How long the job's last run took",
            job_last_duration.clone(),
        );
        let job_runs = Family::<JobRunLabels, Counter>::default();
        registry.register(
            "berth_job_runs",
            "Job runs and records, by kind and result (succeeded, failed, timed_out, skipped, missed, interrupted)",
            job_runs.clone(),
        );
        let job_failures = Family::<JobLabels, Gauge>::default();
        registry.register(
            "berth_job_consecutive_failures",
            "Failed, timed-out, missed or interrupted runs since the job's last success (skipped runs do not count)",
            job_failures.clone(),
        );
        Metrics {
            job_failures,
            jobs_known: Mutex::default(),
            job_last_start,
            job_last_success,
            job_last_duration,
            job_runs,
            registry,
            reconciles,
            reconcile_duration,
            last_applied,
            webhooks,
            drift_repairs,
            firewall_drift,
            idle_checks,
            git_fetch_duration,
        }
    }

    /// A reconcile ended. `result` is `success`, `noop`, `failure_transient` or
    /// `failure_permanent`; `cause` is [`super::queue::Cause::as_str`].
    pub fn reconcile_finished(&self, result: &str, cause: &str, duration: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                result: result.to_string(),
                cause: cause.to_string(),
            })
            .inc();
        self.reconcile_duration.observe(duration.as_secs_f64());
    }

    /// The tracked branch is now applied at `commit`; replaces the previous series.
    pub fn set_last_applied(&self, commit: &str) {
        *self
            .last_applied
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(commit.to_string());
    }

    /// One webhook delivery and what became of it.
    pub fn webhook(&self, event: &str, result: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                event: event.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// `n` objects were repaired after drifting.
    pub fn drift_repaired(&self, n: u64) {
        self.drift_repairs.inc_by(n);
    }

    /// A plan that puts berth's firewall back after it drifted.
    pub fn firewall_drift_repaired(&self) {
        self.firewall_drift.inc();
    }

    /// A poll or webhook found nothing new (one ref look-up).
    pub fn idle_check(&self) {
        self.idle_checks.inc();
    }

    /// One git fetch took `duration`.
    pub fn git_fetch(&self, duration: Duration) {
        self.git_fetch_duration.observe(duration.as_secs_f64());
    }

    /// A job's run started at `at` (Unix seconds).
    pub fn job_started(&self, job: &str, kind: &str, at: f64) {
        self.job_last_start
            .get_or_create(&job_labels(job, kind))
            .set(at);
    }

    /// A job's run (or a skipped / missed / interrupted record) ended.
    pub fn job_finished(
        &self,
        job: &str,
        kind: &str,
        result: &str,
        ended: f64,
        duration: Option<f64>,
    ) {
        self.job_runs
            .get_or_create(&JobRunLabels {
                job: job.to_string(),
                kind: kind.to_string(),
                result: result.to_string(),
            })
            .inc();
        if let Some(d) = duration {
            self.job_last_duration
                .get_or_create(&job_labels(job, kind))
                .set(d);
        }
        let failures = self.job_failures.get_or_create(&job_labels(job, kind));
        match result {
            "succeeded" => {
                failures.set(0);
                self.job_success(job, kind, ended);
            }
            "skipped" => {}
            _ => {
                failures.inc();
            }
        }
    }

    /// The job's last success (also from the history at startup, so a restart keeps it).
    pub fn job_success(&self, job: &str, kind: &str, at: f64) {
        self.job_last_success
            .get_or_create(&job_labels(job, kind))
            .set(at);
    }

    /// The recorded job table is `table` (at startup and whenever it may have changed): a job
    /// new to the metrics gets its series from its seed — a last success of 0 when it never
    /// succeeded, so a backup that never worked is stale at once — and the series of jobs that
    /// left the table (or changed kind) are removed. Jobs already known keep their live values.
    pub fn sync_jobs(&self, table: &[JobSeed]) {
        let mut known = self.jobs_known.lock().unwrap_or_else(|e| e.into_inner());
        let wanted: std::collections::BTreeMap<&str, &str> = table
            .iter()
            .map(|s| (s.job.as_str(), s.kind.as_str()))
            .collect();
        let gone: Vec<(String, String)> = known
            .iter()
            .filter(|(job, kind)| wanted.get(job.as_str()) != Some(&kind.as_str()))
            .map(|(j, k)| (j.clone(), k.clone()))
            .collect();
        for (job, kind) in gone {
            let l = job_labels(&job, &kind);
            self.job_last_start.remove(&l);
            self.job_last_success.remove(&l);
            self.job_last_duration.remove(&l);
            self.job_failures.remove(&l);
            for result in RUN_RESULTS {
                self.job_runs.remove(&JobRunLabels {
                    job: job.clone(),
                    kind: kind.clone(),
                    result: result.to_string(),
                });
            }
            known.remove(&job);
        }
        for seed in table {
            if known.get(&seed.job) == Some(&seed.kind) {
                continue;
            }
            let l = job_labels(&seed.job, &seed.kind);
            self.job_last_success
                .get_or_create(&l)
                .set(seed.last_success.unwrap_or(0.0));
            if let Some(at) = seed.last_start {
                self.job_last_start.get_or_create(&l).set(at);
            }
            self.job_failures
                .get_or_create(&l)
                .set(i64::try_from(seed.consecutive_failures).unwrap_or(i64::MAX));
            known.insert(seed.job.clone(), seed.kind.clone());
        }
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

fn job_labels(job: &str, kind: &str) -> JobLabels {
    JobLabels {
        job: job.to_string(),
        kind: kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_output_holds_every_series() {
        let m = Metrics::new();
        let empty = m.encode();
        assert!(empty.ends_with("# EOF\n"), "{empty}");
        assert!(
            !empty.contains("berth_last_applied_commit_info{"),
            "{empty}"
        );

        m.reconcile_finished("success", "webhook", Duration::from_millis(1500));
        m.reconcile_finished("success", "webhook", Duration::from_millis(500));
        m.reconcile_finished("failure_transient", "poll", Duration::from_secs(3));
        m.set_last_applied("aaaa");
        m.set_last_applied("bbbb");
        m.webhook("push", "enqueued");
        m.webhook("ping", "ping");
        m.drift_repaired(2);
        m.drift_repaired(1);
        m.firewall_drift_repaired();
        m.git_fetch(Duration::from_millis(250));
        m.job_started("vacuum", "exec", 100.0);
        m.job_finished("vacuum", "exec", "succeeded", 112.5, Some(12.5));
        m.job_finished("vacuum", "exec", "skipped", 113.0, None);
        let text = m.encode();
        for want in [
            "# TYPE berth_reconciles counter",
            r#"berth_reconciles_total{result="success",cause="webhook"} 2"#,
            r#"berth_reconciles_total{result="failure_transient",cause="poll"} 1"#,
            "# TYPE berth_reconcile_duration_seconds histogram",
            "# UNIT berth_reconcile_duration_seconds seconds",
            "berth_reconcile_duration_seconds_count 3",
            "berth_reconcile_duration_seconds_sum 5.0",
            "# TYPE berth_last_applied_commit info",
            r#"berth_last_applied_commit_info{commit="bbbb"} 1"#,
            r#"berth_webhook_deliveries_total{event="push",result="enqueued"} 1"#,
            r#"berth_webhook_deliveries_total{event="ping",result="ping"} 1"#,
            "berth_drift_repairs_total 3",
            "berth_firewall_drift_repairs_total 1",
            "berth_git_fetch_duration_seconds_count 1",
            "berth_git_fetch_duration_seconds_sum 0.25",
            r#"berth_job_last_start_timestamp_seconds{job="vacuum",kind="exec"} 100.0"#,
            r#"berth_job_last_success_timestamp_seconds{job="vacuum",kind="exec"} 112.5"#,
            r#"berth_job_last_duration_seconds{job="vacuum",kind="exec"} 12.5"#,
            r#"berth_job_runs_total{job="vacuum",kind="exec",result="succeeded"} 1"#,
            r#"berth_job_runs_total{job="vacuum",kind="exec",result="skipped"} 1"#,
            r#"berth_job_consecutive_failures{job="vacuum",kind="exec"} 0"#,
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("aaaa"), "{text}");
        assert_eq!(text.matches("berth_last_applied_commit_info{").count(), 1);
        assert!(text.ends_with("# EOF\n"));
    }

    fn seed(job: &str, kind: &str, last_success: Option<f64>, failures: u64) -> JobSeed {
        JobSeed {
            job: job.into(),
            kind: kind.into(),
            last_success,
            last_start: None,
            consecutive_failures: failures,
        }
    }

    #[test]
    fn the_table_seeds_job_series_and_removes_those_that_left() {
        let m = Metrics::new();
        m.sync_jobs(&[
            seed("nightly", "backup", None, 2),
            seed("vacuum", "exec", Some(50.0), 0),
        ]);
        let text = m.encode();
        for want in [
            // Never succeeded: 0, so `time() - x > 26h` (BerthBackupStale) fires at once.
            r#"berth_job_last_success_timestamp_seconds{job="nightly",kind="backup"} 0.0"#,
            r#"berth_job_consecutive_failures{job="nightly",kind="backup"} 2"#,
            r#"berth_job_last_success_timestamp_seconds{job="vacuum",kind="exec"} 50.0"#,
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }

        // Failures count up, a skipped run does not count, a success resets.
        m.job_finished("nightly", "backup", "failed", 60.0, Some(1.0));
        m.job_finished("nightly", "backup", "skipped", 61.0, None);
        m.job_finished("nightly", "backup", "missed", 62.0, None);
        assert!(
            m.encode()
                .contains(r#"berth_job_consecutive_failures{job="nightly",kind="backup"} 4"#)
        );
        m.job_finished("nightly", "backup", "succeeded", 70.0, Some(1.0));
        let text = m.encode();
        assert!(
            text.contains(r#"berth_job_consecutive_failures{job="nightly",kind="backup"} 0"#),
            "{text}"
        );
        assert!(text.contains(
            r#"berth_job_last_success_timestamp_seconds{job="nightly",kind="backup"} 70.0"#
        ));

        // The same table again keeps the live values; a job that left loses every series; one
        // whose kind changed starts over under its new kind.
        m.sync_jobs(&[
            seed("nightly", "backup", None, 9),
            seed("vacuum", "container", None, 0),
        ]);
        let text = m.encode();
        assert!(text.contains(
            r#"berth_job_last_success_timestamp_seconds{job="nightly",kind="backup"} 70.0"#
        ));
        assert!(!text.contains(r#"kind="exec""#), "{text}");
        assert!(text.contains(
            r#"berth_job_last_success_timestamp_seconds{job="vacuum",kind="container"} 0.0"#
        ));
        m.sync_jobs(&[seed("vacuum", "container", None, 0)]);
        let text = m.encode();
        assert!(!text.contains(r#"job="nightly""#), "{text}");
    }
}
