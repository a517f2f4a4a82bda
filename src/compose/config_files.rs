//! Files of the config repository that a service bind-mounts (the Caddyfile / prometheus.yml
//! pattern): their content digests enter the service's spec, so a changed file reaches its
//! container; and `x-berth: {on_config_change: ...}`, how the service takes such a change.
//!
//! A bind source counts when it lies inside the config root (the folder given to `load_dir`),
//! also after resolving symlinks. A file's digest is the sha256 of its content; a folder's is
//! the sha256 of its sorted relative paths with each file's digest (a symlink inside it counts by
//! its target text and is never followed, so nothing outside the root is read). Folders are
//! bounded ([`MAX_FILES`], [`MAX_BYTES`]): a larger one is not tracked, with a note.
//!
//! A folder counts only when mounted read-only: a writable folder is the container's data
//! (`./pgdata:/var/lib/postgresql/data`), which the container itself changes; tracking it would
//! replace the container after every write when berth runs on a working copy. A file counts
//! either way (a Caddyfile is often mounted without `:ro`).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::read::*;
use super::yaml::{Node, Pos, Value};
use crate::model::{ConfigChangeAction, MountSource, ServiceSpec};

/// The most files a bind-mounted folder may hold to be tracked.
pub const MAX_FILES: usize = 2_000;
/// The most bytes a bind-mounted file or folder may hold to be tracked.
pub const MAX_BYTES: u64 = 64 << 20;

/// Why a folder is not tracked.
#[derive(Debug, thiserror::Error)]
enum DigestError {
    #[error("it holds more than {MAX_FILES} files")]
    TooManyFiles,
    #[error("it holds more than {} MiB", MAX_BYTES >> 20)]
    TooLarge,
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Fill `s.config_files` from its bind mounts. `pos`: where the service's `volumes` are.
pub(super) fn collect(cx: &mut Cx, st: &StackCtx, s: &mut ServiceSpec, pos: Pos, path: &str) {
    let Some(root) = st.root.as_deref() else {
        return;
    };
    for m in &s.mounts {
        let MountSource::Bind { path: src, .. } = &m.source else {
            continue;
        };
        let src = Path::new(src);
        let Ok(rel) = src.strip_prefix(root) else {
            continue;
        };
        // Resolve symlinks: a link inside the repository to a host file is not a repo file.
        let Ok(real) = src.canonicalize() else {
            continue; // missing: the Engine creates it; nothing to track
        };
        if !real.starts_with(root) {
            continue;
        }
        if real.is_dir() && !m.read_only {
            continue;
        }
        // A folder's key ends in `/`: the planner tells a mounted folder (which shows new
        // files to the container by itself) from a mounted file (which does not).
        let mut key = rel.to_string_lossy().into_owned();
        if real.is_dir() {
            key.push('/');
        }
        match digest(&real) {
            Ok(d) => {
                if real.is_dir() && real.join("Caddyfile").is_file() && s.caddyfile.is_none() {
                    s.caddyfile = Some(format!("{}/Caddyfile", m.target.trim_end_matches('/')));
                } else if real.file_name().is_some_and(|n| n == "Caddyfile") {
                    cx.note(
                        pos,
                        &child(path, "volumes"),
                        format!(
                            "{key} is mounted as a single file: a change recreates the container. Mount its folder (e.g. ./caddy:/etc/caddy:ro) to have it validated with `caddy adapt` and reloaded instead"
                        ),
                    );
                }
                s.config_files.insert(key, d);
            }
            Err(e) => cx.note(
                pos,
                &child(path, "volumes"),
                format!(
                    "bind source {key:?} is not tracked ({e}): a change to it does not replace \
                     the container"
                ),
            ),
        }
    }
}

fn digest(real: &Path) -> Result<String, DigestError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| DigestError::Io { path, source }
    };
    let meta = std::fs::metadata(real).map_err(io(real))?;
    if meta.is_file() {
        if meta.len() > MAX_BYTES {
            return Err(DigestError::TooLarge);
        }
        let mut budget = MAX_BYTES;
        return Ok(format!("sha256:{}", file_digest(real, &mut budget)?));
    }
    let mut entries = Vec::new();
    walk(real, real, &mut entries)?;
    entries.sort();
    let mut budget = MAX_BYTES;
    let mut h = Sha256::new();
    for (rel, kind) in entries {
        let line = match kind {
            Entry::File => file_digest(&real.join(&rel), &mut budget)?,
            Entry::Link(target) => format!("link:{target}"),
        };
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(line.as_bytes());
        h.update([b'\n']);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    File,
    Link(String),
}

