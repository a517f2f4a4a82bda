//! Compose variable interpolation (`${VAR:-default}` and friends) and `.env` files.

use std::collections::BTreeMap;

/// Parse a `.env` file: `KEY=VALUE` lines, `#` comments, blank lines, optional `export `
/// prefix, optional single or double quotes (double quotes understand `\n`, `\t`, `\"`, `\\`).
/// Returns the variables, or `(line, message)` for the first bad line.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, (u64, String)> {
    Ok(parse_env_entries(text)?
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect())
}

/// One `KEY=VALUE` line of an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    pub value: String,
    /// Single-quoted: taken literally, never interpolated.
    pub literal: bool,
    /// 1-based line in the file.
    pub line: u64,
}

/// The entries of an env file in order (later lines win when keys repeat).
pub fn parse_env_entries(text: &str) -> Result<Vec<EnvEntry>, (u64, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let lineno = i as u64 + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim_start())),
            None => (line, None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            // The line itself is not echoed: an env file may hold secrets (and a hostile pull
            // request may point `env_file:` at any host file).
            return Err((
                lineno,
                "invalid line: expected KEY=VALUE with a non-empty KEY without spaces".to_string(),
            ));
        }
        let Some(value) = value else {
            // `KEY` alone: Compose takes it from the environment; nothing to set here.
            continue;
        };
        out.push(EnvEntry {
            key: key.to_string(),
            value: unquote(value),
            literal: value.starts_with('\'') && value[1..].contains('\''),
            line: lineno,
        });
    }
    Ok(out)
}

fn unquote(v: &str) -> String {
    if let Some(rest) = v.strip_prefix('"')
        && let Some(end) = find_closing_double(rest)
    {
        let inner = &rest[..end];
        let mut s = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some(o) => s.push(o),
                    None => s.push('\\'),
                }
            } else {
                s.push(c);
            }
        }
        return s;
    }
    if let Some(rest) = v.strip_prefix('\'')
        && let Some(end) = rest.find('\'')
    {
        return rest[..end].to_string();
    }
    // Unquoted: an inline comment starts at ` #`.
    let v = match v.find(" #") {
        Some(i) => &v[..i],
        None => v,
    };
    v.trim_end().to_string()
}

fn find_closing_double(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some(i);
        }
    }
    None
}

/// Interpolate `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?msg}`, `${VAR?msg}`,
/// `${VAR:+alt}`, `${VAR+alt}` and `$$`. Defaults and alternatives are interpolated themselves
/// (so they may nest `${...}`). An unset variable without default becomes "".
pub fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    interpolate_at(s, vars, 0)
}

/// Nesting deeper than this (`${A:-${B:-...}}`) is refused rather than risking the stack.
const MAX_DEPTH: usize = 16;

fn interpolate_at(
    s: &str,
    vars: &BTreeMap<String, String>,
    depth: usize,
) -> Result<String, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "interpolation nested more than {MAX_DEPTH} levels deep"
        ));
    }
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c != b'$' {
            // Copy one UTF-8 char.
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        match b.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(b'{') => {
                let start = i + 2;
                let end = matching_brace(s, start).ok_or_else(|| {
                    format!("invalid interpolation format for {s:?}: missing `}}`")
                })?;
                out.push_str(&braced(&s[start..end], s, vars, depth)?);
                i = end + 1;
            }
            Some(&n) if n == b'_' || n.is_ascii_alphabetic() => {
                let mut j = i + 1;
                while j < b.len() && (b[j] == b'_' || b[j].is_ascii_alphanumeric()) {
                    j += 1;
                }
                out.push_str(vars.get(&s[i + 1..j]).map(String::as_str).unwrap_or(""));
                i = j;
            }
            _ => {
                return Err(format!(
                    "invalid interpolation format for {s:?}: a `$` must start a variable \
                     (`$VAR`, `${{VAR}}`) or be doubled (`$$`)"
                ));
            }
        }
    }
    Ok(out)
}

