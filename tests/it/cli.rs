//! `berth validate / plan / apply` end to end: the real binary against the real Docker Engine,
//! with the Docker CLI as the witness.

use crate::support::{World, docker, docker_run, engine_now, inspect, mutating_events};

/// Two services: `web` depends on a healthy `db`; `web` keeps data in a named volume.
fn two_services(stack: &str, web_image: &str, secret: &str) -> String {
    format!(
        r#"name: {stack}
services:
  web:
    image: {web_image}
    environment:
      API_TOKEN: "{secret}"
    volumes:
      - data:/data
    depends_on:
      db:
        condition: service_healthy
  db:
    image: berth-test/app:1
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 30
volumes:
  data: {{}}
"#
    )
}

#[test]
fn apply_from_empty_then_no_op() {
    let w = World::new("noop");
    let stack = w.stack("app");
    w.write(
        "app/compose.yaml",
        &two_services(&stack, "berth-test/app:1", "tok-1234567"),
    );

    let first = w.berth(&["apply"]).expect(0);
    assert!(
        first
            .stdout
            .contains(&format!("create container {stack}-db-1")),
        "{}",
        first.stdout
    );
    let ids = w.containers();
    assert_eq!(ids.len(), 2, "{ids:?}");
    for name in [format!("{stack}-web-1"), format!("{stack}-db-1")] {
        assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    }
    // Grouped like a Compose project.
    let by_project = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={stack}"),
    ]);
    assert_eq!(by_project.lines().count(), 2);
    // The secret went to the container, not to the output.
    assert!(!first.stdout.contains("tok-1234567") && !first.stderr.contains("tok-1234567"));

    // Second run: nothing to do, no mutation, at most 2 requests.
    let since = engine_now();
    let plan = w.berth(&["plan"]).expect(0);
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);
    let (total, mutating) = plan.requests();
    assert!(total <= 2, "no-op plan made {total} requests");
    assert_eq!(mutating, 0);
    let again = w.berth(&["apply"]).expect(0);
    assert_eq!(
        again.requests().1,
        0,
        "no-op apply mutated:\n{}",
        again.stderr
    );
    assert!(again.requests().0 <= 2);
    assert_eq!(w.containers(), ids, "no-op apply changed containers");
    assert_eq!(
        mutating_events(&w.instance, &since, &engine_now()),
        Vec::<String>::new()
    );
}

#[test]
fn image_change_replaces_one_and_keeps_volume_data() {
    let w = World::new("replace");
    let stack = w.stack("app");
    w.write(
        "app/compose.yaml",
        &two_services(&stack, "berth-test/app:1", "tok"),
    );
    w.berth(&["apply"]).expect(0);
    let web = format!("{stack}-web-1");
    docker(&["exec", &web, "sh", "-c", "echo precious > /data/file"]);
    let before = w.containers();

    w.write(
        "app/compose.yaml",
        &two_services(&stack, "berth-test/app:2", "tok"),
    );
    let plan = w.berth(&["plan"]).expect(2);
    assert!(
        plan.stdout
            .contains("image berth-test/app:1 → berth-test/app:2"),
        "{}",
        plan.stdout
    );
    w.berth(&["apply"]).expect(0);
    let after = w.containers();
    let db = format!("{stack}-db-1");
    assert_eq!(before[&db], after[&db], "db must keep its container");
    assert_ne!(before[&web], after[&web], "web must be replaced");
    assert_eq!(after.len(), 2, "no leftover container: {after:?}");
    let image = inspect(&web, "{{.Config.Image}}");
    assert_eq!(image, "berth-test/app:2");
    let data = docker(&["exec", &web, "cat", "/data/file"]);
    assert_eq!(data.trim(), "precious");
}

