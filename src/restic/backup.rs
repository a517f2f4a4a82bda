//! One backup run ([`backup`]): repository, `stop:` services, snapshots, retention, checks.

use std::panic::AssertUnwindSafe;
use std::path::Path;

use futures_util::FutureExt;

use super::json::{Summary, parse_backup, parse_snapshots};
use super::run::{Failure, Stdin, Stdout, classify, fatal_line, restic};
use super::{Context, Log, PATHS_MOUNT, TAG_BACKUP, TAG_COMMIT, TAG_SOURCE, VOLUMES_MOUNT};
use crate::docker::{Engine, OneOffMount};
use crate::model::jobs::{BackupSpec, Dump, RunOutcome, RunResult, ServiceRef, SnapshotRecord};

/// One backup run of `spec` (see the module docs for what it does). `commit` is the config
/// commit the snapshots are tagged with; `previous` the snapshots of the last *successful* run
/// (a source whose new snapshot is below `min_size_ratio` × its previous size fails the run).
///
/// Never panics and never leaves a `stop:` service down: the services are started again on
/// every path — failure, panic inside the run, or this future being dropped (a timeout) — and
/// a service that does not start again is named in the reason.
pub async fn backup(
    cx: &Context,
    spec: &BackupSpec,
    commit: Option<&str>,
    previous: &[SnapshotRecord],
) -> RunOutcome {
    backup_until(cx, spec, commit, previous, std::future::pending()).await
}

/// Why a run was cut short: its result (timed out, failed) and the reason.
pub type Cancelled = (RunResult, String);

/// [`backup`], cut short when `cancel` completes (a job's timeout, a newer run replacing it):
/// the restic command and dump in flight are killed, the `stop:` services started again and
/// awaited, the killed containers' removal awaited ([`Engine::settle`]); the outcome is
/// `cancel`'s result and reason (with the services that did not start again, if any).
pub async fn backup_until(
    cx: &Context,
    spec: &BackupSpec,
    commit: Option<&str>,
    previous: &[SnapshotRecord],
    cancel: impl std::future::Future<Output = Cancelled>,
) -> RunOutcome {
    tokio::pin!(cancel);
    let mut run = Run {
        cx,
        spec,
        commit,
        log: Log::new(spec),
        failures: Vec::new(),
        exit_code: None,
        records: Vec::new(),
        bad: Vec::new(),
    };
    let mut cancelled: Option<Cancelled> = None;
    let opened = tokio::select! {
        r = run.ensure_repository() => r,
        c = &mut cancel => { cancelled = Some(c); Ok(()) }
    };
    if cancelled.is_none() {
        if let Err(f) = opened {
            return run.log.failed(&f, run.exit_code);
        }
    }
    let mut captured = Ok(());
    let mut stopped = None;
    if cancelled.is_none() {
        let (s, stop_failure) = Stopped::stop(&cx.engine, &spec.stop).await;
        stopped = Some(s);
        captured = match stop_failure {
            Some(f) => Err(f),
            None => tokio::select! {
                r = AssertUnwindSafe(run.capture()).catch_unwind() => match r {
                    Ok(r) => r,
                    Err(_) => Err("the backup run panicked".to_string()),
                },
                c = &mut cancel => { cancelled = Some(c); Ok(()) }
            },
        };
    }
    let not_started = match stopped {
        Some(s) => s.start_again().await,
        None => Vec::new(),
    };
    if cancelled.is_none() {
        if let Err(fatal) = captured {
            run.failures.insert(0, fatal);
        }
        if !not_started.is_empty() {
            run.failures
                .push(format!("could not start again: {}", not_started.join(", ")));
        }
        let finished = tokio::select! {
            out = run.finish(previous) => Ok(out),
            c = &mut cancel => Err(c),
        };
        match finished {
            Ok(out) => return out,
            Err(c) => {
                cancelled = Some(c);
            }
        }
    }
    // Cut short: the commands in flight were dropped; wait until their containers are gone.
    cx.engine.settle().await;
    let (result, mut reason) = cancelled.unwrap_or((RunResult::Failed, "cancelled".into()));
    if !not_started.is_empty() {
        reason.push_str(&format!(
            "; could not start again: {}",
            not_started.join(", ")
        ));
    }
    run.log.line(&reason);
    RunOutcome {
        result,
        exit_code: None,
        reason: Some(run.log.redact(&reason)),
        log_tail: run.log.tail(),
        snapshots: run.records,
    }
}