/// Index of the `}` closing a `${` whose content starts at `start`.
fn matching_brace(s: &str, start: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 1;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if b.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn braced(
    inner: &str,
    whole: &str,
    vars: &BTreeMap<String, String>,
    depth: usize,
) -> Result<String, String> {
    let name_end = inner
        .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .unwrap_or(inner.len());
    let name = &inner[..name_end];
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return Err(format!(
            "invalid interpolation format for {whole:?}: bad variable name in `${{{inner}}}`"
        ));
    }
    let rest = &inner[name_end..];
    let value = vars.get(name);
    let (op, arg) = if rest.is_empty() {
        ("", "")
    } else if let Some(op) = [":-", ":?", ":+", "-", "?", "+"]
        .into_iter()
        .find(|op| rest.starts_with(op))
    {
        (op, &rest[op.len()..])
    } else {
        return Err(format!(
            "invalid interpolation format for {whole:?}: unexpected `{rest}` in `${{{inner}}}`"
        ));
    };
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let v = value.cloned().unwrap_or_default();
    Ok(match op {
        "" => v,
        ":-" => {
            if non_empty {
                v
            } else {
                interpolate_at(arg, vars, depth + 1)?
            }
        }
        "-" => {
            if set {
                v
            } else {
                interpolate_at(arg, vars, depth + 1)?
            }
        }
        ":+" => {
            if non_empty {
                interpolate_at(arg, vars, depth + 1)?
            } else {
                String::new()
            }
        }
        "+" => {
            if set {
                interpolate_at(arg, vars, depth + 1)?
            } else {
                String::new()
            }
        }
        ":?" | "?" => {
            let ok = if op == ":?" { non_empty } else { set };
            if ok {
                v
            } else {
                let msg = interpolate_at(arg, vars, depth + 1)?;
                if msg.is_empty() {
                    return Err(format!("required variable {name} is missing a value"));
                }
                return Err(format!(
                    "required variable {name} is missing a value: {msg}"
                ));
            }
        }
        _ => unreachable!(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("A", "a"), ("EMPTY", ""), ("PORT", "8080")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn i(s: &str) -> String {
        interpolate(s, &vars()).unwrap()
    }

    #[test]
    fn forms() {
        assert_eq!(i("x${A}y$A-$A_"), "xaya-");
        assert_eq!(i("$UNSET|${UNSET}"), "|");
        assert_eq!(i("${UNSET:-d}|${EMPTY:-d}|${EMPTY-d}|${UNSET-d}"), "d|d||d");
        assert_eq!(
            i("${A:+alt}|${EMPTY:+alt}|${EMPTY+alt}|${UNSET+alt}"),
            "alt||alt|"
        );
        assert_eq!(i("$$A $${A}"), "$A ${A}");
        assert_eq!(i("${UNSET:-${PORT}:80}"), "8080:80");
        assert_eq!(i("${UNSET:-${ALSO:-x}y}"), "xy");
        assert_eq!(i("${A:?boom}"), "a");
        assert_eq!(i("${EMPTY?boom}"), "");
        assert_eq!(i("héllo ${A}"), "héllo a");
    }

    #[test]
    fn required() {
        let e = interpolate("${DB_PASSWORD:?set it in .env}", &vars()).unwrap_err();
        assert_eq!(
            e,
            "required variable DB_PASSWORD is missing a value: set it in .env"
        );
        assert!(interpolate("${EMPTY:?x}", &vars()).is_err());
        assert!(interpolate("${UNSET?}", &vars()).is_err());
    }

    #[test]
    fn bad_formats() {
        assert!(interpolate("${A", &vars()).is_err());
        assert!(interpolate("${}", &vars()).is_err());
        assert!(interpolate("${A!x}", &vars()).is_err());
        assert!(interpolate("cost: $5", &vars()).is_err());
        let deep = format!("{}x{}", "${U:-".repeat(100), "}".repeat(100));
        assert!(interpolate(&deep, &vars()).unwrap_err().contains("nested"));
        let ok = format!("{}x{}", "${U:-".repeat(10), "}".repeat(10));
        assert_eq!(interpolate(&ok, &vars()).unwrap(), "x");
    }

    #[test]
    fn env_file() {
        let text = "# comment\n\nexport A=1\nB = two words # note\nC=\"q \\\"x\\\"\\n\"\nD='lit $x'\nE=\nF\n";
        let m = parse_env_file(text).unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "q \"x\"\n");
        assert_eq!(m["D"], "lit $x");
        assert_eq!(m["E"], "");
        assert!(!m.contains_key("F"));
        assert_eq!(parse_env_file("GOOD=1\nBAD KEY=2\n").unwrap_err().0, 2);
    }
}

#[cfg(test)]
mod env_file_error_tests {
    use super::parse_env_entries;

    #[test]
    fn a_bad_env_file_line_is_not_echoed_in_the_error() {
        let (line, msg) = parse_env_entries("OK=1\nroot password hunter2\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
