//! `berth restore` and `berth backups`: the commands, with their arguments; main.rs only
//! dispatches. The Backup is taken from the job table the last apply recorded in the state dir
//! (`--state-dir`, as `berth jobs` reads it), or from a config folder (`--config DIR`, loaded
//! as `plan` loads it).
//!
//! Exit codes: 0 done; 1 failed (no such snapshot or source, restic or the Engine failed);
//! 2 no such Backup (as `berth jobs run`'s no such job); 64 usage.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use super::restore::{self, Target};
use super::{Context, TAG_COMMIT, TAG_SOURCE};
use crate::docker::Engine;
use crate::model::jobs::BackupSpec;

#[derive(Args, Debug, Clone)]
pub struct BackupRef {
    /// The Backup's name (`kind: Backup`, `name:`).
    pub backup: String,
    /// Take the Backup from this config folder (loaded as `berth plan` loads it, with this
    /// environment for `${...}`) instead of the job table the last apply recorded.
    #[arg(long, value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// Where apply and serve recorded the jobs (the Backups with their repository and password).
    #[arg(
        long,
        env = "BERTH_STATE_DIR",
        default_value = "/var/lib/berth",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,
}

/// `berth restore`.
#[derive(Args, Debug, Clone)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["volume", "path", "dump"]))]
pub struct RestoreArgs {
    #[command(flatten)]
    pub backup: BackupRef,
    /// `latest`, or a snapshot id (or its prefix) from `berth backups`.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// A volume of the Backup, `STACK/VOLUME`: its users are stopped, its content replaced by
    /// the snapshot's, its users started again.
    #[arg(long, value_name = "STACK/VOLUME")]
    pub volume: Option<String>,
    /// A host path of the Backup: restored in place.
    #[arg(long, value_name = "/ABS/PATH")]
    pub path: Option<PathBuf>,
    /// A dump of the Backup (its `file:`), written to `--to`.
    #[arg(long, value_name = "NAME", requires = "to")]
    pub dump: Option<String>,
    /// Where `--dump` writes the dumped file (replaced once it is complete).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["volume", "path"])]
    pub to: Option<PathBuf>,
}