struct Run<'a> {
    cx: &'a Context,
    spec: &'a BackupSpec,
    commit: Option<&'a str>,
    log: Log,
    /// Why the run failed (each one line); empty: succeeded.
    failures: Vec<String>,
    exit_code: Option<i64>,
    records: Vec<SnapshotRecord>,
    /// Snapshots that must not count (a failed dump): forgotten at the end.
    bad: Vec<String>,
}

impl Run<'_> {
    async fn restic(
        &mut self,
        args: &[String],
        mounts: Vec<OneOffMount>,
        stdin: Stdin<'_>,
    ) -> Result<super::run::Finished, String> {
        restic(
            self.cx,
            self.spec,
            args,
            mounts,
            stdin,
            Stdout::Keep,
            &mut self.log,
        )
        .await
        .map_err(|e| format!("cannot run restic: {e}"))
    }

    /// A repository failure (locked, password, unreachable) ends the run; anything else is
    /// `what exited N: message`.
    fn restic_failed(&mut self, what: &str, done: &super::run::Finished) -> (bool, String) {
        self.exit_code = Some(done.exit_code);
        match classify(done.exit_code, &done.stderr) {
            Some(f) => (true, f.reason()),
            None => (
                false,
                format!(
                    "{what}: restic exited {}: {}",
                    done.exit_code,
                    fatal_line(&done.stderr)
                ),
            ),
        }
    }

    /// `cat config`; `init` only when restic says there is no repository.
    async fn ensure_repository(&mut self) -> Result<(), String> {
        let done = self
            .restic(&args(&["cat", "config"]), vec![], Stdin::None)
            .await?;
        if done.exit_code == 0 {
            return Ok(());
        }
        match classify(done.exit_code, &done.stderr) {
            Some(Failure::NoRepository) => {
                self.log.line("no repository yet: restic init");
                let done = self.restic(&args(&["init"]), vec![], Stdin::None).await?;
                if done.exit_code == 0 {
                    Ok(())
                } else {
                    Err(self.restic_failed("restic init", &done).1)
                }
            }
            _ => Err(self.restic_failed("open the repository", &done).1),
        }
    }

    fn backup_args(&self, source: &str) -> Vec<String> {
        let mut a = args(&["backup", "--json", "--host"]);
        a.push(self.cx.host_name());
        a.push("--tag".into());
        a.push(format!("{TAG_BACKUP}={}", self.spec.name));
        a.push("--tag".into());
        a.push(format!("{TAG_SOURCE}={source}"));
        if let Some(c) = self.commit {
            a.push("--tag".into());
            a.push(format!("{TAG_COMMIT}={c}"));
        }
        a
    }

    /// Volumes, paths and dumps, each its own snapshot. `Err`: the run cannot go on
    /// (repository locked, wrong password, unreachable).
    async fn capture(&mut self) -> Result<(), String> {
        for v in &self.spec.volumes {
            let source = format!("volume:{v}");
            let target = format!("{VOLUMES_MOUNT}/{}/{}", v.stack, v.volume);
            match self.cx.engine.volume_exists(&v.engine_name).await {
                Ok(true) => {}
                Ok(false) => {
                    self.failures
                        .push(format!("volume {v} ({}) does not exist", v.engine_name));
                    continue;
                }
                Err(e) => {
                    self.failures.push(format!("volume {v}: {e}"));
                    continue;
                }
            }
            let mount = OneOffMount {
                source: v.engine_name.clone(),
                target: target.clone(),
                read_only: true,
                volume: true,
            };
            self.files(&source, mount).await?;
        }
        for p in &self.spec.paths {
            let source = format!("path:{}", p.display());
            if let Err(e) = std::fs::symlink_metadata(p) {
                self.failures
                    .push(format!("path {}: cannot be read: {e}", p.display()));
                continue;
            }
            let mount = OneOffMount {
                source: p.display().to_string(),
                target: path_target(p),
                read_only: true,
                volume: false,
            };
            self.files(&source, mount).await?;
        }
        for d in &self.spec.dumps {
            self.dump(d).await?;
        }
        Ok(())
    }

    /// One snapshot of a mounted volume or path.
    async fn files(&mut self, source: &str, mount: OneOffMount) -> Result<(), String> {
        let mut a = self.backup_args(source);
        a.push(mount.target.clone());
        let done = self.restic(&a, vec![mount], Stdin::None).await?;
        // restic 0.14 prints the errors' JSON on standard error.
        let out = parse_backup(&format!("{}\n{}", done.stdout_text(), done.stderr));
        if let Some(s) = &out.summary {
            self.record(source, s);
        }
        match done.exit_code {
            0 => Ok(()),
            3 => {
                self.exit_code = Some(3);
                let items: Vec<String> = out.unreadable.iter().map(|i| host_item(i)).collect();
                let mut reason = format!("{source}: restic exit 3: some files could not be read");
                if !items.is_empty() {
                    reason.push_str(&format!(": {}", items[..items.len().min(3)].join(", ")));
                    if items.len() > 3 {
                        reason.push_str(&format!(" and {} more", items.len() - 3));
                    }
                }
                self.failures.push(reason);
                Ok(())
            }
            _ => {
                let (fatal, reason) = self.restic_failed(&format!("{source}: backup"), &done);
                if fatal {
                    Err(reason)
                } else {
                    self.failures.push(reason);
                    Ok(())
                }
            }
        }
    }

    /// A dump: the command's standard output streamed into `restic backup --stdin`. A command
    /// that fails or writes nothing fails the run, and its snapshot is forgotten.
    async fn dump(&mut self, d: &Dump) -> Result<(), String> {
        let source = format!("dump:{}", d.file);
        let engine = self.cx.engine.clone();
        let id = match engine.service_container(&d.service).await {
            Ok(id) => id,
            Err(e) => {
                self.failures.push(format!("dump {}: {e}", d.file));
                return Ok(());
            }
        };
        let mut stream = match engine.exec_stream(&id, &d.command).await {
            Ok(s) => s,
            Err(e) => {
                self.failures.push(format!("dump {}: {e}", d.file));
                return Ok(());
            }
        };
        let mut a = self.backup_args(&source);
        a.extend(args(&["--stdin", "--stdin-filename"]));
        a.push(d.file.clone());
        let done = self.restic(&a, vec![], Stdin::Exec(&mut stream)).await?;
        let stderr = stream.stderr();
        let bytes = stream.stdout_bytes;
        let exit = stream.finish().await;
        for l in stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            self.log.line(&format!("{}: {l}", d.file));
        }
        let summary = parse_backup(&done.stdout_text()).summary;
        // restic refusing the repository (locked, password, unreachable) is the reason, not
        // the dump it stopped reading.
        if done.exit_code != 0 && classify(done.exit_code, &done.stderr).is_some() {
            return Err(self.restic_failed(&format!("dump {}", d.file), &done).1);
        }
        let command = d.command.join(" ");
        let dump_failure = match (&done.fed, exit) {
            (Some(Err(e)), _) => Some(format!(
                "dump {}: streaming `{command}` failed: {e}",
                d.file
            )),
            (_, Err(e)) => Some(format!("dump {}: {e}", d.file)),
            (_, Ok(code)) if code != 0 => {
                self.exit_code = Some(code);
                let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
                Some(format!(
                    "dump {}: `{command}` exited {code}{}",
                    d.file,
                    last.map(|l| format!(": {}", l.trim())).unwrap_or_default()
                ))
            }
            (_, Ok(_)) if bytes == 0 => {
                Some(format!("dump {} wrote 0 bytes (`{command}`)", d.file))
            }
            _ => None,
        };
        if let Some(f) = dump_failure {
            self.failures.push(f);
            if let Some(s) = summary {
                self.bad.push(s.snapshot_id);
            }
            return Ok(());
        }
        if done.exit_code != 0 {
            let (fatal, reason) = self.restic_failed(&format!("dump {}", d.file), &done);
            if fatal {
                return Err(reason);
            }
            self.failures.push(reason);
            return Ok(());
        }
        match summary {
            Some(s) => self.record(&source, &s),
            None => self
                .failures
                .push(format!("dump {}: restic reported no snapshot", d.file)),
        }
        Ok(())
    }

    fn record(&mut self, source: &str, s: &Summary) {
        self.log.line(&format!(
            "{source}: snapshot {}, {} files, {} processed, {} added",
            s.snapshot_id,
            s.total_files_processed,
            human_bytes(s.total_bytes_processed),
            human_bytes(s.data_added)
        ));
        self.records.push(SnapshotRecord {
            id: s.snapshot_id.clone(),
            source: source.to_string(),
            bytes: s.total_bytes_processed,
            added: s.data_added,
            files: s.total_files_processed,
        });
    }

    /// Full ids, forget the bad snapshots, the retention, the size check: the outcome.
    async fn finish(&mut self, previous: &[SnapshotRecord]) -> RunOutcome {
        if let Err(f) = self.after().await {
            self.failures.insert(0, f);
        }
        for r in &self.records {
            let Some(prev) = previous.iter().find(|p| p.source == r.source) else {
                continue;
            };
            let ratio = self.spec.min_size_ratio;
            if ratio > 0.0 && prev.bytes > 0 && (r.bytes as f64) < ratio * prev.bytes as f64 {
                self.failures.push(format!(
                    "{}: {} is below {ratio} × the previous run's {}",
                    r.source,
                    human_bytes(r.bytes),
                    human_bytes(prev.bytes)
                ));
            }
        }
        let bytes: u64 = self.records.iter().map(|r| r.bytes).sum();
        self.log.line(&format!(
            "{} snapshot(s), {} processed, {} added",
            self.records.len(),
            human_bytes(bytes),
            human_bytes(self.records.iter().map(|r| r.added).sum())
        ));
        if self.failures.is_empty() {
            RunOutcome {
                result: RunResult::Succeeded,
                exit_code: Some(0),
                reason: None,
                log_tail: self.log.tail(),
                snapshots: std::mem::take(&mut self.records),
            }
        } else {
            let mut out = self.log.failed(&self.failures.join("; "), self.exit_code);
            out.snapshots = std::mem::take(&mut self.records);
            out
        }
    }

    async fn after(&mut self) -> Result<(), String> {
        // Full ids for the records (restic 0.14's summary has the short one).
        let short: Vec<String> = self.records.iter().map(|r| r.id.clone()).collect();
        if !short.is_empty() {
            let mut a = args(&["snapshots", "--json"]);
            a.extend(short);
            let done = self.restic(&a, vec![], Stdin::None).await?;
            if done.exit_code != 0 {
                return Err(self.restic_failed("list the new snapshots", &done).1);
            }
            let list = parse_snapshots(&done.stdout_text())
                .map_err(|e| format!("cannot read restic's snapshot list: {e}"))?;
            for r in &mut self.records {
                if let Some(s) = list.iter().find(|s| s.id.starts_with(&r.id)) {
                    r.id = s.id.clone();
                }
            }
        }
        if !self.bad.is_empty() {
            let mut a = args(&["forget"]);
            if self.spec.retention.is_empty() {
                a.push("--prune".into());
            }
            a.extend(self.bad.iter().cloned());
            let done = self.restic(&a, vec![], Stdin::None).await?;
            if done.exit_code != 0 {
                return Err(self
                    .restic_failed("forget the failed dumps' snapshots", &done)
                    .1);
            }
        }
        if !self.spec.retention.is_empty() {
            let mut a = args(&["forget", "--prune", "--tag"]);
            a.push(format!("{TAG_BACKUP}={}", self.spec.name));
            a.extend(args(&["--group-by", "host,paths"]));
            a.extend(self.spec.retention.flags());
            let done = self.restic(&a, vec![], Stdin::None).await?;
            for l in done.stdout_text().lines() {
                self.log.line(l);
            }
            if done.exit_code != 0 {
                return Err(self.restic_failed("forget --prune", &done).1);
            }
        }
        Ok(())
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// `/srv/code` → `/backup/paths/srv/code`.
pub(crate) fn path_target(p: &Path) -> String {
    format!("{PATHS_MOUNT}{}", p.display())
}

/// An item restic names, as the host sees it: `/backup/paths/srv/x` → `/srv/x`,
/// `/backup/volumes/app/data/x` → `volume app/data: /x`.
fn host_item(item: &str) -> String {
    if let Some(rest) = item.strip_prefix(PATHS_MOUNT) {
        return rest.to_string();
    }
    if let Some(rest) = item
        .strip_prefix(VOLUMES_MOUNT)
        .and_then(|r| r.strip_prefix('/'))
    {
        let mut parts = rest.splitn(3, '/');
        if let (Some(s), Some(v)) = (parts.next(), parts.next()) {
            return format!("volume {s}/{v}: /{}", parts.next().unwrap_or(""));
        }
    }
    item.to_string()
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The `stop:` services' containers that were running and are now stopped. Dropped without
/// [`Stopped::start_again`] (the run's future dropped, a panic), it starts them on the runtime.
pub(crate) struct Stopped {
    engine: Engine,
    /// (service, container id).
    ids: Vec<(String, String)>,
    done: bool,
}

impl Stopped {
    /// Stops the running containers of `services`. A failure to list or stop one is the
    /// second value (the ones stopped so far are in the first, to be started again).
    pub(crate) async fn stop(
        engine: &Engine,
        services: &[ServiceRef],
    ) -> (Stopped, Option<String>) {
        let mut stopped = Stopped {
            engine: engine.clone(),
            ids: Vec::new(),
            done: false,
        };
        for s in services {
            let containers = match engine.service_containers(s).await {
                Ok(c) => c,
                Err(e) => return (stopped, Some(format!("cannot stop {s}: {e}"))),
            };
            for c in containers.into_iter().filter(|c| c.running) {
                stopped.ids.push((s.to_string(), c.id.clone()));
                if let Err(e) = engine.stop(&c.id, None).await {
                    return (stopped, Some(format!("cannot stop {s}: {e}")));
                }
            }
        }
        (stopped, None)
    }

    /// Adds containers stopped by the caller (restore: a volume's users).
    pub(crate) fn with(engine: &Engine, ids: Vec<(String, String)>) -> Stopped {
        Stopped {
            engine: engine.clone(),
            ids,
            done: false,
        }
    }

    /// Starts every container again: the services that did not start (`name: error`).
    pub(crate) async fn start_again(mut self) -> Vec<String> {
        self.done = true;
        let mut failed = Vec::new();
        for (service, id) in &self.ids {
            if let Err(e) = self.engine.start(id).await {
                failed.push(format!("{service}: {e}"));
            }
        }
        failed
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.done || self.ids.is_empty() {
            return;
        }
        let engine = self.engine.clone();
        let ids = std::mem::take(&mut self.ids);
        self.engine
            .spawn_cleanup("start the services stopped for a backup", async move {
                for (service, id) in ids {
                    if let Err(e) = engine.start(&id).await {
                        tracing::error!("could not start {service} again after a backup: {e}");
                    }
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_named_as_the_host_sees_them() {
        assert_eq!(host_item("/backup/paths/srv/code/x"), "/srv/code/x");
        assert_eq!(
            host_item("/backup/volumes/app/data/db/f"),
            "volume app/data: /db/f"
        );
        assert_eq!(host_item("/other"), "/other");
        assert_eq!(
            path_target(Path::new("/etc/berth")),
            "/backup/paths/etc/berth"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10.0 MiB");
    }
}
