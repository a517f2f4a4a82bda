//! `.env` and `env_file` files, parsed the way compose-go's `dotenv` package does:
//! - a UTF-8 byte-order mark at the start is skipped;
//! - `KEY=VALUE` or `KEY: VALUE`, an optional `export ` prefix, `#` comment lines, blank lines;
//!   key characters are letters, digits, `_ . - [ ]`;
//! - `KEY` alone takes the value from the lookup (the environment), or is left out;
//! - unquoted values end at the line's end or at ` #`, trailing blanks trimmed;
//! - single-quoted values are literal; double-quoted ones understand `\n`, `\t`, `\"`, `\\`,
//!   `\$`, `\0NNN` …; both may span several lines; an unterminated quote is an error;
//! - unquoted and double-quoted values are interpolated: the lookup first, then the file's
//!   earlier entries.
//!
//! `env_file` also takes `format: raw` (Docker Compose v2, as `docker run --env-file`): each
//! line is `KEY=VALUE` verbatim, without quotes, comments after values or interpolation.
//!
//! Errors never echo a line: an env file may hold secrets.

use std::collections::BTreeMap;

use super::interp::{self, InterpError};

/// One `KEY=VALUE` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    pub value: String,
    /// 1-based line where the entry starts.
    pub line: u64,
}

/// Why an env file cannot be read, and on which line (1-based). Permanent: the file must
/// change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct DotenvError {
    pub line: u64,
    pub kind: DotenvErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DotenvErrorKind {
    #[error("unexpected character {0:?} in a variable name")]
    BadKeyChar(char),
    #[error("a variable name cannot contain a space")]
    SpaceInKey,
    #[error("a variable name is empty")]
    EmptyKey,
    #[error("unterminated quoted value of {0}")]
    Unterminated(String),
    #[error("{key}: {source}")]
    Interp { key: String, source: InterpError },
}

fn error(line: u64, kind: DotenvErrorKind) -> DotenvError {
    DotenvError { line, kind }
}

/// The format of an `env_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// compose-go's `.env` syntax (the default).
    DotEnv,
    /// `docker run --env-file`: verbatim lines.
    Raw,
}

/// compose-go's `isSpace`: blanks that are not a line break.
fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

/// Parse `text`; `lookup` supplies `KEY`-alone values and interpolation variables (before the
/// file's own earlier entries). Later entries win when keys repeat (the caller folds them).
pub fn parse(
    text: &str,
    format: Format,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<EnvEntry>, DotenvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::DotEnv => Parser {
            text,
            pos: 0,
            line: 1,
        }
        .run(lookup),
        Format::Raw => Ok(raw(text, lookup)),
    }
}

/// Parse a `.env` file with nothing to look up (values as written, `${...}` resolved only
/// against the file's own earlier entries).
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, DotenvError> {
    Ok(parse(text, Format::DotEnv, &|_| None)?
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect())
}

