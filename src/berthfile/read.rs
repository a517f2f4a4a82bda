//! Typed reads of a `berth.yaml` document, shared by the kinds: key checks with a suggestion,
//! strings, booleans, absolute paths, modes, owners, unit names and `source:` files. Each
//! reports where the value is wrong and returns `None`; none echoes a `content:` text.

use std::path::{Component, Path, PathBuf};

use crate::compose::read::{Cx, clean_path, describe, suggest};
pub(super) use crate::compose::read::{get, key_pos};
use crate::compose::yaml::{Key, Node, Pos, Value};

pub(super) type Map = [(Key, Node)];

/// The largest `source:` file berth reads (it is held in memory and hashed).
pub const MAX_SOURCE_BYTES: u64 = 64 << 20;

/// The unit types a `kind: Unit` name (and an `on_change` unit) may end in.
pub const UNIT_TYPES: &[&str] = &[
    "service",
    "timer",
    "socket",
    "path",
    "mount",
    "target",
    "slice",
    "automount",
    "swap",
];

/// Where the document being read comes from, for reads that look beyond its tree.
pub(super) struct Source<'a> {
    /// The config root, canonical.
    pub root: &'a Path,
    /// The manifest's folder, absolute (`source:` is relative to it).
    pub dir: &'a Path,
    /// The manifest's text: how a number was written (`0644` or `644`).
    pub text: &'a str,
}

/// Report every key of `m` that is not in `known`, with the closest known key as a suggestion
/// (else the list of known keys). `what` names the mapping (`File`, `on_change`).
pub(super) fn check_keys(cx: &mut Cx, m: &Map, path: &str, what: &str, known: &[&str]) {
    for (k, _) in m {
        if known.contains(&k.name.as_str()) {
            continue;
        }
        let hint = match suggest(&k.name, known.iter()) {
            Some(s) => format!("; did you mean `{s}`?"),
            None => format!(" (known keys: {})", known.join(", ")),
        };
        cx.err(
            k.pos,
            path,
            format!("unknown key `{}` in {what}{hint}", k.name),
        );
    }
}

pub(super) fn as_map<'n>(cx: &mut Cx, n: &'n Node, path: &str) -> Option<&'n Map> {
    match &n.value {
        Value::Map(m) => Some(m),
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be a mapping, found {}", v.kind()),
            );
            None
        }
    }
}

/// A YAML string (only: `name: 123` is refused). The message names the type, never the value.
pub(super) fn text(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        v => {
            cx.err(n.pos, path, format!("must be a string, found {}", v.kind()));
            None
        }
    }
}

/// `true`/`false`, also as a string (what `${VAR}` gives).
pub(super) fn boolean(cx: &mut Cx, n: &Node, path: &str) -> Option<bool> {
    match &n.value {
        Value::Bool(b) => Some(*b),
        Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be true or false, found {}", describe(v)),
            );
            None
        }
    }
}

pub(super) fn opt_bool(cx: &mut Cx, m: &Map, key: &str) -> Option<bool> {
    get(m, key).and_then(|n| boolean(cx, n, key))
}

/// The scalar as it is written in the manifest at `pos` (`0644`, `010`, `1.50`), up to the next
/// blank, `,`, `]`, `}` or `#`. `None` when the position is unknown.
pub(super) fn token_at(text: &str, pos: Pos) -> Option<&str> {
    let line = text
        .lines()
        .nth(usize::try_from(pos.line).ok()?.checked_sub(1)?)?;
    let start = line
        .char_indices()
        .nth(usize::try_from(pos.col).ok()?.checked_sub(1)?)?
        .0;
    let rest = &line[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, ',' | ']' | '}' | '#'))
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|t| !t.is_empty())
}

/// An absolute path: no `..`, no trailing `/`, not `/` itself; `.` and doubled slashes are
/// dropped.
pub(super) fn abs_path(cx: &mut Cx, n: &Node, path: &str) -> Option<PathBuf> {
    let s = text(cx, n, path)?;
    let problem = if !s.starts_with('/') {
        Some("must be an absolute path")
    } else if s.contains('\0') {
        Some("must not contain a NUL byte")
    } else if s.ends_with('/') {
        Some("must not end in `/`")
    } else if Path::new(&s)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        Some("must not contain `..`")
    } else {
        None
    };
    if let Some(p) = problem {
        cx.err(n.pos, path, format!("{p}, found {s:?}"));
        return None;
    }
    Some(Path::new(&s).components().collect())
}

