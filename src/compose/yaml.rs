//! A generic YAML node tree where every node and every map key carries its `line:column`.
//!
//! Parsed by `serde-saphyr` through a hand-written `Deserialize` (no untagged enums, which would
//! lose the locations). Anchors, aliases and `<<` merge keys (single and list form) are resolved
//! by the parser; duplicate keys and alias bombs are refused by it.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned, Tagged};

/// 1-based source position (0:0 = unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u64,
    pub col: u64,
    /// Which file: 0 is the Compose file being loaded, `n` another file it reads (a base of
    /// `extends: {file: ...}`), see [`set_file`].
    pub file: u16,
}

/// Mark every position in `node` as being in file `file` (see [`Pos::file`]).
pub fn set_file(node: &mut Node, file: u16) {
    node.pos.file = file;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| set_file(n, file)),
        Value::Map(entries) => {
            for (k, v) in entries {
                k.pos.file = file;
                set_file(v, file);
            }
        }
        _ => {}
    }
}

impl Pos {
    fn of(s: &Location) -> Pos {
        Pos {
            line: s.line(),
            col: s.column(),
            file: 0,
        }
    }
}

/// A map key (a string: compose-go refuses others).
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
    /// Compose's `!reset` / `!override` tag on the value, which steers merges.
    pub merge: MergeTag,
}

/// The YAML tags Compose gives a meaning to, on a mapping value (compose-go's `override`):
/// `key: !reset ...` drops what a base or an earlier document set for `key`; `key: !override
/// ...` replaces it instead of merging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MergeTag {
    #[default]
    None,
    Reset,
    Override,
}

impl Key {
    pub fn new(name: impl Into<String>, pos: Pos) -> Key {
        Key {
            name: name.into(),
            pos,
            merge: MergeTag::None,
        }
    }
}

/// Drop every `!reset` entry left after merging (compose-go's `ResetProcessor`): with nothing
/// to reset, the key is simply absent.
pub fn drop_resets(node: &mut Node) {
    match &mut node.value {
        Value::Map(entries) => {
            entries.retain(|(k, _)| k.merge != MergeTag::Reset);
            for (_, v) in entries {
                drop_resets(v);
            }
        }
        Value::Seq(items) => items.iter_mut().for_each(drop_resets),
        _ => {}
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// In document order (merge keys already applied; duplicates are a parse error).
    Map(Vec<(Key, Node)>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The scalar as text (strings, numbers, booleans); `None` for null, lists and maps.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// What the visitor builds: children keep their serde-saphyr spans until [`RawValue::into_node`].
enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawValue>>),
    Map(Vec<(Spanned<KeyText>, Spanned<RawValue>, MergeTag)>),
}

impl RawValue {
    fn into_node(self, pos: Pos) -> Node {
        let value = match self {
            RawValue::Null => Value::Null,
            RawValue::Bool(b) => Value::Bool(b),
            RawValue::Int(i) => Value::Int(i),
            RawValue::Float(f) => Value::Float(f),
            RawValue::Str(s) => Value::Str(s),
            RawValue::Seq(items) => Value::Seq(
                items
                    .into_iter()
                    .map(|s| {
                        let p = best(&s);
                        s.value.into_node(p)
                    })
                    .collect(),
            ),
            RawValue::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v, merge)| {
                        let kp = best(&k);
                        let vp = best(&v);
                        (
                            Key {
                                name: k.value.0,
                                pos: kp,
                                merge,
                            },
                            v.value.into_node(vp),
                        )
                    })
                    .collect(),
            ),
        };
        Node { value, pos }
    }
}

/// Where a node is written: the definition for values reached through aliases and merges (that
/// is the text a message is about), else where it is referenced.
fn best<T>(s: &Spanned<T>) -> Pos {
    let d = Pos::of(&s.defined);
    if d.line > 0 {
        d
    } else {
        Pos::of(&s.referenced)
    }
}

/// A key read from any scalar.
struct KeyText(String);