#[test]
fn secret_change_is_reported_without_its_value() {
    let w = World::new("secret");
    let stack = w.stack("app");
    w.write(
        "app/compose.yaml",
        &two_services(&stack, "berth-test/app:1", "old-value-111"),
    );
    w.berth(&["apply"]).expect(0);
    w.write(
        "app/compose.yaml",
        &two_services(&stack, "berth-test/app:1", "new-value-222"),
    );
    let plan = w.berth(&["plan"]).expect(2);
    assert!(
        plan.stdout
            .contains("environment API_TOKEN changed (value hidden)"),
        "{}",
        plan.stdout
    );
    let json = w.berth(&["plan", "--json"]).expect(2);
    for out in [&plan.stdout, &plan.stderr, &json.stdout, &json.stderr] {
        assert!(
            !out.contains("old-value-111") && !out.contains("new-value-222"),
            "{out}"
        );
    }
    let parsed: serde_json::Value =
        serde_json::from_str(&json.stdout).expect("plan --json is JSON");
    assert_eq!(parsed["format_version"], 3);
    assert_eq!(parsed["changes"][0]["op"], "replace");
    assert_eq!(parsed["changes"][0]["addr"]["kind"], "container");
}

#[test]
fn removed_service_is_pruned_and_its_volume_kept() {
    let w = World::new("prune");
    let stack = w.stack("app");
    w.write(
        "app/compose.yaml",
        &two_services(&stack, "berth-test/app:1", "tok"),
    );
    w.berth(&["apply"]).expect(0);
    let web = format!("{stack}-web-1");
    docker(&["exec", &web, "sh", "-c", "echo keep > /data/file"]);
    // Drop `web` (and its depends_on) from the config.
    w.write(
        "app/compose.yaml",
        &format!(
            "name: {stack}\nservices:\n  db:\n    image: berth-test/app:1\n    healthcheck:\n      test: [\"CMD\", \"wget\", \"-q\", \"-O-\", \"http://127.0.0.1:8080/\"]\n      interval: 1s\n"
        ),
    );
    let plan = w.berth(&["plan"]).expect(2);
    assert!(
        plan.stdout.contains("service removed from config"),
        "{}",
        plan.stdout
    );
    w.berth(&["apply"]).expect(0);
    let names: Vec<String> = w.containers().into_keys().collect();
    assert_eq!(names, [format!("{stack}-db-1")]);
    let volume = format!("{stack}_data");
    let data = docker_run(&[
        "--rm",
        "-v",
        &format!("{volume}:/data"),
        "berth-test/busybox:1",
        "cat",
        "/data/file",
    ]);
    assert_eq!(data.trim(), "keep");
}

#[test]
fn unmanaged_containers_are_never_touched() {
    let w = World::new("unmanaged");
    let stack = w.stack("app");
    // A container berth does not own, holding the name berth wants, and one unrelated.
    let squatter = format!("{stack}-web-1");
    let bystander = format!("{}-bystander", w.instance);
    for name in [&squatter, &bystander] {
        docker_run(&["-d", "--name", name, "berth-test/busybox:1"]);
    }
    w.adopt(&squatter);
    w.adopt(&bystander);
    let squatter_id = inspect(&squatter, "{{.Id}}");
    w.write(
        "app/compose.yaml",
        &format!("name: {stack}\nservices:\n  web:\n    image: berth-test/app:1\n"),
    );
    let plan = w.berth(&["plan"]).expect(1);
    assert!(plan.stdout.contains("does not own"), "{}", plan.stdout);
    let apply = w.berth(&["apply"]).expect(1);
    assert!(
        apply.stdout.contains("Nothing will be changed"),
        "{}",
        apply.stdout
    );
    assert_eq!(inspect(&squatter, "{{.Id}}"), squatter_id);
    assert_eq!(inspect(&squatter, "{{.State.Running}}"), "true");
    assert_eq!(inspect(&bystander, "{{.State.Running}}"), "true");
    // With the name free, berth applies and still leaves the bystander alone.
    docker(&["rm", "-f", &squatter]);
    w.berth(&["apply"]).expect(0);
    assert_eq!(inspect(&bystander, "{{.State.Running}}"), "true");
}

