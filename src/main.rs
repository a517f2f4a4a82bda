//! The `berth` command line.
//!
//! Exit codes (documented in README.md):
//! - 0: success; for `plan`, nothing would change.
//! - 1: error (invalid config, Docker unreachable, a failed apply step, a plan that cannot be applied).
//! - 2: `plan` only: changes are pending (terraform's `-detailed-exitcode` convention);
//!   `jobs run`, `restore`, `backups` only: no such job / Backup.
//! - 64: the command line itself is wrong (usage error).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use berth::apply::{ApplyEvent, ApplyOptions};
use berth::docker::Engine;
use berth::model::Desired;
use berth::pipeline::{self, Flow, Hooks, Mode};
use berth::plan::{Plan, PlanOptions};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "GitOps for a self-hosted server: Compose files in git, applied to Docker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// This berth's instance name: it owns only objects labelled with it.
    #[arg(long, global = true, env = "BERTH_INSTANCE", default_value = berth::model::DEFAULT_INSTANCE)]
    instance: String,
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config folder; print every problem as `path:line:col: message`.
    Validate {
        /// The config folder (stacks at any depth).
        dir: PathBuf,
    },
    /// Show what apply would change, and why. Exit 0: nothing; 2: changes pending; 1: error.
    Plan {
        dir: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: PlanArgs,
    },
    /// Make the Engine match the config folder.
    Apply {
        dir: PathBuf,
        #[command(flatten)]
        opts: PlanArgs,
        /// How long to wait for a container to become healthy.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        health_timeout: Duration,
        /// How many changing Engine requests (pulls, creates, starts, removes) may be in
        /// flight at once; waiting for health takes none.
        #[arg(long, env = "BERTH_PARALLEL", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
        parallel: u16,
    },
    /// Restore a source of a Backup from a restic snapshot (a volume, a host path, a dump).
    Restore(berth::restic::cli::RestoreArgs),
    /// List a Backup's restic snapshots (time, id, source, size).
    Backups(berth::restic::cli::BackupsArgs),
    /// Run the GitOps loop: follow a git branch, take GitHub webhooks, apply, report back.
    Serve(Box<berth::serve::config::ServeArgs>),
    /// List the jobs of the last applied config (last result, next run), or run one now.
    Jobs {
        #[command(subcommand)]
        action: Option<JobsAction>,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
        /// Where apply and serve recorded the jobs.
        #[arg(
            long,
            global = true,
            env = "BERTH_STATE_DIR",
            default_value = "/var/lib/berth"
        )]
        state_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum JobsAction {
    /// Run a job now and record it. Exit 0: it succeeded; 1: it failed or did not start; 2: no
    /// such job.
    Run { name: String },
}

#[derive(Args, Clone)]
struct PlanArgs {
    /// Allow removing everything berth owns when the config declares no stack.
    #[arg(long)]
    allow_empty: bool,
    /// Also remove berth-owned named volumes that left the config (deletes their data).
    #[arg(long)]
    prune_volumes: bool,
    /// Where berth keeps what the Engine cannot hold (which containers took a config reload).
    #[arg(long, env = "BERTH_STATE_DIR", default_value = "/var/lib/berth")]
    state_dir: PathBuf,
}