/// `berth backups`.
#[derive(Args, Debug, Clone)]
pub struct BackupsArgs {
    #[command(flatten)]
    pub backup: BackupRef,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The Backup named by `r`, from the config folder or the recorded job table; or the exit
/// code (problems printed): 1 the config or the state cannot be read, 2 no such Backup.
fn load(r: &BackupRef, instance: &str) -> Result<BackupSpec, u8> {
    let (found, names, place) = match &r.config {
        Some(dir) => {
            let env: BTreeMap<String, String> = std::env::vars().collect();
            let desired = crate::compose::load_dir(dir, &env).map_err(|diags| {
                for d in &diags.0 {
                    eprintln!("{d}");
                }
                eprintln!("{} problem(s) found in {}.", diags.0.len(), dir.display());
                1u8
            })?;
            pick(
                desired.jobs.backups(),
                &r.backup,
                format!("{} declares", dir.display()),
            )
        }
        None => {
            let st = crate::jobs::state::load(&r.state_dir, instance).map_err(|e| {
                eprintln!("error: {e}");
                1u8
            })?;
            let backups = st.table.iter().filter_map(|(n, j)| match &j.task {
                crate::model::jobs::Task::Backup(b) => Some((n.as_str(), &**b)),
                _ => None,
            });
            pick(
                backups,
                &r.backup,
                format!(
                    "the last applied config (recorded in {}) declares",
                    r.state_dir.display()
                ),
            )
        }
    };
    found.ok_or_else(|| {
        eprintln!(
            "error: {place} no Backup {:?} (backups: {})",
            r.backup,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
        2
    })
}

/// The Backup `name` among `backups`, the names there are, and where they come from.
fn pick<'a>(
    backups: impl Iterator<Item = (&'a str, &'a BackupSpec)>,
    name: &str,
    place: String,
) -> (Option<BackupSpec>, Vec<String>, String) {
    let mut found = None;
    let mut names = Vec::new();
    for (n, b) in backups {
        if n == name {
            found = Some(b.clone());
        }
        names.push(n.to_string());
    }
    (found, names, place)
}

async fn context(instance: &str) -> Result<Context, u8> {
    match Engine::connect().await {
        Ok(e) => Ok(Context::new(e.with_instance(instance))),
        Err(e) => {
            eprintln!("error: {e}");
            Err(1)
        }
    }
}

/// `berth restore`: exit code.
pub async fn restore_command(args: &RestoreArgs, instance: &str) -> u8 {
    let spec = match load(&args.backup, instance) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let target = match target(&spec, args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let cx = match context(instance).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let started = std::time::Instant::now();
    match restore::restore(&cx, &spec, &args.snapshot, &target).await {
        Ok(snap) => {
            let to = match &target {
                Target::Volume(v) => format!("volume {v}"),
                Target::Path(p) => p.display().to_string(),
                Target::Dump { to, .. } => to.display().to_string(),
            };
            println!(
                "Restored {} from snapshot {} ({}) into {to} in {:.1}s.",
                target.source(),
                snap.short_id,
                snap.time,
                started.elapsed().as_secs_f64()
            );
            0
        }
        Err(e) => {
            eprintln!("error: restore failed: {e}");
            1
        }
    }
}

fn target(spec: &BackupSpec, args: &RestoreArgs) -> Result<Target, String> {
    if let Some(v) = &args.volume {
        return spec
            .volumes
            .iter()
            .find(|r| r.is(v))
            .map(|r| Target::Volume(r.clone()))
            .ok_or_else(|| format!("Backup {} does not back up volume {v}", spec.name));
    }
    if let Some(p) = &args.path {
        return spec
            .paths
            .iter()
            .find(|q| *q == p)
            .map(|q| Target::Path(q.clone()))
            .ok_or_else(|| format!("Backup {} does not back up path {}", spec.name, p.display()));
    }
    if let (Some(d), Some(to)) = (&args.dump, &args.to) {
        return spec
            .dumps
            .iter()
            .find(|x| x.file == *d)
            .map(|x| Target::Dump {
                file: x.file.clone(),
                to: to.clone(),
            })
            .ok_or_else(|| format!("Backup {} has no dump {d}", spec.name));
    }
    Err("say what to restore: --volume, --path or --dump with --to".into())
}

#[derive(serde::Serialize)]
struct Row<'a> {
    time: &'a str,
    id: &'a str,
    short_id: &'a str,
    source: &'a str,
    commit: Option<&'a str>,
    /// Bytes of the source (restic ≥ 0.17 reports them with the snapshot).
    bytes: Option<u64>,
}

/// `berth backups`: exit code.
pub async fn backups_command(args: &BackupsArgs, instance: &str) -> u8 {
    let spec = match load(&args.backup, instance) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let cx = match context(instance).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let list = match restore::snapshots(&cx, &spec).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot list the snapshots of {}: {e}", spec.name);
            return 1;
        }
    };
    let rows: Vec<Row> = list
        .iter()
        .map(|s| Row {
            time: &s.time,
            id: &s.id,
            short_id: &s.short_id,
            source: s.tag(TAG_SOURCE).unwrap_or("?"),
            commit: s.tag(TAG_COMMIT),
            bytes: s.summary.as_ref().map(|x| x.total_bytes_processed),
        })
        .collect();
    if args.json {
        match serde_json::to_string_pretty(&rows) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
        return 0;
    }
    println!(
        "{:<20}  {:<8}  {:<40}  {:>10}",
        "TIME", "ID", "SOURCE", "SIZE"
    );
    for r in &rows {
        let time = r.time.get(..19).unwrap_or(r.time).replace('T', " ");
        let size = r
            .bytes
            .map(super::backup::human_bytes)
            .unwrap_or_else(|| "-".into());
        println!(
            "{time:<20}  {:<8}  {:<40}  {size:>10}",
            r.short_id, r.source
        );
    }
    println!("{} snapshot(s) of {}.", rows.len(), spec.name);
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        r: RestoreArgs,
    }

    fn spec() -> BackupSpec {
        let mut s = crate::restic::tests::spec("/srv/restic");
        s.volumes = vec![crate::model::jobs::VolumeRef {
            stack: "blog".into(),
            volume: "dbdata".into(),
            engine_name: "blog_dbdata".into(),
            folder: "apps/blog".into(),
        }];
        s.paths = vec![PathBuf::from("/etc/berth")];
        s.dumps = vec![crate::model::jobs::Dump {
            service: crate::model::jobs::ServiceRef {
                stack: "blog".into(),
                service: "db".into(),
            },
            command: vec!["pg_dumpall".into()],
            file: "blog.sql".into(),
        }];
        s
    }

    fn parse(args: &[&str]) -> Result<RestoreArgs, clap::Error> {
        let mut all = vec!["restore", "nightly", "--config", "/c"];
        all.extend(args);
        T::try_parse_from(all).map(|t| t.r)
    }

    #[test]
    fn what_to_restore_is_one_source_of_the_backup() {
        let s = spec();
        let t = |a: &[&str]| target(&s, &parse(a).unwrap());
        // By the stack's folder or by its name.
        for v in ["apps/blog/dbdata", "blog/dbdata"] {
            assert_eq!(
                t(&["--volume", v]).unwrap(),
                Target::Volume(s.volumes[0].clone())
            );
        }
        assert_eq!(
            t(&["--path", "/etc/berth"]).unwrap(),
            Target::Path("/etc/berth".into())
        );
        assert_eq!(
            t(&["--dump", "blog.sql", "--to", "/tmp/b.sql"]).unwrap(),
            Target::Dump {
                file: "blog.sql".into(),
                to: "/tmp/b.sql".into()
            }
        );
        assert_eq!(
            t(&["--volume", "x/y"]).unwrap_err(),
            "Backup nightly does not back up volume x/y"
        );
        assert_eq!(
            t(&["--dump", "x.sql", "--to", "/t"]).unwrap_err(),
            "Backup nightly has no dump x.sql"
        );
        // Exactly one source; a dump needs --to.
        assert!(parse(&[]).is_err());
        assert!(parse(&["--volume", "a/b", "--path", "/x"]).is_err());
        assert!(parse(&["--dump", "blog.sql"]).is_err());
        assert!(parse(&["--path", "/x", "--to", "/y"]).is_err());
    }
}
