//! Compose variable interpolation (`${VAR:-default}` and friends), following compose-go's
//! `template` package.

use std::collections::BTreeMap;

/// Why a string cannot be interpolated. Permanent: the text must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    /// compose-go's "Invalid template": `${` not followed by `NAME}` or `NAME<op>...}`.
    #[error("invalid interpolation format for {template:?}: {why}")]
    Invalid { template: String, why: &'static str },
    /// `${NAME:?reason}` / `${NAME?reason}` with NAME unset (or empty).
    #[error("required variable {name} is missing a value{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Required { name: String, reason: String },
    #[error("interpolation nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

/// Interpolate the way compose-go's `template` package does:
/// - `$$` is a literal `$`;
/// - `$NAME` and `${NAME}` (NAME = `[_A-Za-z][_A-Za-z0-9]*`) are the variable, "" when unset;
/// - `${NAME:-d}`, `${NAME-d}`, `${NAME:+a}`, `${NAME+a}`, `${NAME:?msg}`, `${NAME?msg}`: the
///   argument runs to the `}` that balances the `${` (else to the last `}` on the line) and is
///   interpolated itself, only when used;
/// - any other `${...` is an error, and a `$` that starts none of these (`$`, `$5`, `a $ b`,
///   `$2a$14$...`) is kept as written.
pub fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> Result<String, InterpError> {
    interpolate_with(s, &|k| vars.get(k).cloned())
}

/// [`interpolate`] with a lookup function (`None` = unset).
pub fn interpolate_with(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpError> {
    interpolate_at(s, lookup, 0)
}

/// Nesting deeper than this (`${A:-${B:-...}}`) is refused rather than risking the stack.
const MAX_DEPTH: usize = 16;

const OPS: [&str; 6] = [":-", ":?", ":+", "-", "?", "+"];

fn is_name_start(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphabetic()
}

fn is_name_char(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

fn interpolate_at(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, InterpError> {
    if depth > MAX_DEPTH {
        return Err(InterpError::TooDeep);
    }
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let b = s.as_bytes();
    let invalid = |why| InterpError::Invalid {
        template: s.to_string(),
        why,
    };
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    // Copy runs of text up to the next `$` (byte offsets stay on char boundaries: `$` is ASCII).
    while let Some(off) = s[i..].find('$') {
        out.push_str(&s[i..i + off]);
        i += off;
        match b.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(&c) if is_name_start(c) => {
                let mut j = i + 1;
                while j < b.len() && is_name_char(b[j]) {
                    j += 1;
                }
                out.push_str(&lookup(&s[i + 1..j]).unwrap_or_default());
                i = j;
            }
            Some(b'{') => {
                let start = i + 2;
                let mut j = start;
                if j < b.len() && is_name_start(b[j]) {
                    j += 1;
                    while j < b.len() && is_name_char(b[j]) {
                        j += 1;
                    }
                }
                if j == start {
                    return Err(invalid("expected a variable name after `${`"));
                }
                let name = &s[start..j];
                if b.get(j) == Some(&b'}') {
                    out.push_str(&lookup(name).unwrap_or_default());
                    i = j + 1;
                    continue;
                }
                let Some(op) = OPS.into_iter().find(|op| s[j..].starts_with(op)) else {
                    if j == b.len() {
                        return Err(invalid("missing `}`"));
                    }
                    return Err(invalid(
                        "a variable name must be followed by `}` or one of :- - :+ + :? ?",
                    ));
                };
                let arg_start = j + op.len();
                let end = closing_brace(s, i, arg_start)
                    .ok_or_else(|| invalid("missing `}` on the same line"))?;
                let arg = &s[arg_start..end];
                out.push_str(&apply(name, op, arg, lookup, depth)?);
                i = end + 1;
            }
            // Not a substitution: kept as written (compose-go's pattern does not match it).
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    out.push_str(&s[i..]);
    Ok(out)
}

/// Where the `${` at `dollar` ends, for an argument starting at `arg_start`: the `}` that
/// balances it, counting `{` and `}` as compose-go does (a `{` also skips the byte after it);
/// when none balances, the last `}` of the line. `None` when the line has no `}` after the
/// operator.
fn closing_brace(s: &str, dollar: usize, arg_start: usize) -> Option<usize> {
    let line_end = s[arg_start..].find('\n').map_or(s.len(), |n| arg_start + n);
    let last = arg_start + s[arg_start..line_end].rfind('}')?;
    let b = s.as_bytes();
    let mut open = 0i32;
    let mut k = dollar;
    while k <= last {
        match b[k] {
            b'}' => {
                open -= 1;
                if open == 0 {
                    return Some(k);
                }
            }
            b'{' => {
                open += 1;
                k += 1;
            }
            _ => {}
        }
        k += 1;
    }
    Some(last)
}

fn apply(
    name: &str,
    op: &str,
    arg: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, InterpError> {
    let value = lookup(name);
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let v = value.unwrap_or_default();
    let nested = |a: &str| interpolate_at(a, lookup, depth + 1);
    Ok(match op {
        ":-" if non_empty => v,
        ":-" => nested(arg)?,
        "-" if set => v,
        "-" => nested(arg)?,
        ":+" if non_empty => nested(arg)?,
        "+" if set => nested(arg)?,
        ":+" | "+" => String::new(),
        ":?" if non_empty => v,
        "?" if set => v,
        _ => {
            return Err(InterpError::Required {
                name: name.to_string(),
                reason: nested(arg)?,
            });
        }
    })
}

#[cfg(test)]
mod tests {
    //! compose-go's `template/template_test.go` cases, and berth's own.
    use super::*;

    /// compose-go's test mapping.
    fn defaults() -> BTreeMap<String, String> {
        [("FOO", "first"), ("BAR", ""), ("JSON", r#"{"json":2}"#)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sub(s: &str) -> String {
        interpolate(s, &defaults()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> InterpError {
        interpolate(s, &defaults()).expect_err(s)
    }

    #[test]
    fn escaped_and_unescaped() {
        assert_eq!(sub("$${foo}"), "${foo}");
        assert_eq!(sub("foo"), "foo");
        // TestUnescaped: a `$` that starts no substitution is kept.
        for s in ["a $ string", "^REGEX$", "$}", "$", "cost: $5", "$1 and $%"] {
            assert_eq!(sub(s), s);
        }
    }

    #[test]
    fn dollar_signs_inside_a_default() {
        // The issue: a bcrypt hash as a default. `$2a` and `$14` start no variable and stay;
        // `$ajq8...` IS a variable for compose-go (and Docker Compose v2.40.3 prints
        // `$2a$14.Rx1h` for this very line, warning that "ajq8Q7fbtFRQ" is not set).
        assert_eq!(sub("${HASH:-$2a$14$ajq8Q7fbtFRQ.Rx1h}"), "$2a$14.Rx1h");
        let hash = "$2y$10$./0123abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";
        assert_eq!(sub(&format!("${{HASH:-{hash}}}")), hash);
        assert_eq!(sub("${HASH:-$$2a$$14$$ajq8}"), "$2a$14$ajq8");
        assert_eq!(sub("${UNSET:-$}"), "$");
        assert_eq!(sub("${UNSET:-a$$b}"), "a$b");
    }

    #[test]
    fn invalid() {
        // TestInvalid.
        for s in [
            "${", "${}", "${ }", "${ foo}", "${foo }", "${foo!}", "${FOO:-x",
        ] {
            assert!(
                matches!(err(s), InterpError::Invalid { .. }),
                "{s:?} must be invalid"
            );
        }
        assert_eq!(
            err("${ foo}").to_string(),
            "invalid interpolation format for \"${ foo}\": expected a variable name after `${`"
        );
    }

    #[test]
    fn values_and_defaults() {
        assert_eq!(sub("$FOO-bar"), "first-bar"); // TestNonBraced
        assert_eq!(sub("This ${missing} var"), "This  var");
        assert_eq!(sub("This ${BAR} var"), "This  var");
        assert_eq!(sub("This $FOO var"), "This first var");
        assert_eq!(sub("This ${FOO} var"), "This first var");
        assert_eq!(sub("ok ${missing:-def}"), "ok def");
        assert_eq!(sub("ok ${missing-def}"), "ok def");
        assert_eq!(sub("${A:+${A},}B"), "B");
        assert_eq!(sub("${A:-${B}}"), "");
        assert_eq!(sub("ok ${BAR:-def}"), "ok def");
        assert_eq!(sub("ok ${FOO:-def}"), "ok first");
        assert_eq!(sub("ok ${BAR-def}"), "ok ");
        assert_eq!(sub("ok ${UNSET_VAR:+presence_value}"), "ok ");
        assert_eq!(sub("ok ${UNSET_VAR+presence_value}"), "ok ");
        assert_eq!(sub("ok ${FOO:+presence_value}"), "ok presence_value");
        assert_eq!(sub("ok ${FOO+presence_value}"), "ok presence_value");
        assert_eq!(sub("ok ${BAR+presence_value}"), "ok presence_value");
        assert_eq!(sub("ok ${BAR:+presence_value}"), "ok ");
        assert_eq!(
            sub("ok ${BAR:-/non:-alphanumeric}"),
            "ok /non:-alphanumeric"
        );
        assert_eq!(sub("ok ${SUBDOMAIN:-redis}.${FOO:?}"), "ok redis.first");
        assert_eq!(sub("${JSON}"), r#"{"json":2}"#);
    }

    #[test]
    fn outer_text_does_not_interfere() {
        // TestInterpolationExternalInterference.
        for (t, want) in [
            ("-ok ${BAR:-defaultValue}", "-ok defaultValue"),
            ("+ok ${UNSET:-${BAR-defaultValue}}", "+ok "),
            ("-ok ${FOO:-defaultValue}", "-ok first"),
            (":-ok ${UNSET-defaultValue}", ":-ok defaultValue"),
            (":-ok ${BAR-defaultValue}", ":-ok "),
            (":?ok ${BAR-defaultValue}", ":?ok "),
            (":?ok ${BAR:-defaultValue}", ":?ok defaultValue"),
            (":+ok ${BAR:-defaultValue}", ":+ok defaultValue"),
            ("+ok ${BAR-defaultValue}", "+ok "),
            ("?ok ${BAR:-defaultValue}", "?ok defaultValue"),
        ] {
            assert_eq!(sub(t), want, "{t:?}");
        }
    }

    #[test]
    fn nested_defaults() {
        // TestDefaultsWithNestedExpansion.
        for (t, want) in [
            ("ok ${UNSET_VAR-$FOO}", "ok first"),
            ("ok ${UNSET_VAR-${FOO}}", "ok first"),
            ("ok ${UNSET_VAR-${FOO} ${FOO}}", "ok first first"),
            ("ok ${BAR:-$FOO}", "ok first"),
            ("ok ${BAR:-${FOO}}", "ok first"),
            ("ok ${BAR:-${FOO} ${FOO}}", "ok first first"),
            ("ok ${BAR+$FOO}", "ok first"),
            ("ok ${BAR+$FOO ${FOO:+second}}", "ok first second"),
            ("${UNSET:-${ALSO:-x}y}", "xy"),
            ("${UNSET:-${FOO}:80} ${FOO}", "first:80 first"),
        ] {
            assert_eq!(sub(t), want, "{t:?}");
        }
        let deep = format!("{}x{}", "${U:-".repeat(100), "}".repeat(100));
        assert_eq!(err(&deep), InterpError::TooDeep);
        let ok = format!("{}x{}", "${U:-".repeat(10), "}".repeat(10));
        assert_eq!(sub(&ok), "x");
    }

    #[test]
    fn required() {
        // TestMandatoryVariableErrors(+WithNestedExpansion), TestDefaultsForMandatoryVariables.
        for (t, want) in [
            (
                "not ok ${UNSET_VAR:?Mandatory Variable Unset}",
                "required variable UNSET_VAR is missing a value: Mandatory Variable Unset",
            ),
            (
                "not ok ${BAR:?Mandatory Variable Empty}",
                "required variable BAR is missing a value: Mandatory Variable Empty",
            ),
            (
                "not ok ${UNSET_VAR:?}",
                "required variable UNSET_VAR is missing a value",
            ),
            (
                "not ok ${UNSET_VAR?Mandatory Variable Unset}",
                "required variable UNSET_VAR is missing a value: Mandatory Variable Unset",
            ),
            (
                "not ok ${UNSET_VAR:?Mandatory Variable ${FOO}}",
                "required variable UNSET_VAR is missing a value: Mandatory Variable first",
            ),
            (
                "${UNSET_VAR?bar-baz}",
                "required variable UNSET_VAR is missing a value: bar-baz",
            ),
        ] {
            assert_eq!(err(t).to_string(), want, "{t:?}");
        }
        assert_eq!(sub("ok ${FOO:?err}"), "ok first");
        assert_eq!(sub("ok ${FOO?err}"), "ok first");
        assert_eq!(sub("ok ${BAR?err}"), "ok ");
        // TestPrecedence: the first operator after the name wins.
        assert_eq!(sub("${UNSET_VAR-myerror?msg}"), "myerror?msg");
        assert_eq!(sub("${FOO?bar-baz}"), "first");
        // A required message is only interpolated when used.
        assert_eq!(sub("${FOO?${UNSET}}"), "first");
    }

    #[test]
    fn non_ascii_text_is_kept() {
        assert_eq!(sub("héllo ${FOO} ✓ $"), "héllo first ✓ $");
    }
}