fn raw(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<EnvEntry> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let line = i as u64 + 1;
        match l.split_once('=') {
            Some((k, v)) => out.push(EnvEntry {
                key: k.to_string(),
                value: v.to_string(),
                line,
            }),
            None => {
                let k = l.trim_end();
                if let Some(v) = lookup(k) {
                    out.push(EnvEntry {
                        key: k.to_string(),
                        value: v,
                        line,
                    });
                }
            }
        }
    }
    out
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    line: u64,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn run(
        mut self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<EnvEntry>, DotenvError> {
        let mut out: Vec<EnvEntry> = Vec::new();
        loop {
            // Statement start: skip blanks and line breaks, and comment lines.
            let skip = self
                .rest()
                .find(|c: char| !c.is_whitespace())
                .unwrap_or(self.rest().len());
            self.advance(skip);
            if self.rest().is_empty() {
                break;
            }
            if self.rest().starts_with('#') {
                let to = self.rest().find('\n').unwrap_or(self.rest().len());
                self.advance(to);
                continue;
            }
            let start_line = self.line;
            if let Some(after) = self.rest().strip_prefix("export")
                && after.starts_with(is_blank)
            {
                let blanks = after.len() - after.trim_start_matches(is_blank).len();
                self.advance("export".len() + blanks);
            }
            // The key: up to `=`, `:` or the line's end.
            let mut end = None;
            for (i, c) in self.rest().char_indices() {
                match c {
                    '=' | ':' | '\n' => {
                        end = Some((i, c));
                        break;
                    }
                    c if is_blank(c) => {}
                    '_' | '.' | '-' | '[' | ']' => {}
                    c if c.is_alphanumeric() => {}
                    ch => return Err(error(start_line, DotenvErrorKind::BadKeyChar(ch))),
                }
            }
            let (key_end, sep) = end.unwrap_or((self.rest().len(), '\n'));
            let key = self.rest()[..key_end].trim_end().to_string();
            if key.contains(|c: char| c.is_whitespace()) {
                return Err(error(start_line, DotenvErrorKind::SpaceInKey));
            }
            if key.is_empty() {
                return Err(error(start_line, DotenvErrorKind::EmptyKey));
            }
            if sep == '\n' {
                // `KEY` alone: inherited from the environment, or left out.
                self.advance(key_end);
                if let Some(v) = lookup(&key) {
                    out.push(EnvEntry {
                        key,
                        value: v,
                        line: start_line,
                    });
                }
                continue;
            }
            self.advance(key_end + 1);
            let blanks = self.rest().len() - self.rest().trim_start_matches(is_blank).len();
            self.advance(blanks);
            let value = self.value(&key, start_line, &out, lookup)?;
            out.push(EnvEntry {
                key,
                value,
                line: start_line,
            });
        }
        Ok(out)
    }

    /// Move on by `n` bytes, counting line breaks.
    fn advance(&mut self, n: usize) {
        self.line += self.text[self.pos..self.pos + n].matches('\n').count() as u64;
        self.pos += n;
    }

    fn value(
        &mut self,
        key: &str,
        line: u64,
        earlier: &[EnvEntry],
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, DotenvError> {
        let expand = |v: &str| {
            interp::interpolate_with(v, &|k| {
                lookup(k).or_else(|| {
                    earlier
                        .iter()
                        .rev()
                        .find(|e| e.key == k)
                        .map(|e| e.value.clone())
                })
            })
            .map_err(|source| {
                error(
                    line,
                    DotenvErrorKind::Interp {
                        key: key.to_string(),
                        source,
                    },
                )
            })
        };
        let rest = self.rest();
        let quote = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => {
                let to = rest.find('\n').unwrap_or(rest.len());
                let v = &rest[..to];
                let v = v.split_once(" #").map_or(v, |(a, _)| a).trim_end();
                let v = expand(v)?;
                self.advance(to);
                return Ok(v);
            }
        };
        // Quoted: up to the first unescaped closing quote, across lines.
        let mut chars = String::new();
        let mut escaped = false;
        for (i, c) in rest.char_indices().skip(1) {
            if c != quote {
                if !escaped && c == '\\' {
                    escaped = true;
                    continue;
                }
                if escaped {
                    escaped = false;
                    chars.push('\\');
                }
                chars.push(c);
                continue;
            }
            if escaped {
                escaped = false;
                chars.push(c);
                continue;
            }
            self.advance(i + 1);
            return if quote == '"' {
                expand(&unescape(&chars))
            } else {
                Ok(chars)
            };
        }
        Err(error(line, DotenvErrorKind::Unterminated(key.to_string())))
    }
}

