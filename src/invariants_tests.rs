//! The invariants of ARCHITECTURE.md that a scan of the sources can check: which files may use
//! each outside system's crate (one adapter per system), and that the planner does no IO.
//! Adjust the tables, not the code. A path ending in `/` allows everything under it.

use std::path::{Path, PathBuf};

/// Crate → the files that may use it (as a path's first segment: `bollard::`, `use gix::...`).
const ADAPTERS: &[(&str, &[&str])] = &[
    ("bollard", &["src/docker/"]),
    ("hyper", &["src/docker/", "src/serve/server.rs"]),
    ("hyper_util", &["src/docker/", "src/serve/server.rs"]),
    ("hyperlocal", &["src/docker/"]),
    ("gix", &["src/git/"]),
    (
        "reqwest",
        &["src/git/", "src/github/", "src/caddy/client.rs"],
    ),
    ("jsonwebtoken", &["src/github/"]),
    ("ring", &["src/github/jwt.rs"]),
    ("rustls", &["src/tls.rs"]),
    // The HTTP edge: the router (http.rs) and the connection handling (server.rs).
    ("axum", &["src/serve/http.rs", "src/serve/server.rs"]),
    ("anyhow", &["src/main.rs"]),
    // The host: only its adapter runs commands (systemctl, journalctl, `validate`) and looks up
    // users; std's processes elsewhere are main's exit code and jwt.rs's openssl test witness.
    ("nix", &["src/host/"]),
    ("tokio::process", &["src/host/"]),
    (
        "std::process",
        &["src/host/", "src/main.rs", "src/github/jwt.rs"],
    ),
    ("sd_notify", &["src/serve/systemd.rs"]),
];

/// Path prefix → paths it must not use: the planner is pure (no Docker, files, network,
/// processes or clock).
const PURE: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::time::SystemTime",
    "SystemTime::now",
    "Instant::now",
    "tokio",
    "crate::docker",
    "crate::git",
    "crate::github",
    "crate::host",
    "crate::serve",
    "crate::apply",
    "crate::pipeline",
];
const NO_IO: &[(&str, &[&str])] = &[("src/plan", PURE), ("src/kinds", PURE)];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `src/` but this one (its examples name the crates), as (`src/...`
/// path, text).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|p| !p.ends_with(file!()))
        .map(|p| {
            let rel = p.strip_prefix(root()).unwrap().display().to_string();
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
            (rel, text)
        })
        .collect()
}

/// The code of `text` without comments (`//` lines and trailing `// ...`).
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        let line = match line.find(" //") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether `code` uses the path `path` from its root: not preceded by `::` or an identifier
/// character (`http::reqwest::` is gix's module, not the reqwest crate; `my_tokio` is not
/// tokio), and, unless `path` ends in `::`, not followed by one (`crate::github` is not
/// `crate::git`).
fn uses(code: &str, path: &str) -> bool {
    code.match_indices(path).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + path.len()..].chars().next();
        let starts = !matches!(before, Some(c) if c.is_alphanumeric() || c == '_' || c == ':');
        let ends =
            path.ends_with("::") || !matches!(after, Some(c) if c.is_alphanumeric() || c == '_');
        starts && ends
    })
}

fn allowed(file: &str, patterns: &[&str]) -> bool {
    patterns
        .iter()
        .any(|p| file == *p || (p.ends_with('/') && file.starts_with(p)))
}

#[test]
fn each_outside_system_has_one_adapter() {
    let sources: Vec<(String, String)> =
        sources().into_iter().map(|(f, t)| (f, code(&t))).collect();
    let mut wrong = Vec::new();
    for (krate, files) in ADAPTERS {
        let users: Vec<&str> = sources
            .iter()
            .filter(|(_, code)| uses(code, &format!("{krate}::")))
            .map(|(f, _)| f.as_str())
            .collect();
        // Not vacuous: a crate nobody uses means the table (or this scan) is out of date.
        assert!(!users.is_empty(), "no file uses {krate}: update ADAPTERS");
        for f in users {
            if !allowed(f, files) {
                wrong.push(format!("{f} uses {krate} (allowed: {files:?})"));
            }
        }
    }
    assert!(wrong.is_empty(), "adapters leak:\n{}", wrong.join("\n"));
}

#[test]
fn the_planner_does_no_io() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (file, text) in sources() {
        for (prefix, forbidden) in NO_IO {
            if !file.starts_with(prefix) {
                continue;
            }
            checked += 1;
            let code = code(&text);
            for path in *forbidden {
                if uses(&code, path) {
                    wrong.push(format!("{file} uses {path}"));
                }
            }
        }
    }
    assert!(checked > 0, "no file matches NO_IO's prefixes");
    assert!(wrong.is_empty(), "IO in the planner:\n{}", wrong.join("\n"));
}

#[test]
fn the_scan_tells_uses_from_mentions() {
    let c = code("use gix::Url;\n// bollard::Docker in a comment\nlet x = 1; // reqwest::get\n");
    assert!(uses(&c, "gix::"));
    assert!(!uses(&c, "bollard::"));
    assert!(!uses(&c, "reqwest::"));
    assert!(!uses(
        "use gix::protocol::http::reqwest::Options;",
        "reqwest::"
    ));
    assert!(!uses("let my_tokio = 1;", "tokio"));
    assert!(uses("#[tokio::test]", "tokio"));
    assert!(uses("    tokio::spawn(f);", "tokio"));
    assert!(allowed("src/docker/ops.rs", &["src/docker/"]));
    assert!(!allowed("src/dockerx.rs", &["src/docker/"]));
}