/// Every file and symlink below `dir` (relative to `base`), symlinks not followed.
fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Entry)>) -> Result<(), DigestError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| DigestError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let p = entry.path();
        let t = entry.file_type().map_err(io(&p))?;
        let rel = p
            .strip_prefix(base)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        if t.is_symlink() {
            let target = std::fs::read_link(&p).map_err(io(&p))?;
            out.push((rel, Entry::Link(target.to_string_lossy().into_owned())));
        } else if t.is_dir() {
            walk(base, &p, out)?;
        } else if t.is_file() {
            out.push((rel, Entry::File));
        }
        if out.len() > MAX_FILES {
            return Err(DigestError::TooManyFiles);
        }
    }
    Ok(())
}

/// Hex sha256 of a file, charging its size to `budget`.
fn file_digest(p: &Path, budget: &mut u64) -> Result<String, DigestError> {
    let io = |source| DigestError::Io {
        path: p.display().to_string(),
        source,
    };
    let f = std::fs::File::open(p).map_err(io)?;
    let mut h = Sha256::new();
    // Read at most one byte past the budget, to tell "exactly at" from "over".
    let n = std::io::copy(&mut f.take(*budget + 1), &mut HashWriter(&mut h)).map_err(io)?;
    if n > *budget {
        return Err(DigestError::TooLarge);
    }
    *budget -= n;
    Ok(hex::encode(h.finalize()))
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The keys of a service's `x-berth:`.
pub const X_BERTH_KEYS: &[&str] = &["on_config_change", "routes", "expose_publicly"];

/// What a service's `x-berth:` says.
#[derive(Default)]
pub(super) struct XBerth {
    pub on_config_change: Option<ConfigChangeAction>,
    pub routes: Vec<crate::model::edge::RouteSpec>,
    pub expose_publicly: bool,
}

/// The service's `x-berth:` mapping: `on_config_change`, `routes` (see [`super::routes`]) and
/// `expose_publicly`. Other keys are errors (it is berth's own extension, so a typo is caught).
pub(super) fn x_berth(cx: &mut Cx, n: &Node, path: &str, stack: &str, service: &str) -> XBerth {
    let mut out = XBerth::default();
    let Some(m) = as_map(cx, n, path) else {
        return out;
    };
    super::routes::known_keys(cx, m, path, "x-berth", X_BERTH_KEYS);
    if let Some(r) = get(m, "routes") {
        out.routes = super::routes::service_routes(cx, r, &child(path, "routes"), stack, service);
    }
    if let Some(b) = get(m, "expose_publicly") {
        out.expose_publicly = boolean(cx, b, &child(path, "expose_publicly")).unwrap_or(false);
    }
    out.on_config_change = on_config_change(cx, m, path);
    out
}

/// `on_config_change: {signal: SIGHUP}` or `{exec: [...]}`.
fn on_config_change(cx: &mut Cx, m: &Map, path: &str) -> Option<ConfigChangeAction> {
    let on = get(m, "on_config_change")?;
    let op = child(path, "on_config_change");
    let om = as_map(cx, on, &op)?;
    super::routes::known_keys(cx, om, &op, "on_config_change", &["signal", "exec"]);
    match (get(om, "signal"), get(om, "exec")) {
        (Some(_), Some(_)) | (None, None) => {
            cx.err(on.pos, &op, "set exactly one of `signal` and `exec`");
            None
        }
        (Some(sn), None) => {
            let sp = child(&op, "signal");
            let sig = match &sn.value {
                Value::Int(i) => i.to_string(),
                _ => string(cx, sn, &sp)?,
            };
            if valid_signal(&sig) {
                Some(ConfigChangeAction::Signal(sig))
            } else {
                cx.err(
                    sn.pos,
                    &sp,
                    format!("invalid signal {sig:?} (use a name such as SIGHUP, or a number)"),
                );
                None
            }
        }
        (None, Some(en)) => {
            let ep = child(&op, "exec");
            let argv = command(cx, en, &ep)?;
            if argv.is_empty() || argv[0].is_empty() {
                cx.err(en.pos, &ep, "the command must not be empty");
                return None;
            }
            Some(ConfigChangeAction::Exec(argv))
        }
    }
}

/// `SIGHUP`, `HUP`, `SIGRTMIN+3` or `1`..`64`, as the Engine's kill endpoint takes them.
fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '+' || c == '-')
}
