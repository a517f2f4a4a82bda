//! Listing a Backup's snapshots and restoring one source: a volume (its users stopped, its
//! content replaced, its users started again — always), a host path, or a dump to a file.

use std::path::{Path, PathBuf};

use super::backup::{Stopped, path_target};
use super::json::{Snapshot, parse_snapshots};
use super::run::{Stdin, Stdout, classify, fatal_line, restic};
use super::{Context, Log, TAG_BACKUP, TAG_SOURCE, VOLUMES_MOUNT};
use crate::docker::OneOffMount;
use crate::model::jobs::{BackupSpec, VolumeRef};

/// What to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A volume of the Backup (`STACK/VOLUME`): its content is replaced by the snapshot's.
    Volume(VolumeRef),
    /// A host path of the Backup: restored in place (files of the snapshot are written over
    /// what is there; files the snapshot does not have stay).
    Path(PathBuf),
    /// A dump of the Backup (its `file`), written to `to`.
    Dump { file: String, to: PathBuf },
}

impl Target {
    /// The `berth-source` tag value it restores from.
    pub fn source(&self) -> String {
        match self {
            Target::Volume(v) => format!("volume:{v}"),
            Target::Path(p) => format!("path:{}", p.display()),
            Target::Dump { file, .. } => format!("dump:{file}"),
        }
    }
}

/// A failed restore or listing: one line, secrets hidden.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RestoreError(pub String);

/// The Backup's snapshots (tag `berth-backup=<name>`), oldest first.
pub async fn snapshots(cx: &Context, spec: &BackupSpec) -> Result<Vec<Snapshot>, RestoreError> {
    let mut log = Log::new(spec);
    let a = vec![
        "snapshots".to_string(),
        "--json".to_string(),
        "--tag".to_string(),
        format!("{TAG_BACKUP}={}", spec.name),
    ];
    let done = restic(cx, spec, &a, vec![], Stdin::None, Stdout::Keep, &mut log)
        .await
        .map_err(|e| RestoreError(log.redact(&format!("cannot run restic: {e}"))))?;
    if done.exit_code != 0 {
        let why = match classify(done.exit_code, &done.stderr) {
            Some(f) => f.reason(),
            None => format!(
                "restic snapshots exited {}: {}",
                done.exit_code,
                fatal_line(&done.stderr)
            ),
        };
        return Err(RestoreError(log.redact(&why)));
    }
    parse_snapshots(&done.stdout_text())
        .map_err(|e| RestoreError(format!("cannot read restic's snapshot list: {e}")))
}

/// The snapshot `which` (`latest` or an id or its prefix) of `source`.
pub fn pick<'a>(
    list: &'a [Snapshot],
    source: &str,
    which: &str,
) -> Result<&'a Snapshot, RestoreError> {
    if which == "latest" {
        return list
            .iter()
            .rev()
            .find(|s| s.tag(TAG_SOURCE) == Some(source))
            .ok_or_else(|| RestoreError(format!("no snapshot of {source}")));
    }
    let found: Vec<&Snapshot> = list.iter().filter(|s| s.id.starts_with(which)).collect();
    match found.as_slice() {
        [] => Err(RestoreError(format!("no snapshot {which}"))),
        [s] if s.tag(TAG_SOURCE) == Some(source) => Ok(s),
        [s] => Err(RestoreError(format!(
            "snapshot {} holds {}, not {source}",
            s.short_id,
            s.tag(TAG_SOURCE).unwrap_or("something else")
        ))),
        _ => Err(RestoreError(format!("{which} names several snapshots"))),
    }
}

/// Restores `target` from snapshot `which` (`latest` or an id). Returns the snapshot used.
pub async fn restore(
    cx: &Context,
    spec: &BackupSpec,
    which: &str,
    target: &Target,
) -> Result<Snapshot, RestoreError> {
    let list = snapshots(cx, spec).await?;
    let snap = pick(&list, &target.source(), which)?.clone();
    let mut log = Log::new(spec);
    match target {
        Target::Volume(v) => restore_volume(cx, spec, &snap, v, &mut log).await?,
        Target::Path(p) => {
            std::fs::create_dir_all(p)
                .map_err(|e| RestoreError(format!("cannot create {}: {e}", p.display())))?;
            let mount = OneOffMount {
                source: p.display().to_string(),
                target: format!("/restore{}", path_target(p)),
                read_only: false,
                volume: false,
            };
            restore_into(cx, spec, &snap, mount, &mut log).await?;
        }
        Target::Dump { file, to } => restore_dump(cx, spec, &snap, file, to, &mut log).await?,
    }
    Ok(snap)
}

/// `restic restore <id> --target /restore`, with the source's folder mounted read-write where
/// the snapshot has it under `/restore`.
async fn restore_into(
    cx: &Context,
    spec: &BackupSpec,
    snap: &Snapshot,
    mount: OneOffMount,
    log: &mut Log,
) -> Result<(), RestoreError> {
    let a = vec![
        "restore".to_string(),
        snap.id.clone(),
        "--target".to_string(),
        "/restore".to_string(),
    ];
    let done = restic(cx, spec, &a, vec![mount], Stdin::None, Stdout::Keep, log)
        .await
        .map_err(|e| RestoreError(format!("cannot run restic: {e}")))?;
    if done.exit_code != 0 {
        let why = match classify(done.exit_code, &done.stderr) {
            Some(f) => f.reason(),
            None => format!(
                "restic restore exited {}: {}",
                done.exit_code,
                fatal_line(&done.stderr)
            ),
        };
        return Err(RestoreError(log.redact(&why)));
    }
    Ok(())
}

