//! `berth serve`'s command line: start-up errors a first user meets, and `--help` agreeing with
//! the README's settings table.

use std::process::Command;

fn berth(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env_remove("BERTH_WEBHOOK_SECRET")
        .env_remove("BERTH_LISTEN")
        .envs(env.iter().copied())
        .output()
        .expect("run berth");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn listen_address_in_use_names_the_address_and_the_flag() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let state = tempfile::tempdir().unwrap();
    let (code, _, stderr) = berth(
        &[
            "serve",
            "--repo",
            "file:///nonexistent/berth-test.git",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--insecure-no-webhook-secret",
            "--listen",
            &addr,
        ],
        &[],
    );
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.trim_end().lines().last(),
        Some(
            format!(
                "error: cannot listen on {addr} (--listen / BERTH_LISTEN): address already in use"
            )
            .as_str()
        ),
        "{stderr}"
    );
    // The same through the environment variable.
    let (code, _, stderr) = berth(
        &[
            "serve",
            "--repo",
            "file:///nonexistent/berth-test.git",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--insecure-no-webhook-secret",
        ],
        &[("BERTH_LISTEN", &addr)],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

/// Every row of the README's generated settings table is in `berth serve --help`: the flag, its
/// environment variable and its default.
#[test]
fn serve_help_and_the_readme_settings_table_agree() {
    let (code, help, _) = berth(&["serve", "--help"], &[]);
    assert_eq!(code, 0);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let (_, table) = readme
        .split_once("<!-- serve-settings:")
        .expect("README has the serve settings table");
    let rows: Vec<&str> = table
        .lines()
        .skip(3)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(rows.len() > 20, "{rows:?}");
    for row in rows {
        let cells: Vec<&str> = row
            .split(" | ")
            .map(|c| c.trim_matches(['|', ' ']))
            .collect();
        let code = |c: &str| c.trim_matches('`').trim_end_matches(" …").to_string();
        let (flag, env, default) = (code(cells[0]), code(cells[1]), cells[3]);
        if flag != "—" {
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}[")),
                "{flag} not in --help"
            );
            assert!(
                help.contains(&format!("[env: {env}=]")),
                "{env} not in --help"
            );
        } else {
            assert!(help.contains(&format!("  {env}  ")), "{env} not in --help");
        }
        if default != "—" {
            let shown = default.trim_matches('`');
            let line = help
                .lines()
                .skip_while(|l| !l.contains(&env) && !l.contains(&format!("{flag} ")))
                .take(2)
                .collect::<String>();
            assert!(
                line.contains(&format!("[default: {shown}]")),
                "{flag} / {env}: README default {shown}, --help: {line}"
            );
        }
    }
}