#[test]
fn depends_on_service_healthy_orders_the_start() {
    let w = World::new("order");
    let stack = w.stack("app");
    w.write(
        "app/compose.yaml",
        &two_services(&stack, "berth-test/app:1", "tok"),
    );
    let out = w.berth(&["apply"]).expect(0);
    let db_pos = out.stdout.find(&format!("{stack}-db-1")).unwrap();
    let web_pos = out.stdout.find(&format!("{stack}-web-1")).unwrap();
    assert!(db_pos < web_pos, "{}", out.stdout);
    // The Engine's own record: web started after db's first passing health check.
    let web_started = inspect(&format!("{stack}-web-1"), "{{.State.StartedAt}}");
    let db_healthy = inspect(
        &format!("{stack}-db-1"),
        "{{range .State.Health.Log}}{{if eq .ExitCode 0}}{{.End}}\n{{end}}{{end}}",
    );
    let first_healthy = db_healthy
        .lines()
        .next()
        .expect("db had a passing health check");
    assert!(
        rfc3339_nanos(first_healthy) < rfc3339_nanos(&web_started),
        "web started at {web_started}, db first healthy at {first_healthy}"
    );
}

/// Compare Docker's RFC 3339 timestamps (same zone, UTC) by their text, padded to nanoseconds.
fn rfc3339_nanos(ts: &str) -> String {
    let ts = ts.trim().trim_end_matches('Z');
    let ts = ts.split('+').next().unwrap_or(ts);
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, "0"));
    format!("{secs}.{frac:0<9}")
}

#[test]
fn broken_compose_file_changes_nothing() {
    let w = World::new("broken");
    let stack = w.stack("app");
    w.write(
        "app/compose.yaml",
        &two_services(&stack, "berth-test/app:1", "tok"),
    );
    w.berth(&["apply"]).expect(0);
    let before = w.containers();
    // Two problems in one file: both must be reported, with line and column.
    w.write(
        "app/compose.yaml",
        &format!(
            "name: {stack}\nservices:\n  web:\n    image: berth-test/app:2\n    imagee: typo\n  db:\n    image: berth-test/app:1\n    ports:\n      - \"80:abc\"\n"
        ),
    );
    let since = engine_now();
    let validate = w.berth(&["validate"]).expect(1);
    assert!(
        validate.stderr.contains("app/compose.yaml:5:5"),
        "{}",
        validate.stderr
    );
    assert!(validate.stderr.contains("imagee"), "{}", validate.stderr);
    assert!(
        validate.stderr.contains("app/compose.yaml:9:"),
        "{}",
        validate.stderr
    );
    let apply = w.berth(&["apply"]).expect(1);
    assert!(apply.stderr.contains("imagee"), "{}", apply.stderr);
    assert_eq!(w.containers(), before);
    assert_eq!(
        mutating_events(&w.instance, &since, &engine_now()),
        Vec::<String>::new()
    );
}