async fn restore_volume(
    cx: &Context,
    spec: &BackupSpec,
    snap: &Snapshot,
    v: &VolumeRef,
    log: &mut Log,
) -> Result<(), RestoreError> {
    let engine = &cx.engine;
    let err = |e: crate::docker::DockerError| RestoreError(e.to_string());
    let Some(mountpoint) = engine
        .volume_mountpoint(&v.engine_name)
        .await
        .map_err(err)?
    else {
        return Err(RestoreError(format!(
            "volume {v} ({}) does not exist: apply the config first",
            v.engine_name
        )));
    };
    // The volume's users stop first, and start again whatever happens below.
    let users = engine.volume_users(&v.engine_name).await.map_err(err)?;
    let mut ids = Vec::new();
    let mut failure = None;
    for u in users.into_iter().filter(|u| u.running) {
        ids.push((u.name.clone(), u.id.clone()));
        if let Err(e) = engine.stop(&u.id, None).await {
            failure = Some(RestoreError(format!("cannot stop {}: {e}", u.name)));
            break;
        }
    }
    let stopped = Stopped::with(engine, ids);
    let result = match failure {
        Some(f) => Err(f),
        None => {
            let mount = OneOffMount {
                source: v.engine_name.clone(),
                target: format!("/restore{VOLUMES_MOUNT}/{}/{}", v.stack, v.volume),
                read_only: false,
                volume: true,
            };
            match empty_folder(Path::new(&mountpoint)) {
                Ok(()) => restore_into(cx, spec, snap, mount, log).await,
                Err(e) => Err(RestoreError(format!(
                    "cannot empty volume {v} at {mountpoint}: {e} (berth must run on the Engine's host)"
                ))),
            }
        }
    };
    let not_started = stopped.start_again().await;
    match (result, not_started.is_empty()) {
        (Ok(()), true) => Ok(()),
        (Ok(()), false) => Err(RestoreError(format!(
            "restored, but could not start again: {}",
            not_started.join(", ")
        ))),
        (Err(e), true) => Err(e),
        (Err(e), false) => Err(RestoreError(format!(
            "{e}; could not start again: {}",
            not_started.join(", ")
        ))),
    }
}

/// Removes everything inside `dir` (not `dir` itself), never following a symlink.
fn empty_folder(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

async fn restore_dump(
    cx: &Context,
    spec: &BackupSpec,
    snap: &Snapshot,
    file: &str,
    to: &Path,
    log: &mut Log,
) -> Result<(), RestoreError> {
    let partial = to.with_extension("berth-partial");
    let mut out = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| RestoreError(format!("cannot write {}: {e}", partial.display())))?;
    let a = vec!["dump".to_string(), snap.id.clone(), format!("/{file}")];
    let done = restic(
        cx,
        spec,
        &a,
        vec![],
        Stdin::None,
        Stdout::File(&mut out),
        log,
    )
    .await;
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(RestoreError(format!("cannot run restic: {e}")));
        }
    };
    if done.exit_code != 0 {
        let _ = std::fs::remove_file(&partial);
        let why = match classify(done.exit_code, &done.stderr) {
            Some(f) => f.reason(),
            None => format!(
                "restic dump exited {}: {}",
                done.exit_code,
                fatal_line(&done.stderr)
            ),
        };
        return Err(RestoreError(log.redact(&why)));
    }
    use tokio::io::AsyncWriteExt;
    out.flush()
        .await
        .and(out.sync_all().await)
        .map_err(|e| RestoreError(format!("cannot write {}: {e}", partial.display())))?;
    drop(out);
    std::fs::rename(&partial, to)
        .map_err(|e| RestoreError(format!("cannot write {}: {e}", to.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, source: &str, time: &str) -> Snapshot {
        Snapshot {
            id: id.into(),
            short_id: id[..2].into(),
            time: time.into(),
            paths: vec![],
            hostname: "h".into(),
            tags: vec![format!("{TAG_SOURCE}={source}")],
            summary: None,
        }
    }

    #[test]
    fn picks_the_snapshot_of_the_source() {
        let list = vec![
            snap("aa11", "volume:a/b", "1"),
            snap("bb22", "dump:x.sql", "2"),
            snap("cc33", "volume:a/b", "3"),
        ];
        assert_eq!(pick(&list, "volume:a/b", "latest").unwrap().id, "cc33");
        assert_eq!(pick(&list, "volume:a/b", "aa").unwrap().id, "aa11");
        assert_eq!(
            pick(&list, "volume:a/b", "bb").unwrap_err().0,
            "snapshot bb holds dump:x.sql, not volume:a/b"
        );
        assert_eq!(
            pick(&list, "path:/x", "latest").unwrap_err().0,
            "no snapshot of path:/x"
        );
        assert_eq!(
            pick(&list, "volume:a/b", "ff").unwrap_err().0,
            "no snapshot ff"
        );
    }
}