/// A permission mode: a string of octal digits (`"0644"`, `"644"`) or a YAML integer written in
/// octal (`0644`, `0o644`: the parser reads it as octal already), at most `0o7777`. A plain
/// decimal integer above 7 (`mode: 644`) is refused: it would mean `0o1204`.
pub(super) fn mode(cx: &mut Cx, n: &Node, path: &str, src: &Source) -> Option<u32> {
    let bad =
        |s: &str| format!("invalid mode {s:?}: use octal digits, e.g. \"0644\" (at most 7777)");
    match &n.value {
        Value::Int(i) => {
            if let Some(tok) = token_at(src.text, n.pos)
                && *i > 7
                && tok.bytes().all(|b| b.is_ascii_digit())
                && !tok.starts_with('0')
            {
                let fix = if tok.bytes().all(|b| b <= b'7') {
                    format!(": 0{tok} or \"{tok}\"")
                } else {
                    ", e.g. 0644 or \"0644\"".to_string()
                };
                cx.err(
                    n.pos,
                    path,
                    format!("{tok} is a decimal number (0o{i:o}); write the mode in octal{fix}"),
                );
                return None;
            }
            match u32::try_from(*i) {
                Ok(m) if m <= 0o7777 => Some(m),
                _ => {
                    cx.err(
                        n.pos,
                        path,
                        format!("mode 0o{i:o} is out of range (at most 0o7777)"),
                    );
                    None
                }
            }
        }
        Value::Str(s) => {
            let t = s.trim();
            let ok = !t.is_empty() && t.len() <= 5 && t.bytes().all(|b| (b'0'..=b'7').contains(&b));
            match u32::from_str_radix(t, 8) {
                Ok(m) if ok && m <= 0o7777 => Some(m),
                _ => {
                    cx.err(n.pos, path, bad(s));
                    None
                }
            }
        }
        v => {
            cx.err(
                n.pos,
                path,
                format!("must be an octal mode like \"0644\", found {}", v.kind()),
            );
            None
        }
    }
}

/// A user or group: a name (`www-data`) or a number (`33`).
pub(super) fn owner(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
    let s = match &n.value {
        Value::Int(i) => {
            if u32::try_from(*i).is_err() {
                cx.err(n.pos, path, format!("{i} is not a valid user or group id"));
                return None;
            }
            return Some(i.to_string());
        }
        _ => text(cx, n, path)?,
    };
    let numeric = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let name_ok = !s.is_empty()
        && !s.starts_with('-')
        && s.len() <= 256
        && s.trim_end_matches('$')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if (numeric && s.parse::<u32>().is_err()) || !name_ok {
        cx.err(
            n.pos,
            path,
            format!("invalid user or group {s:?}: use a name like `www-data` or a number"),
        );
        return None;
    }
    Some(s)
}

/// Why `name` is not a unit name with a type suffix (`hello.service`), if it is not.
pub fn unit_name_problem(name: &str) -> Option<String> {
    let types = || {
        UNIT_TYPES
            .iter()
            .map(|t| format!(".{t}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if name.contains('/') {
        return Some(format!("{name:?} must be a unit name, not a path"));
    }
    let Some((stem, ty)) = name.rsplit_once('.') else {
        return Some(format!("{name:?} must end in a unit type: {}", types()));
    };
    if !UNIT_TYPES.contains(&ty) {
        return Some(format!("{name:?} must end in a unit type: {}", types()));
    }
    if stem.is_empty()
        || name.len() > 255
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-' | '@' | '\\'))
    {
        return Some(format!(
            "{name:?} is not a valid unit name (letters, digits and `:_.-@\\` before the type)"
        ));
    }
    None
}

pub(super) fn unit_name(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
    let s = text(cx, n, path)?;
    if let Some(p) = unit_name_problem(&s) {
        cx.err(n.pos, path, p);
        return None;
    }
    Some(s)
}

/// The bytes of a `source:` file: relative to the manifest's folder, inside the config root
/// (also after resolving symlinks), a regular file of at most [`MAX_SOURCE_BYTES`].
pub(super) fn source_bytes(cx: &mut Cx, n: &Node, path: &str, src: &Source) -> Option<Vec<u8>> {
    let s = text(cx, n, path)?;
    let mut fail = |msg: String| {
        cx.err(n.pos, path, msg);
        None
    };
    if s.is_empty() || Path::new(&s).is_absolute() {
        return fail(format!(
            "must be a path relative to the manifest's folder, found {s:?}"
        ));
    }
    let joined = clean_path(&src.dir.join(&s));
    if !joined.starts_with(src.root) {
        return fail(format!("`{s}` leaves the config root"));
    }
    let real = match joined.canonicalize() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot read `{s}`: {e}")),
    };
    if !real.starts_with(src.root) {
        return fail(format!(
            "`{s}` leads outside the config root through a symlink"
        ));
    }
    match std::fs::metadata(&real) {
        Ok(m) if m.is_dir() => fail(format!("`{s}` is a folder, not a file")),
        Ok(m) if m.len() > MAX_SOURCE_BYTES => fail(format!(
            "`{s}` is larger than {} MiB",
            MAX_SOURCE_BYTES >> 20
        )),
        Ok(_) => match std::fs::read(&real) {
            Ok(b) => Some(b),
            Err(e) => fail(format!("cannot read `{s}`: {e}")),
        },
        Err(e) => fail(format!("cannot read `{s}`: {e}")),
    }
}