impl PlanArgs {
    fn options(&self, instance: &str) -> PlanOptions {
        pipeline::plan_options(instance, self.allow_empty, self.prune_volumes)
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    berth::compose::parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(&cli.log_format, matches!(cli.command, Command::Serve(_)));
    // The one-shot commands wait on the Engine on one thread; the daemon serves webhooks while
    // it reconciles, so it gets worker threads.
    let mut builder = match cli.command {
        Command::Serve(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command, &cli.instance)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: &str, serving: bool) {
    // The daemon logs what it does by default; the one-shot commands print it instead.
    let default = if serving {
        berth::serve::config::SERVE_LOG_DEFAULT
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: not in journald, files or pipes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command, instance: &str) -> Result<u8> {
    match command {
        Command::Serve(args) => {
            let env: BTreeMap<String, String> = std::env::vars().collect();
            let config = berth::serve::config::ServeConfig::resolve(&args, instance, &env)?;
            berth::serve::server::raise_fd_limit();
            berth::serve::config::install_http_limits(config.http);
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!(
                    "signal received: finishing the reconcile in progress, then exiting"
                );
                let _ = tx.send(true);
            });
            berth::serve::run(config, rx).await?;
            Ok(0)
        }
        Command::Restore(args) => Ok(berth::restic::cli::restore_command(&args, instance).await),
        Command::Backups(args) => Ok(berth::restic::cli::backups_command(&args, instance).await),
        Command::Jobs {
            action,
            json,
            state_dir,
        } => {
            let mut out = std::io::stdout();
            Ok(match action {
                None => berth::jobs::cli::list(&state_dir, instance, json, &mut out)?,
                Some(JobsAction::Run { name }) => {
                    berth::jobs::cli::run(&state_dir, instance, &name, &mut out).await?
                }
            })
        }
        Command::Validate { dir } => {
            let desired = match load(&dir) {
                Ok(d) => d,
                Err(code) => return Ok(code),
            };
            // What `plan` would refuse whatever runs: reported here too.
            let errors = berth::plan::config_errors(&desired);
            if !errors.is_empty() {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!(
                    "{} problem(s) that `plan` reports as errors whatever runs; nothing was changed.",
                    errors.len()
                );
                return Ok(1);
            }
            let services: usize = desired.stacks.values().map(|s| s.services.len()).sum();
            println!(
                "{}: valid ({} stacks, {} services, {} host settings, {} jobs)",
                dir.display(),
                desired.stacks.len(),
                services,
                desired.host.len() + usize::from(desired.edge.firewall.is_some()),
                desired.jobs.jobs.len()
            );
            Ok(0)
        }
        Command::Plan { dir, json, opts } => {
            let Some((desired, engine)) = load_and_connect(&dir, instance).await? else {
                return Ok(1);
            };
            let mut hooks = Printer { print_plan: !json };
            let settings = pipeline::Options {
                plan: opts.options(instance),
                apply: ApplyOptions::default(),
                state_dir: Some(opts.state_dir.clone()),
                commit: None,
            };
            let outcome = pipeline::reconcile(&engine, &desired, &settings, Mode::Plan, &mut hooks)
                .await
                .context("cannot read the Engine's or the host's state")?;
            log_requests(&engine);
            let plan = outcome.plan.unwrap_or_default();
            // Job tables, host settings and reloads are compared with the state dir: say which.
            let recorded = pipeline::recorded_state(&opts.state_dir, instance);
            let dir_text = opts.state_dir.display();
            if recorded.is_empty() {
                eprintln!(
                    "note: compared with the state in {dir_text} for instance {instance}, which holds nothing for it: if berth applies with another --state-dir or --instance, pass the same ones"
                );
            } else {
                eprintln!("note: compared with the state in {dir_text} for instance {instance}");
            }
            if json {
                let versioned = JsonPlan {
                    format_version: JSON_PLAN_VERSION,
                    plan: &plan,
                };
                println!("{}", serde_json::to_string_pretty(&versioned)?);
            }
            Ok(match (plan.errors.is_empty(), plan.has_changes()) {
                (false, _) => 1,
                (true, true) => 2,
                (true, false) => 0,
            })
        }
        Command::Apply {
            dir,
            opts,
            health_timeout,
            parallel,
        } => {
            let Some((desired, engine)) = load_and_connect(&dir, instance).await? else {
                return Ok(1);
            };
            let apply_opts = ApplyOptions {
                health_timeout,
                parallel: parallel.into(),
                ..ApplyOptions::default()
            };
            let mut hooks = Printer { print_plan: true };
            let settings = pipeline::Options {
                plan: opts.options(instance),
                apply: apply_opts,
                state_dir: Some(opts.state_dir.clone()),
                commit: None,
            };
            let outcome =
                pipeline::reconcile(&engine, &desired, &settings, Mode::Apply, &mut hooks)
                    .await
                    .context("cannot read the Engine's or the host's state")?;
            log_requests(&engine);
            let plan = outcome.plan.unwrap_or_default();
            let Some((_, result)) = outcome.applied else {
                return Ok(if plan.errors.is_empty() { 0 } else { 1 });
            };
            let report = result.context("apply failed")?;
            println!("Applied: {report}.");
            // Routes that cannot be served were left out: the rest is applied, the exit says so.
            Ok(if plan.errors.is_empty() { 0 } else { 1 })
        }
    }
}

/// `plan --json`'s format. 2: `changes` with addresses, verbs and `needs` edges (1 had
/// kind-by-verb `actions`).
const JSON_PLAN_VERSION: u32 = 3;

#[derive(serde::Serialize)]
struct JsonPlan<'a> {
    format_version: u32,
    #[serde(flatten)]
    plan: &'a Plan,
}

/// The CLI at the pipeline's seams: print the plan, then each step.
struct Printer {
    print_plan: bool,
}

impl Hooks for Printer {
    fn planned(&mut self, plan: &Plan) -> Flow {
        if self.print_plan {
            print!("{}", berth::render::plan_text(plan));
        }
        Flow::Continue
    }

    fn event(&mut self, event: ApplyEvent) {
        println!("{event}");
    }
}

/// Load and validate the config folder; on problems print them all and return exit code 1.
fn load(dir: &Path) -> std::result::Result<Desired, u8> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let desired = berth::compose::load_dir(dir, &env).map_err(|diags| {
        for d in &diags.0 {
            eprintln!("{d}");
        }
        eprintln!("{} problem(s) found; nothing was changed.", diags.0.len());
        1
    })?;
    for note in desired.notes() {
        eprintln!("note: {note}");
    }
    Ok(desired)
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Load the config (on the blocking pool) while connecting to the Engine: the two overlap.
/// `None` when the config has problems (already printed).
async fn load_and_connect(dir: &Path, instance: &str) -> Result<Option<(Desired, Engine)>> {
    let dir = dir.to_path_buf();
    let loading = tokio::task::spawn_blocking(move || load(&dir));
    let engine = Engine::connect().await.map(|e| e.with_instance(instance));
    let Ok(desired) = loading.await.context("config loader crashed")? else {
        return Ok(None);
    };
    Ok(Some((desired, engine?)))
}

/// The Docker API requests of this reconcile (version negotiation excluded), for the log, the
/// tests and the benchmark.
fn log_requests(engine: &Engine) {
    let r = engine.requests();
    tracing::info!(
        total = r.total,
        mutating = r.mutating,
        "docker requests: total={} mutating={}",
        r.total,
        r.mutating
    );
}
