//! A file of the config repository bind-mounted into a container (the Caddyfile pattern):
//! a change reaches the container — by a recreate by default, or by a reload in place with
//! `x-berth: {on_config_change: …}` — and the plan says which file changed.

use crate::support::{World, docker, inspect};

fn site(stack: &str, extra: &str) -> String {
    format!(
        r#"name: {stack}
services:
  web:
    image: berth-test/app:latest
    volumes:
      - ./index.html:/www/index.html:ro
{extra}"#
    )
}

fn served(container: &str) -> String {
    docker(&[
        "exec",
        container,
        "wget",
        "-q",
        "-O-",
        "http://127.0.0.1:8080/index.html",
    ])
}

#[test]
fn a_changed_config_file_recreates_the_container_by_default() {
    let w = World::new("cfg-recreate");
    let stack = w.stack("site");
    w.write("site/compose.yaml", &site(&stack, ""));
    w.write("site/index.html", "one\n");
    w.berth(&["apply"]).expect(0);
    let web = format!("{stack}-web-1");
    let id = inspect(&web, "{{.Id}}");
    assert_eq!(served(&web).trim(), "one");
    w.berth(&["plan"]).expect(0);

    // Written beside and renamed over, as editors and git do.
    let tmp = w.write("site/.index.html.new", "two\n");
    std::fs::rename(tmp, w.path().join("site/index.html")).unwrap();
    let plan = w.berth(&["plan"]).expect(2);
    assert!(
        plan.stdout.contains("replace container")
            && plan.stdout.contains("config file site/index.html changed"),
        "{}",
        plan.stdout
    );
    w.berth(&["apply"]).expect(0);
    assert_ne!(inspect(&web, "{{.Id}}"), id, "recreated");
    assert_eq!(served(&web).trim(), "two");
    w.berth(&["plan"]).expect(0);
}

fn folder_site(stack: &str, on_change: &str) -> String {
    format!(
        r#"name: {stack}
services:
  web:
    image: berth-test/app:latest
    volumes:
      - ./www:/www:ro
    x-berth:
      on_config_change:
        exec: {on_change}
"#
    )
}

#[test]
fn on_config_change_exec_reloads_in_place_once() {
    let w = World::new("cfg-reload");
    let stack = w.stack("site");
    let reload = r#"["sh", "-c", "cat /www/index.html > /tmp/reloaded"]"#;
    w.write("site/compose.yaml", &folder_site(&stack, reload));
    w.write("site/www/index.html", "one\n");
    w.berth(&["apply"]).expect(0);
    let web = format!("{stack}-web-1");
    let id = inspect(&web, "{{.Id}}");

    // Written beside and renamed over, as editors and git do.
    let tmp = w.write("site/www/.index.html.new", "two\n");
    std::fs::rename(tmp, w.path().join("site/www/index.html")).unwrap();
    let plan = w.berth(&["plan"]).expect(2);
    assert!(
        plan.stdout.contains("reload container")
            && plan.stdout.contains("config file site/www/ changed"),
        "{}",
        plan.stdout
    );
    let applied = w.berth(&["apply"]).expect(0);
    assert!(applied.stdout.contains("reloaded"), "{}", applied.stdout);
    assert_eq!(inspect(&web, "{{.Id}}"), id, "not recreated");
    assert_eq!(served(&web).trim(), "two");
    assert_eq!(
        docker(&["exec", &web, "cat", "/tmp/reloaded"]).trim(),
        "two"
    );
    // Reloaded once: the next plan has nothing to do.
    let again = w.berth(&["plan"]).expect(0);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);

    // Changing on_config_change itself is a spec change (a recreate); a reload command that
    // then fails is a failed apply, and the container keeps running.
    w.write(
        "site/compose.yaml",
        &folder_site(&stack, r#"["sh", "-c", "exit 3"]"#),
    );
    w.berth(&["apply"]).expect(0);
    let id = inspect(&web, "{{.Id}}");
    w.write("site/www/index.html", "three\n");
    let failed = w.berth(&["apply"]).expect(1);
    assert!(
        failed.stderr.contains("exited with code 3"),
        "{}",
        failed.stderr
    );
    assert_eq!(inspect(&web, "{{.Id}}"), id);
    assert_eq!(inspect(&web, "{{.State.Running}}"), "true");
}

