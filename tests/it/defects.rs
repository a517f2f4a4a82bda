//! Black-box acceptance for the core defects of the issue "berth as a planner of many kinds":
//! the real `berth` binary (CLI and `berth serve`) against the real Docker Engine, with the
//! Docker CLI and the GitHub stand-in as witnesses.
//!

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::github_fake::{FakeStatus, GitHubFake};
use crate::serve::Serve;
use crate::support::{World, docker, engine_now, free_port, inspect};

// ---------------------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------------------

/// Poll `cond` (a readiness check, not a sleep) until it holds or `timeout` passes; `context`
/// is evaluated only on failure, for the panic message.
#[track_caller]
fn wait_until(
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for: {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET /` on a loopback port: the body, or None when nothing answers (yet).
fn http_body(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
}

fn volume_exists(name: &str) -> bool {
    docker(&["volume", "ls", "-q", "--filter", &format!("name=^{name}$")])
        .lines()
        .any(|l| l == name)
}

/// A line of a berth output that mentions removing or deleting volume `name`.
fn mentions_volume_removal(out: &str, name: &str) -> bool {
    out.lines().any(|l| {
        l.contains(name) && l.contains("volume") && (l.contains("remove") || l.contains("delete"))
    })
}

/// serve.rs's harness, polling the repository every second.
fn serve_polling(test: &str) -> Serve {
    let mut s = Serve::new(test);
    s.args = vec!["--poll-interval".into(), "1s".into()];
    s
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The overall status (`berth/it`) posts for a commit in one state.
fn overall(fake: &GitHubFake, commit: &str, state: &str) -> Vec<FakeStatus> {
    fake.statuses_for(commit)
        .into_iter()
        .filter(|s| s.context == "berth/it" && s.state == state)
        .collect()
}

fn running(container: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", container])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
}

// ---------------------------------------------------------------------------------------------
// 1–2. Renaming a service that keeps its published port
// ---------------------------------------------------------------------------------------------

fn published(stack: &str, service: &str, port: u16) -> String {
    format!(
        "name: {stack}\nservices:\n  {service}:\n    image: berth-test/app:1\n    ports:\n      - \"127.0.0.1:{port}:8080\"\n"
    )
}

#[test]

fn rename_service_keeping_published_port_converges_cli() {
    let w = World::new("rename");
    let stack = w.stack("app");
    let port = free_port();
    w.write("app/compose.yaml", &published(&stack, "web", port));
    w.berth(&["apply"]).expect(0);
    wait_until(
        "web answers on its port",
        Duration::from_secs(30),
        String::new,
        || http_body(port).is_some(),
    );

    w.write("app/compose.yaml", &published(&stack, "site", port));
    let apply = w.berth(&["apply"]).expect(0);
    let site = format!("{stack}-site-1");
    let names: Vec<String> = w.containers().into_keys().collect();
    assert_eq!(names, std::slice::from_ref(&site), "{}", apply.stdout);
    assert!(running(&site), "{site} is not running");
    assert_eq!(
        docker(&["port", &site, "8080/tcp"]),
        format!("127.0.0.1:{port}")
    );
    wait_until(
        "site answers on the kept port",
        Duration::from_secs(30),
        String::new,
        || http_body(port).as_deref() == Some("app v1"),
    );
    let again = w.berth(&["plan"]).expect(0);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
}

#[test]
fn rename_service_keeping_published_port_converges_in_serve() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let mut s = serve_polling("rename-serve");
    let stack = s.world.stack("app");
    let port = free_port();
    s.push(
        &[("app/compose.yaml", &published(&stack, "web", port))],
        "v1",
    );
    s.start(Some(&fake));
    let (web, site) = (format!("{stack}-web-1"), format!("{stack}-site-1"));
    s.wait_until("web running", Duration::from_secs(60), || running(&web));

    let c2 = s.push(
        &[("app/compose.yaml", &published(&stack, "site", port))],
        "rename web to site",
    );
    s.wait_until(
        "success status for the rename",
        Duration::from_secs(90),
        || {
            !overall(&fake, &c2, "success").is_empty()
                || !overall(&fake, &c2, "failure").is_empty()
                || !overall(&fake, &c2, "error").is_empty()
        },
    );
    assert_eq!(
        overall(&fake, &c2, "success").len(),
        1,
        "{:?}\n--- berth log\n{}",
        fake.statuses_for(&c2),
        s.log()
    );
    let names: Vec<String> = s.world.containers().into_keys().collect();
    assert_eq!(names, std::slice::from_ref(&site));
    assert!(running(&site));
    s.wait_until(
        "site answers on the kept port",
        Duration::from_secs(30),
        || http_body(port).as_deref() == Some("app v1"),
    );
    fake.assert_no_violations();
}

// ---------------------------------------------------------------------------------------------
// 3. A network one stack creates and another uses as external
// ---------------------------------------------------------------------------------------------

fn edge_stack(stack: &str, network: &str) -> String {
    format!(
        "name: {stack}\nservices:\n  proxy:\n    image: berth-test/app:1\n    networks: [edge]\nnetworks:\n  edge:\n    name: {network}\n"
    )
}

fn app_on_external(stack: &str, network: &str) -> String {
    format!(
        "name: {stack}\nservices:\n  web:\n    image: berth-test/app:1\n    networks: [edge]\nnetworks:\n  edge:\n    name: {network}\n    external: true\n"
    )
}

#[test]

fn network_created_by_another_stack_is_not_missing() {
    let w = World::new("xnet");
    let network = format!("{}-edge", w.instance);
    let (edge, app) = (w.stack("edge"), w.stack("app"));
    w.write("edge/compose.yaml", &edge_stack(&edge, &network));
    w.write("app/compose.yaml", &app_on_external(&app, &network));

    let plan = w.berth(&["plan"]);
    assert!(
        !plan.stdout.contains("does not exist") && !plan.stderr.contains("does not exist"),
        "{}{}",
        plan.stdout,
        plan.stderr
    );
    let plan = plan.expect(2);
    assert!(plan.stdout.contains(&network), "{}", plan.stdout);

    // Cold, first run: the creating stack's network comes first.
    w.berth(&["apply"]).expect(0);
    let web = format!("{app}-web-1");
    let attached = inspect(
        &web,
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    );
    assert!(
        attached.split_whitespace().any(|n| n == network),
        "{web} is on [{attached}], not {network}"
    );
    assert!(running(&web) && running(&format!("{edge}-proxy-1")));
    w.berth(&["plan"]).expect(0);
}

#[test]
fn external_network_that_nothing_creates_is_still_an_error() {
    let w = World::new("xnet-missing");
    let network = format!("{}-nowhere", w.instance);
    let app = w.stack("app");
    // Another stack of the config creates a network, just not this one.
    w.write(
        "edge/compose.yaml",
        &edge_stack(&w.stack("edge"), &format!("{}-edge", w.instance)),
    );
    w.write("app/compose.yaml", &app_on_external(&app, &network));
    let plan = w.berth(&["plan"]).expect(1);
    let out = format!("{}{}", plan.stdout, plan.stderr);
    assert!(
        out.lines()
            .any(|l| l.contains(&network) && l.contains("does not exist")),
        "{out}"
    );
    w.berth(&["apply"]).expect(1);
    assert!(w.containers().is_empty(), "{:?}", w.containers());
}

// ---------------------------------------------------------------------------------------------
// 4. Named volumes of a stack that left the config
// ---------------------------------------------------------------------------------------------

/// Stack `keep` (so the empty-config guard never fires) and stack `gone` with a named volume.
fn two_stacks(w: &World) -> String {
    w.write(
        "keep/compose.yaml",
        &format!(
            "name: {}\nservices:\n  web:\n    image: berth-test/app:1\n",
            w.stack("keep")
        ),
    );
    let gone = w.stack("gone");
    w.write(
        "gone/compose.yaml",
        &format!(
            "name: {gone}\nservices:\n  db:\n    image: berth-test/app:1\n    volumes:\n      - data:/data\nvolumes:\n  data: {{}}\n"
        ),
    );
    w.berth(&["apply"]).expect(0);
    let volume = format!("{gone}_data");
    assert!(volume_exists(&volume), "{volume} was not created");
    volume
}

#[test]
fn prune_volumes_in_the_run_where_the_stack_leaves() {
    let w = World::new("prune-same");
    let volume = two_stacks(&w);
    std::fs::remove_dir_all(w.path().join("gone")).unwrap();

    let plan = w.berth(&["plan"]).expect(2);
    assert!(
        !mentions_volume_removal(&plan.stdout, &volume),
        "{}",
        plan.stdout
    );
    let plan = w.berth(&["plan", "--prune-volumes"]).expect(2);
    assert!(
        mentions_volume_removal(&plan.stdout, &volume),
        "{}",
        plan.stdout
    );
    w.berth(&["apply", "--prune-volumes"]).expect(0);
    assert!(!volume_exists(&volume), "{volume} survived --prune-volumes");
    w.berth(&["plan", "--prune-volumes"]).expect(0);
}

#[test]
fn prune_volumes_removes_volume_of_a_stack_that_left() {
    let w = World::new("prune-after");
    let volume = two_stacks(&w);
    std::fs::remove_dir_all(w.path().join("gone")).unwrap();

    // Without --prune-volumes the stack's containers go and its volume stays.
    w.berth(&["apply"]).expect(0);
    assert!(
        volume_exists(&volume),
        "{volume} removed without --prune-volumes"
    );
    let names: Vec<String> = w.containers().into_keys().collect();
    assert_eq!(names, [format!("{}-web-1", w.stack("keep"))]);
    // Nothing to change without --prune-volumes: the volume is kept.
    let plan = w.berth(&["plan"]).expect(0);
    assert!(
        !mentions_volume_removal(&plan.stdout, &volume),
        "{}",
        plan.stdout
    );

    // Afterwards, --prune-volumes still finds it.
    let plan = w.berth(&["plan", "--prune-volumes"]).expect(2);
    assert!(
        mentions_volume_removal(&plan.stdout, &volume),
        "{}",
        plan.stdout
    );
    w.berth(&["apply", "--prune-volumes"]).expect(0);
    assert!(!volume_exists(&volume), "{volume} survived --prune-volumes");
    w.berth(&["plan", "--prune-volumes"]).expect(0);
}

// ---------------------------------------------------------------------------------------------
// 5. Images that cannot be pulled
// ---------------------------------------------------------------------------------------------

fn one_service(stack: &str, image_lines: &str) -> String {
    format!("name: {stack}\nservices:\n  web:\n    {image_lines}\n")
}

#[test]
fn unpullable_image_is_a_permanent_failure() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let mut s = serve_polling("pull-permanent");
    let stack = s.world.stack("a");
    s.push(
        &[(
            "a/compose.yaml",
            &one_service(&stack, "image: berth-test/app:1"),
        )],
        "v1",
    );
    s.start(Some(&fake));
    let web = format!("{stack}-web-1");
    s.wait_until("v1 running", Duration::from_secs(60), || running(&web));
    let id = inspect(&web, "{{.Id}}");

    // An invalid reference (the Engine answers "invalid reference format"), then an image that
    // is not on the Engine with `pull_policy: never`: neither can succeed on a retry.
    let cases = [
        ("image: Bad/Name:1", "invalid reference"),
        (
            "image: berth-test/nosuch:1\n    pull_policy: never",
            "berth-test/nosuch:1",
        ),
    ];
    for (lines, why) in cases {
        let commit = s.push(&[("a/compose.yaml", &one_service(&stack, lines))], why);
        s.wait_until("a failure status", Duration::from_secs(60), || {
            !overall(&fake, &commit, "failure").is_empty()
        });
        let failure = &overall(&fake, &commit, "failure")[0];
        let d = failure.description.clone().unwrap_or_default();
        assert!(d.contains(why), "{d}");
        // Polls keep coming (1s) but the failure is reported once and not retried.
        let permanent = s.metric("berth_reconciles_total", "failure_permanent");
        let transient = s.metric("berth_reconciles_total", "failure_transient");
        let idle = s.metric("berth_idle_checks_total", "");
        s.wait_until("three more polls", Duration::from_secs(20), || {
            s.metric("berth_idle_checks_total", "") >= idle + 3.0
        });
        assert_eq!(
            s.metric("berth_reconciles_total", "failure_permanent"),
            permanent
        );
        assert_eq!(
            s.metric("berth_reconciles_total", "failure_transient"),
            transient,
            "{why}: retried as transient\n{}",
            s.log()
        );
        assert_eq!(overall(&fake, &commit, "failure").len(), 1);
        assert_eq!(inspect(&web, "{{.Id}}"), id, "v1 must keep running");
        assert!(running(&web));
    }
    fake.assert_no_violations();
}

/// Lines of the berth log that carry a plan: its summary line (`Plan: N created, …`).
fn plan_headers(log: &str) -> usize {
    log.lines().filter(|l| l.contains("Plan: ")).count()
}

/// The `retry_in` of each "retry scheduled" line, in seconds.
fn retry_delays(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("retry scheduled"))
        .filter_map(|l| {
            let rest = &l[l.find("retry_in=")? + "retry_in=".len()..];
            let value: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || c.is_ascii_alphabetic())
                .collect();
            let unit_at = value.find(|c: char| c.is_ascii_alphabetic())?;
            let (num, unit) = value.split_at(unit_at);
            let num: f64 = num.parse().ok()?;
            Some(match unit {
                "ns" => num / 1e9,
                "µs" | "us" => num / 1e6,
                "ms" => num / 1e3,
                "s" => num,
                "m" => num * 60.0,
                _ => return None,
            })
        })
        .collect()
}

#[test]

fn unreachable_registry_is_retried_with_one_line_per_retry() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let mut s = serve_polling("pull-transient");
    let stack = s.world.stack("a");
    s.push(
        &[(
            "a/compose.yaml",
            &one_service(&stack, "image: berth-test/app:1"),
        )],
        "v1",
    );
    s.start(Some(&fake));
    let web = format!("{stack}-web-1");
    s.wait_until("v1 running", Duration::from_secs(60), || running(&web));
    let id = inspect(&web, "{{.Id}}");

    // No registry is reachable from here: pulling any remote name fails with a network error
    // (a DNS failure for registry-1.docker.io), which a retry may fix.
    let start_of_c2 = s.log().len();
    let commit = s.push(
        &[(
            "a/compose.yaml",
            &one_service(&stack, "image: berth-test/nosuch:1"),
        )],
        "unpullable while the registry is unreachable",
    );
    let log_of_c2 = || s.log().get(start_of_c2..).unwrap_or_default().to_string();
    s.wait_until("the first retry", Duration::from_secs(60), || {
        !retry_delays(&log_of_c2()).is_empty()
    });
    // The first attempt's statuses (pending, then error) are posted by the write-back task,
    // a moment after its retry line.
    s.wait_until(
        "the first attempt's statuses",
        Duration::from_secs(30),
        || !overall(&fake, &commit, "error").is_empty(),
    );
    let posts_after_first = fake.statuses_for(&commit).len();
    s.wait_until("three retries", Duration::from_secs(90), || {
        retry_delays(&log_of_c2()).len() >= 3
    });
    let log = log_of_c2();
    assert!(
        s.metric("berth_reconciles_total", "failure_transient") >= 3.0,
        "{log}"
    );
    // The plan goes to the log once, at the first attempt; a retry is one line.
    assert!(
        plan_headers(&log) <= 1,
        "the plan was logged {} times over 3 attempts:\n{log}",
        plan_headers(&log)
    );
    // Statuses are not re-posted on every retry.
    assert_eq!(
        fake.statuses_for(&commit).len(),
        posts_after_first,
        "statuses re-posted on retries: {:?}",
        fake.statuses_for(&commit)
    );
    assert!(overall(&fake, &commit, "failure").is_empty());
    // With backoff: the wait grows.
    let delays = retry_delays(&log);
    assert!(delays[2] > delays[0], "no backoff: {delays:?}");
    assert_eq!(inspect(&web, "{{.Id}}"), id, "v1 must keep running");
    fake.assert_no_violations();
}

/// A permanent failure is logged once, however often a poll finds it again (a missing
/// repository is tried at every poll); the message says the folder does not exist.
#[test]
fn a_permanent_failure_is_logged_once_not_at_every_poll() {
    let mut s = serve_polling("perm-once");
    let missing = s.world.path().join("no-such-origin.git");
    s.set_url(&format!("file://{}", missing.display()));
    s.spawn(None);
    s.wait_until("four failed polls", Duration::from_secs(60), || {
        s.metric("berth_reconciles_total", "failure_permanent") >= 4.0
    });
    let log = s.log();
    assert_eq!(
        log.matches("failed permanently").count(),
        1,
        "logged more than once:\n{log}"
    );
    assert!(
        log.contains("no such repository folder"),
        "the error does not say the folder is missing:\n{log}"
    );
}

/// Under serve, a stack whose plan has an error is withheld and the others are applied: the
/// log says exactly that (which stack, why, and that the rest goes ahead), never "Nothing
/// will be changed"; the statuses count stacks.
#[test]
fn serve_names_the_withheld_stack_and_applies_the_others() {
    let rt = runtime();
    let fake = rt.block_on(GitHubFake::start());
    let mut s = serve_polling("withheld");
    let (good, bad) = (s.world.stack("good"), s.world.stack("bad"));
    let commit = s.push(
        &[
            (
                "good/compose.yaml",
                &one_service(&good, "image: berth-test/app:1"),
            ),
            ("bad/compose.yaml", &one_service(&bad, "build: .")),
        ],
        "one good stack, one that cannot be built",
    );
    s.start(Some(&fake));
    s.wait_until("the overall status", Duration::from_secs(60), || {
        !overall(&fake, &commit, "failure").is_empty()
    });
    assert!(running(&format!("{good}-web-1")));
    let log = s.log();
    assert!(
        log.contains(&format!(
            "Withheld, left as they run: stack {bad} (1 error); everything else goes ahead."
        )),
        "{log}"
    );
    assert!(!log.contains("Nothing will be changed"), "{log}");
    let failure = &overall(&fake, &commit, "failure")[0];
    let d = failure.description.clone().unwrap_or_default();
    assert!(
        d.starts_with(&format!(
            "1 of 2 stacks failed; {bad}: {bad}/web: build not supported"
        )),
        "{d}"
    );
    fake.assert_no_violations();
}

// ---------------------------------------------------------------------------------------------
// 6. A container owned by another berth instance
// ---------------------------------------------------------------------------------------------

#[test]
fn owned_by_another_instance_is_named() {
    let w = World::new("owner");
    // Another berth instance (its own World, so it is cleaned up too) on the same Engine
    // created the container this instance wants.
    let other = World::new("owner-other-x");
    let stack = w.stack("app");
    let compose = format!("name: {stack}\nservices:\n  web:\n    image: berth-test/app:1\n");
    other.write("app/compose.yaml", &compose);
    other.berth(&["apply"]).expect(0);
    let web = format!("{stack}-web-1");
    let id = inspect(&web, "{{.Id}}");

    w.write("app/compose.yaml", &compose);
    let plan = w.berth(&["plan"]).expect(1);
    let line = plan
        .stdout
        .lines()
        .chain(plan.stderr.lines())
        .find(|l| l.contains(&web))
        .unwrap_or_else(|| panic!("no error about {web}:\n{}", plan.stdout));
    assert!(
        line.contains(&other.instance),
        "the error does not name instance {}: {line}",
        other.instance
    );
    w.berth(&["apply"]).expect(1);
    assert_eq!(
        inspect(&web, "{{.Id}}"),
        id,
        "the other instance's container was touched"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. A cold deploy waits for health checks side by side
// ---------------------------------------------------------------------------------------------

#[test]

fn cold_deploy_waits_for_health_side_by_side() {
    let w = World::new("sidebyside");
    let stack = w.stack("app");
    let services = ["s1", "s2", "s3", "s4"];
    let mut compose = format!("name: {stack}\nservices:\n");
    for s in services {
        compose.push_str(&format!(
            r#"  {s}:
    image: berth-test/app:1
    command: ["sh", "-c", "sleep 2 && touch /tmp/ready && exec sleep 3600"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 500ms
      timeout: 2s
      retries: 30
"#
        ));
    }
    w.write("app/compose.yaml", &compose);
    let since = engine_now();
    w.berth(&["apply", "--health-timeout", "30s"]).expect(0);
    for s in services {
        let name = format!("{stack}-{s}-1");
        assert_eq!(
            inspect(&name, "{{.State.Health.Status}}"),
            "healthy",
            "{name}"
        );
    }

    // The Engine's own record (`docker events`, nanosecond times): every container had started
    // before the first one turned healthy. (`.State.Health.Log` keeps only 5 probes, so it
    // cannot tell when a container first passed.)
    let events = docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &engine_now(),
        "--filter",
        &w.label(),
        "--filter",
        "type=container",
        "--format",
        "{{.TimeNano}} {{.Action}} {{.Actor.Attributes.name}}",
    ]);
    let at = |action: &str| -> Vec<(u128, String)> {
        events
            .lines()
            .filter_map(|l| {
                let (time, rest) = l.split_once(' ')?;
                let name = rest.strip_prefix(action)?.strip_prefix(' ')?;
                Some((time.parse().ok()?, name.to_string()))
            })
            .collect()
    };
    let starts = at("start");
    let healthy = at("health_status: healthy");
    assert_eq!(starts.len(), services.len(), "{events}");
    assert_eq!(
        healthy
            .iter()
            .map(|h| &h.1)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        services.len(),
        "{events}"
    );
    let last_start = starts.iter().max().unwrap();
    let first_healthy = healthy.iter().min().unwrap();
    assert!(
        last_start.0 < first_healthy.0,
        "{} started after {} was already healthy: health was awaited one after another\n{events}",
        last_start.1,
        first_healthy.1
    );
}
