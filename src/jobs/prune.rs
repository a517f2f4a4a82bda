//! `kind: Prune`: unused images go, except those of the current and the last `keep_commits`
//! applied configs (`crate::applied`), so a `git revert` always finds its image.

use std::path::Path;

use crate::applied::Applied;
use crate::docker::Engine;
use crate::model::jobs::{PruneSpec, RunOutcome, RunResult};

/// One prune run. Refuses (a failed run) when the record of applied configs cannot be read or
/// holds nothing yet: without it, berth cannot know which images a revert needs.
pub async fn run(
    engine: &Engine,
    state_dir: &Path,
    instance: &str,
    spec: &PruneSpec,
) -> RunOutcome {
    let failed = |reason: String| RunOutcome {
        result: RunResult::Failed,
        exit_code: None,
        reason: Some(reason),
        log_tail: String::new(),
        snapshots: Vec::new(),
    };
    let applied = match Applied::load(state_dir, instance) {
        Ok(a) => a,
        Err(e) => return failed(format!("{e}: nothing pruned")),
    };
    if applied.entries.is_empty() {
        return failed(
            "no applied config is recorded yet (apply first): nothing pruned".to_string(),
        );
    }
    let keep = applied.keep(spec.keep_commits);
    match engine.prune_images(&keep).await {
        Ok(p) => {
            let mut log = String::new();
            for r in &p.removed {
                log.push_str(&format!("removed {r}\n"));
            }
            for r in &p.refused {
                log.push_str(&format!(
                    "left {r} (the Engine refused: in use or a parent)\n"
                ));
            }
            log.push_str(&format!(
                "{} removed, {} in use, {} kept for the current and last {} applied configs\n",
                p.removed.len(),
                p.in_use,
                p.kept,
                spec.keep_commits
            ));
            RunOutcome {
                result: RunResult::Succeeded,
                exit_code: None,
                reason: None,
                log_tail: log,
                snapshots: Vec::new(),
            }
        }
        Err(e) => failed(format!("prune: {e}")),
    }
}