#[test]
fn container_stopped_by_hand_is_started_again() {
    let w = World::new("heal");
    let stack = w.stack("app");
    w.write(
        "app/compose.yaml",
        &format!("name: {stack}\nservices:\n  web:\n    image: berth-test/app:1\n"),
    );
    w.berth(&["apply"]).expect(0);
    let web = format!("{stack}-web-1");
    let id = inspect(&web, "{{.Id}}");
    docker(&["kill", &web]);
    let plan = w.berth(&["plan"]).expect(2);
    assert!(plan.stdout.contains("start container"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("container exited (code 137)"),
        "{}",
        plan.stdout
    );
    w.berth(&["apply"]).expect(0);
    assert_eq!(inspect(&web, "{{.State.Running}}"), "true");
    assert_eq!(
        inspect(&web, "{{.Id}}"),
        id,
        "self-heal starts, it does not replace"
    );
}

#[test]
fn missing_image_that_cannot_be_pulled_names_it() {
    let w = World::new("nopull");
    let stack = w.stack("app");
    w.write(
        "app/compose.yaml",
        &format!(
            "name: {stack}\nservices:\n  ok:\n    image: berth-test/app:1\n  web:\n    image: berth-test/does-not-exist:9\n"
        ),
    );
    let out = w.berth(&["apply"]).expect(1);
    assert!(
        out.stderr.contains("berth-test/does-not-exist:9"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("web"), "{}", out.stderr);
    // The failed pull came before any container change.
    assert!(w.containers().is_empty(), "{:?}", w.containers());
}

#[test]
fn unreachable_docker_says_how_to_fix_it() {
    let w = World::new("nodocker");
    w.write(
        "app/compose.yaml",
        "services:\n  web:\n    image: berth-test/app:1\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["plan"])
        .arg(w.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("DOCKER_HOST"), "{stderr}");
}

/// What `plan` refuses for reasons in the files, `validate` refuses too (with no Engine asked):
/// a `build:` today, a Firewall that locks SSH out.
#[test]
fn validate_refuses_what_plan_refuses_from_the_files() {
    let w = World::new("validate-plan");
    let stack = w.stack("blog");
    w.write(
        "blog/compose.yaml",
        &format!("name: {stack}\nservices:\n  web:\n    build: .\n"),
    );
    let validate = w.berth(&["validate"]).expect(1);
    assert!(
        validate.stderr.contains("build not supported"),
        "{}",
        validate.stderr
    );
    let plan = w.berth(&["plan"]).expect(1);
    assert!(
        plan.stdout.contains("build not supported"),
        "{}",
        plan.stdout
    );

    w.write(
        "blog/compose.yaml",
        &format!("name: {stack}\nservices:\n  web:\n    image: berth-test/app:1\n"),
    );
    w.write(
        "host/berth.yaml",
        // firewalld is not running here: the lockout is still found, from the files alone.
        "kind: Firewall\nbackend: firewalld\nallow:\n  - ports: [443/tcp]\n",
    );
    let validate = w.berth(&["validate"]).expect(1);
    assert!(
        validate.stderr.contains("lock everyone out"),
        "{}",
        validate.stderr
    );
}

/// `plan` says which state dir and instance it compared with, and when that holds nothing for
/// the instance (a plan beside a berth that applies with another `--state-dir`).
#[test]
fn plan_says_which_state_it_compared_with() {
    let w = World::new("plan-state");
    let stack = w.stack("app");
    w.write(
        "app/compose.yaml",
        &format!("name: {stack}\nservices:\n  web:\n    image: berth-test/app:1\n"),
    );
    let state = w.state_dir();
    let plan = w.berth(&["plan"]).expect(2);
    assert!(
        plan.stderr.contains(&format!(
            "compared with the state in {} for instance {}, which holds nothing for it",
            state.display(),
            w.instance
        )),
        "{}",
        plan.stderr
    );
    w.berth(&["apply"]).expect(0);
    let plan = w.berth(&["plan"]).expect(0);
    assert!(
        plan.stderr.contains("compared with the state in")
            && !plan.stderr.contains("holds nothing"),
        "{}",
        plan.stderr
    );
}

#[test]
fn reference_manifests_and_demo_validate() {
    let root = env!("CARGO_MANIFEST_DIR");
    for dir in ["manifests", "examples/demo"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["validate", &format!("{root}/{dir}")])
            .env("BLOG_DB_PASSWORD", "x")
            .env("GRAFANA_ADMIN_PASSWORD", "x")
            .env("CODE_SERVER_PASSWORD", "x")
            .env("RESTIC_REPOSITORY", "/srv/backup/restic")
            .env("RESTIC_PASSWORD", "x")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if dir == "manifests" {
            // SSH hardening, the Fail2Ban jail and its action, sysctls, the backup folder and
            // the firewall (manifests/host).
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("15 host settings"), "{stdout}");
            // The nightly backup, its weekly check and the Sunday image prune (manifests/maintenance).
            assert!(stdout.contains("3 jobs"), "{stdout}");
        }
    }
}