/// Double-quote escapes: `\a \b \f \n \r \t \v \" \\`, `\0NNN` (octal), and `\$`, which stays
/// a literal `$` through interpolation (`$$`). Anything else is kept as written.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.peek().copied() {
            Some(e @ ('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '"' | '\\')) => {
                it.next();
                out.push(match e {
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\u{b}',
                    other => other,
                });
            }
            Some('$') => {
                it.next();
                out.push_str("$$");
            }
            Some('0') => {
                it.next();
                let mut digits = String::new();
                while digits.len() < 3
                    && let Some(d) = it.peek().copied().filter(|d| ('0'..='7').contains(d))
                {
                    digits.push(d);
                    it.next();
                }
                match u32::from_str_radix(if digits.is_empty() { "0" } else { &digits }, 8)
                    .ok()
                    .and_then(char::from_u32)
                {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push_str("\\0");
                        out.push_str(&digits);
                    }
                }
            }
            _ => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! compose-go's `dotenv/parser_test.go` and `godotenv_test.go` cases, and berth's own.
    use super::*;

    fn p(text: &str) -> BTreeMap<String, String> {
        parse_env_file(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn one(text: &str) -> String {
        let m = p(text);
        assert_eq!(m.len(), 1, "{m:?}");
        m.into_values().next().unwrap()
    }

    #[test]
    fn basic_forms() {
        let m = p(
            "# comment\n\nexport A=1\nB = two words # note\nC=\"q \\\"x\\\"\\n\"\nD='lit $x'\nE=\nF\nG: yaml\n",
        );
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "q \"x\"\n");
        assert_eq!(m["D"], "lit $x");
        assert_eq!(m["E"], "");
        assert!(!m.contains_key("F"));
        assert_eq!(m["G"], "yaml");
        assert_eq!(one("OPTION.A=1"), "1");
        assert_eq!(one("OPTION-B=2"), "2");
        assert_eq!(one("ARR[0]=x"), "x");
        assert_eq!(one("  export   OPTION_X=y"), "y");
        assert_eq!(one("FOO=bar#baz"), "bar#baz");
        assert_eq!(one("FOO=\"bar\" # comment"), "bar");
    }

    #[test]
    fn multi_line_quoted_values() {
        let m = p("A=\"line1\nline2\"\nB='x\n  y'\nC=after\n");
        assert_eq!(m["A"], "line1\nline2");
        assert_eq!(m["B"], "x\n  y");
        assert_eq!(m["C"], "after");
        let cert = "KEY=\"-----BEGIN-----\nabc\n-----END-----\"\n";
        assert_eq!(one(cert), "-----BEGIN-----\nabc\n-----END-----");
        // Lines are counted across the multi-line value.
        let e = parse_env_file("A=\"x\ny\"\nB C=1\n").unwrap_err();
        assert_eq!(e, error(3, DotenvErrorKind::SpaceInKey));
    }

    #[test]
    fn escapes() {
        assert_eq!(one(r#"A="a\tb\\c\$d""#), "a\tb\\c$d");
        assert_eq!(one(r#"A="\x""#), "\\x");
        assert_eq!(one(r#"A='it\'s'"#), "it's");
        assert_eq!(one(r#"A='a\nb'"#), "a\\nb");
        assert_eq!(one(r#"A="\0101""#), "A");
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        assert_eq!(p("\u{feff}A=1\nB=2\n")["A"], "1");
    }

    #[test]
    fn unterminated_quote_is_an_error_without_the_value() {
        for text in ["A=\"never closed\n", "OK=1\nB='oops\nC=2\n"] {
            let e = parse_env_file(text).unwrap_err();
            assert!(matches!(e.kind, DotenvErrorKind::Unterminated(_)), "{e:?}");
            assert!(!e.to_string().contains("never") && !e.to_string().contains("oops"));
        }
        assert_eq!(
            parse_env_file("OK=1\nB='oops\n").unwrap_err().to_string(),
            "line 2: unterminated quoted value of B"
        );
    }

    #[test]
    fn expansion_uses_the_environment_then_earlier_entries() {
        let env = |k: &str| (k == "HOME").then(|| "/home/me".to_string());
        let got = parse(
            "A=1\nB=${A}-$HOME\nC='${A}'\nD=\"${A:-x}$$\"\nHOME\n",
            Format::DotEnv,
            &env,
        )
        .unwrap();
        let m: BTreeMap<_, _> = got.into_iter().map(|e| (e.key, e.value)).collect();
        assert_eq!(m["B"], "1-/home/me");
        assert_eq!(m["C"], "${A}");
        assert_eq!(m["D"], "1$");
        assert_eq!(m["HOME"], "/home/me");
        let e = parse("A=${REQ:?set it}\n", Format::DotEnv, &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: A: required variable REQ is missing a value: set it"
        );
    }

    #[test]
    fn bad_keys_are_errors_not_echoed() {
        let e = parse_env_file("OK=1\nroot password hunter2\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(
            parse_env_file("A$B=1\n").unwrap_err(),
            error(1, DotenvErrorKind::BadKeyChar('$'))
        );
    }

    #[test]
    fn raw_format_is_verbatim() {
        let env = |k: &str| (k == "HOME").then(|| "/root".to_string());
        let got = parse(
            "\u{feff}# c\nA=\"quoted\" # not a comment\nB=${HOME}\nHOME\nUNSET\n",
            Format::Raw,
            &env,
        )
        .unwrap();
        let m: BTreeMap<_, _> = got.into_iter().map(|e| (e.key, e.value)).collect();
        assert_eq!(m["A"], "\"quoted\" # not a comment");
        assert_eq!(m["B"], "${HOME}");
        assert_eq!(m["HOME"], "/root");
        assert!(!m.contains_key("UNSET"));
    }
}