fn non_string<E: de::Error>(v: impl fmt::Display) -> E {
    E::custom(format!(
        "non-string key `{v}`: Compose keys are strings; quote it (\"{v}\")"
    ))
}

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar map key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<KeyText, E> {
                Ok(KeyText(v))
            }
            // compose-go refuses them ("non-string key"): `123:` is not `"123":`.
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Err(non_string(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Err(non_string(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Err(non_string(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Err(non_string(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Err(non_string("null"))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
                Ok(RawValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
                match i64::try_from(v) {
                    Ok(i) => Ok(RawValue::Int(i)),
                    Err(_) => Ok(RawValue::Str(v.to_string())),
                }
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawValue, E> {
                match i64::try_from(v) {
                    Ok(i) => Ok(RawValue::Int(i)),
                    Err(_) => Ok(RawValue::Str(v.to_string())),
                }
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawValue, E> {
                match i64::try_from(v) {
                    Ok(i) => Ok(RawValue::Int(i)),
                    Err(_) => Ok(RawValue::Str(v.to_string())),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
                Ok(RawValue::Str(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
                Ok(RawValue::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<RawValue, E> {
                Ok(RawValue::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<RawValue, D2::Error> {
                RawValue::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<RawValue>>()? {
                    items.push(item);
                }
                Ok(RawValue::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = map.next_key::<Spanned<KeyText>>()? {
                    let Tagged(v, tag) = map.next_value::<Tagged<Spanned<RawValue>>>()?;
                    let merge = match tag.as_deref() {
                        Some("!reset") => MergeTag::Reset,
                        Some("!override") => MergeTag::Override,
                        _ => MergeTag::None,
                    };
                    entries.push((k, v, merge));
                }
                Ok(RawValue::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML syntax error (or a refused document), with where.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    // `0755` is octal, as in Compose (go-yaml).
    o.legacy_octal_numbers = true;
    o.with_snippet = false;
    // `yes`/`no`/`on`/`off` stay strings (YAML 1.2, like Compose).
    o.strict_booleans = true;
    o
}

/// Parse every YAML document of `text` (`---` separated) into located trees; empty documents
/// are left out.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    match serde_saphyr::from_str_multiple_with_options::<Spanned<RawValue>, Vec<_>>(text, options())
    {
        Ok(docs) => Ok(docs
            .into_iter()
            .map(|root| {
                let p = best(&root);
                root.value.into_node(p)
            })
            .collect()),
        Err(e) => Err(yaml_error(e)),
    }
}

fn yaml_error(e: serde_saphyr::Error) -> YamlError {
    let inner = e.without_snippet();
    let pos = inner.location().map(|l| Pos::of(&l)).unwrap_or_default();
    let msg = serde_saphyr::MessageFormatter::format_message(
        &serde_saphyr::DefaultMessageFormatter,
        inner,
    )
    .into_owned();
    YamlError {
        pos,
        message: clean_message(&msg),
    }
}

/// Parse one YAML document into a located tree. An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    if text.trim().is_empty() {
        return Ok(Node {
            value: Value::Null,
            pos: Pos {
                line: 1,
                col: 1,
                file: 0,
            },
        });
    }
    match serde_saphyr::from_str_with_options::<Spanned<RawValue>>(text, options()) {
        Ok(root) => {
            let p = best(&root);
            Ok(root.value.into_node(p))
        }
        Err(e) => {
            let inner = e.without_snippet();
            let pos = inner.location().map(|l| Pos::of(&l)).unwrap_or_default();
            let msg = serde_saphyr::MessageFormatter::format_message(
                &serde_saphyr::DefaultMessageFormatter,
                inner,
            )
            .into_owned();
            Err(YamlError {
                pos,
                message: clean_message(&msg),
            })
        }
    }
}

/// serde-saphyr messages may carry a location suffix or a trailing period; we print our own.
fn clean_message(msg: &str) -> String {
    let mut m = msg.trim().to_string();
    if let Some(i) = m.find(" at line ") {
        m.truncate(i);
    }
    if let Some(rest) = m.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!("duplicate key `{key}`");
    }
    if let Some(rest) = m.strip_prefix("budget breached: ") {
        return format!(
            "refused: the document expands beyond the parser's limits ({rest}); \
             is it an alias bomb?"
        );
    }
    m.trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(n: &Node) -> &Vec<(Key, Node)> {
        match &n.value {
            Value::Map(m) => m,
            v => panic!("not a map: {v:?}"),
        }
    }
    fn get<'a>(n: &'a Node, k: &str) -> &'a Node {
        &map(n).iter().find(|(key, _)| key.name == k).expect(k).1
    }

    #[test]
    fn scalar_typing() {
        let n = parse(
            "a: 3000:3000\nb: 80\nc: true\nd: \"1.0\"\ne: 0755\nf: 1.5\ng:\nh: ~\ni: '80'\nj: yes\n",
        )
        .unwrap();
        assert_eq!(get(&n, "a").value, Value::Str("3000:3000".into()));
        assert_eq!(get(&n, "b").value, Value::Int(80));
        assert_eq!(get(&n, "c").value, Value::Bool(true));
        assert_eq!(get(&n, "d").value, Value::Str("1.0".into()));
        assert_eq!(get(&n, "e").value, Value::Int(0o755));
        assert_eq!(get(&n, "f").value, Value::Float(1.5));
        assert_eq!(get(&n, "g").value, Value::Null);
        assert_eq!(get(&n, "h").value, Value::Null);
        assert_eq!(get(&n, "i").value, Value::Str("80".into()));
        assert_eq!(get(&n, "j").value, Value::Str("yes".into()));
    }

    #[test]
    fn positions_of_keys_and_values() {
        let n =
            parse("services:\n  app:\n    image: nginx\n    ports:\n      - 80\n      - \"81\"\n")
                .unwrap();
        let services = get(&n, "services");
        let app = get(services, "app");
        let (k, v) = &map(app)[0];
        assert_eq!(k.name, "image");
        assert_eq!(
            k.pos,
            Pos {
                line: 3,
                col: 5,
                file: 0
            }
        );
        assert_eq!(
            v.pos,
            Pos {
                line: 3,
                col: 12,
                file: 0
            }
        );
        let ports = get(app, "ports");
        let Value::Seq(items) = &ports.value else {
            panic!()
        };
        assert_eq!(
            items[0].pos,
            Pos {
                line: 5,
                col: 9,
                file: 0
            }
        );
        assert_eq!(
            items[1].pos,
            Pos {
                line: 6,
                col: 9,
                file: 0
            }
        );
    }

    #[test]
    fn non_string_keys_are_refused_like_compose_go() {
        // compose-go TestNonStringKeys: "non-string key in services: 123".
        for text in [
            "123:\n  foo: {}\n",
            "services:\n  123:\n    image: x\n",
            "e:\n  1: FOO\n",
            "true: b\n",
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.message.starts_with("non-string key `"),
                "{text:?}: {}",
                e.message
            );
            assert!(e.pos.line >= 1, "{text:?}: located");
        }
        let e = parse("services:\n  123:\n    image: x\n").unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (2, 3));
        // Quoted, they are strings.
        let n = parse("\"80\": a\n'true': b\n").unwrap();
        let names: Vec<_> = map(&n).iter().map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(names, ["80", "true"]);
    }

    #[test]
    fn merge_keys_single_and_list() {
        let n = parse(
            "base: &b\n  x: 1\n  y: 2\nother: &o\n  z: 3\none:\n  <<: *b\n  y: 9\ntwo:\n  <<: [*b, *o]\n",
        )
        .unwrap();
        let one = get(&n, "one");
        assert_eq!(get(one, "x").value, Value::Int(1));
        assert_eq!(get(one, "y").value, Value::Int(9));
        let two = get(&n, "two");
        assert_eq!(get(two, "x").value, Value::Int(1));
        assert_eq!(get(two, "z").value, Value::Int(3));
        assert!(map(two).iter().all(|(k, _)| k.name != "<<"));
    }

    #[test]
    fn duplicate_key_is_an_error_with_location() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos.line, 3, "{e:?}");
        assert_eq!(e.message, "duplicate key `a`");
    }

    #[test]
    fn yaml_bomb_is_refused() {
        let mut s = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
        let mut prev = "a";
        for n in names {
            s.push_str(&format!("{n}: &{n} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
            prev = n;
        }
        let e = parse(&s).unwrap_err();
        assert!(
            e.message.starts_with("refused: the document expands"),
            "{e:?}"
        );
    }

    #[test]
    fn syntax_error_has_location() {
        let e = parse("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.pos.line >= 2, "{e:?}");
    }
}
