//! `kind: Prune` on a test host's own Engine: unused images go, the images of the current and
//! the previous applied config stay, and a revert to the previous config finds its image (no
//! registry here: a missing image would fail the apply).

use std::time::Duration;

use crate::firewall::{Cfg, code};
use crate::host::TestHost;

fn stack(image: &str) -> String {
    format!("services:\n  app:\n    image: {image}\n    pull_policy: missing\n")
}

const PRUNE: &str = "kind: Prune\nname: prune-images\nschedule: \"0 2 * * 0\"\nkeep_commits: 1\n";

#[test]
fn prune_keeps_the_images_of_the_current_and_previous_configs() {
    let host = TestHost::boot_inner_docker("prune", &[]);
    // Five distinct local images (a label each) and berth-test/app:1 under them.
    for v in ["a", "b", "c", "d", "z"] {
        host.ok(&format!(
            "printf 'FROM berth-test/app:1\\nLABEL v={v}\\n' | docker build -q -t prune/{v}:1 - >/dev/null"
        ));
    }
    let cfg = Cfg::new(&host, "prune");
    cfg.write("berth.yaml", PRUNE);
    // A prune before any apply refuses: it cannot know what a revert needs.
    let early = host.berth(&[
        "--instance",
        &cfg.world.instance,
        "jobs",
        "run",
        "prune-images",
    ]);
    assert_eq!(
        early.code, 2,
        "no job table yet: {}{}",
        early.stdout, early.stderr
    );
    for v in ["a", "b", "c"] {
        cfg.write("app/compose.yaml", &stack(&format!("prune/{v}:1")));
        code(&cfg.berth("apply"), 0);
    }
    let run = host.berth(&[
        "--instance",
        &cfg.world.instance,
        "jobs",
        "run",
        "prune-images",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let left = host.ok("docker images --format '{{.Repository}}:{{.Tag}}' | sort");
    for kept in ["prune/b:1", "prune/c:1"] {
        assert!(
            left.lines().any(|l| l == kept),
            "{kept} was pruned:\n{left}"
        );
    }
    for gone in ["prune/a:1", "prune/d:1", "prune/z:1", "berth-test/app:1"] {
        assert!(!left.lines().any(|l| l == gone), "{gone} was kept:\n{left}");
    }
    // The revert finds its image: the apply needs no pull.
    cfg.write("app/compose.yaml", &stack("prune/b:1"));
    code(&cfg.berth("apply"), 0);
    let jobs = host.berth(&["--instance", &cfg.world.instance, "jobs"]);
    assert!(jobs.stdout.contains("prune-images"), "{}", jobs.stdout);
    let _ = Duration::ZERO;
}
