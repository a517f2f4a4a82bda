//! The shipped alert rules (manifests/monitoring/berth.rules.yml) with Debian's promtool:
//! `check rules` (syntax, expressions) and `test rules` (tests/fixtures/alerts: a stale
//! backup fires after 26 h and not before, a failed check at once, a job failing twice, berth
//! not scraped).

use std::process::Command;

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("manifests/monitoring/berth.rules.yml", "berth.rules.yml"),
        (
            "tests/fixtures/alerts/berth.rules.test.yml",
            "berth.rules.test.yml",
        ),
    ] {
        std::fs::copy(format!("{root}/{from}"), dir.path().join(to)).unwrap();
    }
    for args in [
        ["check", "rules", "berth.rules.yml"],
        ["test", "rules", "berth.rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("promtool (hack/test-tools.sh installs Debian's prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