#[test]
fn on_config_change_with_a_single_mounted_file_is_refused() {
    let w = World::new("cfg-file");
    let stack = w.stack("site");
    let reload = r#"    x-berth:
      on_config_change:
        signal: SIGHUP
"#;
    w.write("site/compose.yaml", &site(&stack, reload));
    w.write("site/index.html", "one\n");
    let plan = w.berth(&["plan"]).expect(1);
    assert!(
        plan.stdout.contains("mount its folder instead"),
        "{}",
        plan.stdout
    );
    assert!(w.containers().is_empty());
}

fn caddy_site(stack: &str) -> String {
    // The test-host image has Debian's Caddy 2.6 (no registry here for the official image).
    format!(
        r#"name: {stack}
services:
  caddy:
    image: {image}
    command: ["caddy", "run", "--config", "/etc/caddy/Caddyfile"]
    stop_grace_period: 1s
    volumes:
      - ./caddy:/etc/caddy:ro
"#,
        image = crate::host::IMAGE
    )
}

fn caddyfile(text: &str) -> String {
    format!(":8080 {{\n\trespond \"{text}\"\n}}\n")
}

fn caddy_says(container: &str) -> Option<String> {
    let out = std::process::Command::new("docker")
        .args([
            "exec",
            container,
            "curl",
            "-s",
            "--max-time",
            "2",
            "http://127.0.0.1:8080/",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A Caddyfile in a mounted folder, no `on_config_change`: a change is validated with
/// `caddy adapt` and reloaded in the same container; an invalid one is refused and the
/// running config keeps serving.
#[test]
fn a_changed_caddyfile_is_validated_and_reloaded() {
    let w = World::new("cfg-caddyfile");
    let stack = w.stack("edge");
    w.write("edge/compose.yaml", &caddy_site(&stack));
    w.write("edge/caddy/Caddyfile", &caddyfile("one"));
    w.berth(&["apply"]).expect(0);
    let c = format!("{stack}-caddy-1");
    let id = inspect(&c, "{{.Id}}");
    assert!(crate::host::poll(
        std::time::Duration::from_secs(15),
        || { caddy_says(&c).as_deref() == Some("one") }
    ));

    let tmp = w.write("edge/caddy/.Caddyfile.new", &caddyfile("two"));
    std::fs::rename(tmp, w.path().join("edge/caddy/Caddyfile")).unwrap();
    let plan = w.berth(&["plan"]).expect(2);
    assert!(
        plan.stdout.contains("reload container")
            && plan.stdout.contains(
                "Caddyfile /etc/caddy/Caddyfile: validated with `caddy adapt`, then `caddy reload`"
            ),
        "{}",
        plan.stdout
    );
    w.berth(&["apply"]).expect(0);
    assert_eq!(inspect(&c, "{{.Id}}"), id, "reloaded, not recreated");
    assert_eq!(caddy_says(&c).as_deref(), Some("two"));
    w.berth(&["plan"]).expect(0);

    // An invalid Caddyfile: `caddy adapt` refuses it, the apply fails, "two" keeps serving.
    let tmp = w.write(
        "edge/caddy/.Caddyfile.new",
        ":8080 {\n\tresponnd \"three\"\n}\n",
    );
    std::fs::rename(tmp, w.path().join("edge/caddy/Caddyfile")).unwrap();
    let bad = w.berth(&["apply"]);
    assert_ne!(bad.code, 0, "{}", bad.stdout);
    assert!(
        format!("{}{}", bad.stdout, bad.stderr).contains("responnd"),
        "the adapt error is reported:\n{}{}",
        bad.stdout,
        bad.stderr
    );
    assert_eq!(caddy_says(&c).as_deref(), Some("two"));
    assert_eq!(inspect(&c, "{{.Id}}"), id);
}
