//! A stand-in for GitHub's REST API (GitHub itself is unreachable from the test machines).
//!
//! Every request is matched to an operation of GitHub's official OpenAPI description
//! (`tests/fixtures/github/api/subset.openapi.json`) by method and path template, and checked
//! against it: path parameters, query parameters, `Authorization`, and the JSON body against the
//! operation's request schema. A request that does not validate is recorded as a violation and
//! answered `422` (`404` for an unknown path, `401` without `Authorization`); every test that
//! uses the fake ends with [`GitHubFake::assert_no_violations`]. The fake's own responses are
//! built from the description's examples and validated against the response schemas too, so a
//! drifting fake is a violation as well.
//!
//! A few limits GitHub enforces are not in the description; the fake enforces them as well and
//! says so in the reason ("GitHub rule"): a commit status `description` of at most 140
//! characters, a comment `body` of at most 65,536 characters, and `conclusion` being required
//! when a check run is created `completed`.
//!
//! State is kept so the API behaves: statuses per ref (list + combined), check runs by id,
//! comments per issue (paginated with `per_page`/`page` and a `Link` header), pull requests the
//! test registers, and GitHub App installation tokens minted against a JWT that is verified
//! with the test key's public half.
#![allow(dead_code)] // shared by several test modules, not all use every helper

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use berth::github::{Auth, GitHubOptions};
use berth::model::Secret;
use serde_json::{Value, json};

/// The personal access token the fake accepts by default.
pub const FAKE_TOKEN: &str = "ghp_berthFAKEtoken0123456789abcdefABCDEF";
pub const FAKE_OWNER: &str = "octo-org";
pub const FAKE_REPO_NAME: &str = "deploy";
pub const FAKE_REPO: &str = "octo-org/deploy";
pub const FAKE_APP_ID: u64 = 424_242;
pub const FAKE_INSTALLATION_ID: u64 = 7_777;
pub const FAKE_BOT_LOGIN: &str = "berth-app[bot]";

// ---------------------------------------------------------------------------------------------
// The OpenAPI description and the validator
// ---------------------------------------------------------------------------------------------

/// GitHub's OpenAPI description (the subset berth uses), with its routes.
pub struct Spec {
    doc: Value,
    routes: Vec<Route>,
}

struct Route {
    method: String,
    template: String,
    segs: Vec<Seg>,
    op: Value,
    params: Vec<Value>,
}

#[derive(Debug)]
enum Seg {
    Lit(String),
    Param { name: String, multi: bool },
}

/// A request that validated: which operation it is and its path parameters.
#[derive(Debug, Clone)]
pub struct Matched {
    pub operation_id: String,
    pub template: String,
    pub path_params: BTreeMap<String, String>,
    pub body: Option<Value>,
}

/// A request that did not validate: the status the fake answers and why.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub status: u16,
    pub reasons: Vec<String>,
}

impl Spec {
    /// Loaded once per test process.
    pub fn get() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/github/api/subset.openapi.json");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            Spec::from_doc(serde_json::from_str(&text).expect("subset.openapi.json is JSON"))
        })
    }

    fn from_doc(doc: Value) -> Spec {
        let mut routes = Vec::new();
        let paths = doc["paths"].as_object().expect("paths");
        for (template, item) in paths {
            let common: Vec<Value> = item
                .get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (method, op) in item.as_object().expect("path item") {
                if !matches!(method.as_str(), "get" | "post" | "patch" | "put" | "delete") {
                    continue;
                }
                let mut params: Vec<Value> = Vec::new();
                let own = op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for p in common.iter().chain(own.iter()) {
                    params.push(resolve_in(&doc, p).clone());
                }
                let segs = template
                    .trim_start_matches('/')
                    .split('/')
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(name) => {
                                let multi = params.iter().any(|p| {
                                    p["name"] == name
                                        && p["in"] == "path"
                                        && p["x-multi-segment"] == Value::Bool(true)
                                });
                                Seg::Param {
                                    name: name.to_string(),
                                    multi,
                                }
                            }
                            None => Seg::Lit(s.to_string()),
                        },
                    )
                    .collect();
                routes.push(Route {
                    method: method.to_ascii_uppercase(),
                    template: template.clone(),
                    segs,
                    op: op.clone(),
                    params,
                });
            }
        }
        Spec { doc, routes }
    }

    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// `components.examples.<name>.value`.
    pub fn example(&self, name: &str) -> Value {
        let v = self.doc["components"]["examples"][name]["value"].clone();
        assert!(!v.is_null(), "no example {name} in the description");
        v
    }

    /// The JSON schema of an operation's response with `status`.
    pub fn response_schema(&self, operation_id: &str, status: u16) -> Option<&Value> {
        let route = self
            .routes
            .iter()
            .find(|r| r.op["operationId"] == operation_id)?;
        let resp = resolve_in(
            &self.doc,
            route.op.get("responses")?.get(status.to_string())?,
        );
        resp.get("content")?.get("application/json")?.get("schema")
    }

    /// Validates one request. `headers` names are lower-case.
    pub fn validate_request(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Matched, Rejection> {
        let segs: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let mut candidates: Vec<(&Route, BTreeMap<String, String>)> = Vec::new();
        for r in &self.routes {
            let mut params = BTreeMap::new();
            if match_segs(&r.segs, &segs, &mut params) {
                candidates.push((r, params));
            }
        }
        if candidates.is_empty() {
            return Err(Rejection {
                status: 404,
                reasons: vec![format!(
                    "no operation in the description matches path {path}"
                )],
            });
        }
        let Some((route, path_params)) = candidates
            .into_iter()
            .filter(|(r, _)| r.method == method)
            .max_by_key(|(r, _)| r.segs.iter().filter(|s| matches!(s, Seg::Lit(_))).count())
        else {
            return Err(Rejection {
                status: 404,
                reasons: vec![format!(
                    "path {path} has no {method} operation in the description"
                )],
            });
        };
        let header = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        let mut reasons = Vec::new();

        let auth = header("authorization");
        match auth {
            None => {
                return Err(Rejection {
                    status: 401,
                    reasons: vec!["missing Authorization header".to_string()],
                });
            }
            Some(a)
                if !(a.starts_with("Bearer ") || a.starts_with("token "))
                    || a.split_once(' ').is_none_or(|(_, t)| t.trim().is_empty()) =>
            {
                reasons.push("Authorization must be `Bearer <token>`".to_string());
            }
            Some(_) => {}
        }
        if header("user-agent").is_none_or(str::is_empty) {
            reasons.push("missing User-Agent header (GitHub answers 403 without one)".to_string());
        }
        if header("accept").is_none_or(|a| !a.contains("application/vnd.github+json")) {
            reasons.push("Accept must be application/vnd.github+json".to_string());
        }
        match header("x-github-api-version") {
            Some("2022-11-28") => {}
            other => reasons.push(format!(
                "X-GitHub-Api-Version must be 2022-11-28, got {other:?}"
            )),
        }

        // Parameters.
        for p in &route.params {
            let name = p["name"].as_str().unwrap_or_default();
            let required = p["required"] == Value::Bool(true);
            let schema = &p["schema"];
            match p["in"].as_str() {
                Some("path") => match path_params.get(name) {
                    Some(v) => {
                        self.check_param(&format!("path parameter {name}"), schema, v, &mut reasons)
                    }
                    None => reasons.push(format!("path parameter {name} missing")),
                },
                Some("query") => {
                    let values: Vec<&String> = query
                        .iter()
                        .filter(|(k, _)| k == name)
                        .map(|(_, v)| v)
                        .collect();
                    if values.is_empty() && required {
                        reasons.push(format!("required query parameter {name} missing"));
                    }
                    if values.len() > 1 {
                        reasons.push(format!(
                            "query parameter {name} given {} times",
                            values.len()
                        ));
                    }
                    for v in values {
                        self.check_param(
                            &format!("query parameter {name}"),
                            schema,
                            v,
                            &mut reasons,
                        );
                    }
                }
                _ => {}
            }
        }
        for (k, _) in query {
            if !route
                .params
                .iter()
                .any(|p| p["in"] == "query" && p["name"] == k.as_str())
            {
                reasons.push(format!("unknown query parameter {k}"));
            }
        }

        // Body.
        let request_body = route
            .op
            .get("requestBody")
            .map(|b| resolve_in(&self.doc, b));
        let mut parsed = None;
        if body.is_empty() {
            if request_body.is_some_and(|b| b["required"] == Value::Bool(true)) {
                reasons.push("request body is required".to_string());
            }
        } else {
            match request_body {
                None => reasons.push(format!("{method} {} takes no request body", route.template)),
                Some(rb) => {
                    if header("content-type").is_none_or(|c| !c.starts_with("application/json")) {
                        reasons.push(
                            "request body without Content-Type: application/json".to_string(),
                        );
                    }
                    match serde_json::from_slice::<Value>(body) {
                        Err(e) => reasons.push(format!("request body is not JSON: {e}")),
                        Ok(v) => {
                            if let Some(schema) = rb["content"]["application/json"].get("schema") {
                                self.validate(schema, &v, "body", &mut reasons);
                            }
                            parsed = Some(v);
                        }
                    }
                }
            }
        }
        let operation_id = route.op["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(b) = &parsed {
            github_rules(&operation_id, b, &mut reasons);
        }
        if reasons.is_empty() {
            Ok(Matched {
                operation_id,
                template: route.template.clone(),
                path_params,
                body: parsed,
            })
        } else {
            Err(Rejection {
                status: 422,
                reasons,
            })
        }
    }

    fn check_param(&self, what: &str, schema: &Value, raw: &str, reasons: &mut Vec<String>) {
        let schema = resolve_in(&self.doc, schema);
        let value = match schema["type"].as_str() {
            Some("integer") => match raw.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => {
                    reasons.push(format!("{what}: {raw:?} is not an integer"));
                    return;
                }
            },
            Some("number") => match raw.parse::<f64>() {
                Ok(n) => json!(n),
                Err(_) => {
                    reasons.push(format!("{what}: {raw:?} is not a number"));
                    return;
                }
            },
            Some("boolean") => match raw {
                "true" => json!(true),
                "false" => json!(false),
                _ => {
                    reasons.push(format!("{what}: {raw:?} is not a boolean"));
                    return;
                }
            },
            _ => json!(raw),
        };
        if raw.is_empty() {
            reasons.push(format!("{what} is empty"));
        }
        self.validate(schema, &value, what, reasons);
    }

    /// Reasons `value` does not match `schema` (empty: valid).
    pub fn validate_value(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut reasons = Vec::new();
        self.validate(schema, value, "value", &mut reasons);
        reasons
    }

    /// The OpenAPI 3.0 subset of JSON Schema GitHub's description uses: `$ref`, `type`,
    /// `nullable`, `enum`, `required`, `properties`, `additionalProperties`, `items`,
    /// `minItems`/`maxItems`, `minLength`/`maxLength`, `format: date-time`, `allOf`, and
    /// `oneOf`/`anyOf` (valid when any branch is).
    fn validate(&self, schema: &Value, v: &Value, at: &str, reasons: &mut Vec<String>) {
        let schema = resolve_in(&self.doc, schema);
        let Some(s) = schema.as_object() else { return };
        if v.is_null() {
            if s.get("nullable") == Some(&Value::Bool(true)) {
                return;
            }
            if s.contains_key("type") {
                reasons.push(format!("{at}: null is not allowed (not nullable)"));
                return;
            }
        }
        if let Some(t) = s.get("type").and_then(Value::as_str) {
            let ok = match t {
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                "object" => v.is_object(),
                "array" => v.is_array(),
                _ => true,
            };
            if !ok {
                reasons.push(format!("{at}: expected {t}, got {}", short(v)));
                return;
            }
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            if !e.contains(v) {
                reasons.push(format!(
                    "{at}: {} is not one of {}",
                    short(v),
                    Value::Array(e.clone())
                ));
            }
        }
        if let Some(text) = v.as_str() {
            let n = text.chars().count();
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                if n as u64 > max {
                    reasons.push(format!(
                        "{at}: {n} characters is longer than maxLength {max}"
                    ));
                }
            }
            if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
                if (n as u64) < min {
                    reasons.push(format!(
                        "{at}: {n} characters is shorter than minLength {min}"
                    ));
                }
            }
            if s.get("format").and_then(Value::as_str) == Some("date-time") && !is_date_time(text) {
                reasons.push(format!("{at}: {text:?} is not an ISO 8601 date-time"));
            }
        }
        if let Some(obj) = v.as_object() {
            let props = s.get("properties").and_then(Value::as_object);
            if let Some(req) = s.get("required").and_then(Value::as_array) {
                for k in req.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(k) {
                        reasons.push(format!("{at}: required property {k:?} missing"));
                    }
                }
            }
            for (k, val) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => self.validate(ps, val, &format!("{at}.{k}"), reasons),
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            reasons.push(format!("{at}: unknown property {k:?}"))
                        }
                        Some(ap @ Value::Object(_)) => {
                            self.validate(ap, val, &format!("{at}.{k}"), reasons)
                        }
                        _ => {}
                    },
                }
            }
        }
        if let Some(items) = v.as_array() {
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    reasons.push(format!("{at}: {} items, maxItems is {max}", items.len()));
                }
            }
            if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    reasons.push(format!("{at}: {} items, minItems is {min}", items.len()));
                }
            }
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.validate(is, item, &format!("{at}[{i}]"), reasons);
                }
            }
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for b in all {
                self.validate(b, v, at, reasons);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = s.get(key).and_then(Value::as_array) {
                let mut why = Vec::new();
                let any = branches.iter().any(|b| {
                    let mut r = Vec::new();
                    self.validate(b, v, at, &mut r);
                    let ok = r.is_empty();
                    why.push(r.join("; "));
                    ok
                });
                if !any {
                    reasons.push(format!(
                        "{at}: matches no branch of {key}: [{}]",
                        why.join(" | ")
                    ));
                }
            }
        }
    }
}

/// Limits GitHub enforces that the description does not state.
fn github_rules(operation_id: &str, body: &Value, reasons: &mut Vec<String>) {
    match operation_id {
        "repos/create-commit-status" => {
            if let Some(d) = body["description"].as_str() {
                let n = d.chars().count();
                if n > 140 {
                    reasons.push(format!(
                        "body.description: {n} characters, GitHub rule: maximum is 140"
                    ));
                }
            }
        }
        "issues/create-comment" | "issues/update-comment" => {
            if let Some(b) = body["body"].as_str() {
                let n = b.chars().count();
                if n > 65_536 {
                    reasons.push(format!(
                        "body.body: {n} characters, GitHub rule: maximum is 65536"
                    ));
                }
            }
        }
        "checks/create" if body["status"] == "completed" && body.get("conclusion").is_none() => {
            reasons.push(
                "body.conclusion: GitHub rule: required when status is completed".to_string(),
            );
        }
        _ => {}
    }
}

fn resolve_in<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return v;
        };
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local $refs are supported: {r}"));
        v = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {r}"));
    }
    panic!("$ref chain too long")
}

fn match_segs(tpl: &[Seg], segs: &[String], params: &mut BTreeMap<String, String>) -> bool {
    match tpl.split_first() {
        None => segs.is_empty(),
        Some((Seg::Lit(l), rest)) => {
            segs.first().is_some_and(|s| s == l) && match_segs(rest, &segs[1..], params)
        }
        Some((Seg::Param { name, multi }, rest)) => {
            let max = if *multi {
                segs.len()
            } else {
                segs.len().min(1)
            };
            for take in (1..=max).rev() {
                if segs[..take].iter().any(String::is_empty) {
                    continue;
                }
                let mut p = params.clone();
                p.insert(name.clone(), segs[..take].join("/"));
                if match_segs(rest, &segs[take..], &mut p) {
                    *params = p;
                    return true;
                }
            }
            false
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(n) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(n);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || s[19..].contains(['+', '-']))
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------------
// The test App key
// ---------------------------------------------------------------------------------------------

/// A throw-away RSA key pair for the fake GitHub App, generated with the `openssl` CLI once per
/// test process (PKCS#1, the form GitHub hands out). TEST KEY ONLY.
pub struct TestKey {
    pub private_pem: String,
    pub public_pem: String,
}

pub fn test_app_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let private = dir.path().join("app.pem");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let private_s = private.to_str().unwrap();
        run(&["genrsa", "-traditional", "-out", private_s, "2048"]);
        let public = dir.path().join("app.pub.pem");
        run(&[
            "rsa",
            "-in",
            private_s,
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        TestKey {
            private_pem: std::fs::read_to_string(&private).unwrap(),
            public_pem: std::fs::read_to_string(&public).unwrap(),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// One request as the fake received it. Header names are lower-case.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The token after `Bearer `.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeStatus {
    pub id: u64,
    pub sha: String,
    pub state: String,
    pub context: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeComment {
    pub id: u64,
    pub issue: u64,
    pub user: String,
    pub body: String,
}

#[derive(Debug, Clone)]
struct FakePull {
    base_ref: String,
    head_sha: String,
    state: String,
    merged: bool,
}

#[derive(Debug, Clone)]
struct Failure {
    status: u16,
    retry_after: Option<u64>,
}

struct Token {
    expires: Option<SystemTime>,
    installation: bool,
}

struct FakeState {
    prefix: String,
    base_url: String,
    inner: Mutex<Inner>,
}

struct Inner {
    requests: Vec<RecordedRequest>,
    violations: Vec<String>,
    failures: VecDeque<Failure>,
    delays: VecDeque<Duration>,
    next_id: u64,
    statuses: Vec<FakeStatus>,
    check_runs: BTreeMap<u64, Value>,
    comments: Vec<FakeComment>,
    pulls: BTreeMap<u64, FakePull>,
    tokens: HashMap<String, Token>,
    app_public_pem: Option<String>,
    token_ttl: Duration,
    minted: Vec<String>,
}

/// The running stand-in. Stopped on drop.
pub struct GitHubFake {
    /// The API root to give the client (`http://127.0.0.1:PORT[/prefix]`).
    pub url: String,
    pub addr: SocketAddr,
    state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitHubFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitHubFake {
    /// github.com layout: the API at the root.
    pub async fn start() -> GitHubFake {
        GitHubFake::start_with_prefix("").await
    }

    /// GitHub Enterprise layout, e.g. `/api/v3`.
    pub async fn start_with_prefix(prefix: &str) -> GitHubFake {
        Spec::get();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let prefix = prefix.trim_end_matches('/').to_string();
        let url = format!("http://{addr}{prefix}");
        let mut tokens = HashMap::new();
        tokens.insert(
            FAKE_TOKEN.to_string(),
            Token {
                expires: None,
                installation: false,
            },
        );
        let state = Arc::new(FakeState {
            prefix,
            base_url: url.clone(),
            inner: Mutex::new(Inner {
                requests: Vec::new(),
                violations: Vec::new(),
                failures: VecDeque::new(),
                delays: VecDeque::new(),
                next_id: 1000,
                statuses: Vec::new(),
                check_runs: BTreeMap::new(),
                comments: Vec::new(),
                pulls: BTreeMap::new(),
                tokens,
                app_public_pem: None,
                token_ttl: Duration::from_secs(3600),
                minted: Vec::new(),
            }),
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        GitHubFake {
            url,
            addr,
            state,
            task,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Client options for this fake (repo [`FAKE_REPO`], 5 s timeout).
    pub fn options(&self, auth: Auth) -> GitHubOptions {
        GitHubOptions {
            api_url: self.url.clone(),
            repo: FAKE_REPO.to_string(),
            auth,
            timeout: Duration::from_secs(5),
        }
    }

    /// [`FAKE_TOKEN`] as client auth.
    pub fn token_auth(&self) -> Auth {
        Auth::Token(Secret::new(FAKE_TOKEN))
    }

    /// Installs the fake App ([`FAKE_APP_ID`], installation [`FAKE_INSTALLATION_ID`] on
    /// [`FAKE_REPO`]) with the test key; returns the client auth for it.
    pub fn enable_app(&self) -> Auth {
        let key = test_app_key();
        self.inner().app_public_pem = Some(key.public_pem.clone());
        Auth::App {
            app_id: FAKE_APP_ID,
            private_key_pem: Secret::new(key.private_pem.clone()),
        }
    }

    /// Lifetime of the installation tokens minted from now on (default 1 h).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.inner().token_ttl = ttl;
    }

    /// Installation tokens minted so far, oldest first.
    pub fn minted_tokens(&self) -> Vec<String> {
        self.inner().minted.clone()
    }

    /// Makes `token` invalid from now on (GitHub answers 401).
    pub fn revoke_token(&self, token: &str) {
        self.inner().tokens.remove(token);
    }

    pub fn add_pull(&self, n: u64, base_ref: &str, head_sha: &str) {
        self.inner().pulls.insert(
            n,
            FakePull {
                base_ref: base_ref.into(),
                head_sha: head_sha.into(),
                state: "open".into(),
                merged: false,
            },
        );
    }

    /// `state` is `open` or `closed`.
    pub fn set_pull_state(&self, n: u64, state: &str, merged: bool) {
        let mut g = self.inner();
        let p = g.pulls.get_mut(&n).expect("add_pull first");
        p.state = state.into();
        p.merged = merged;
    }

    /// Seeds a comment by someone else; returns its id.
    pub fn add_comment(&self, issue: u64, user: &str, body: &str) -> u64 {
        let mut g = self.inner();
        g.next_id += 1;
        let id = g.next_id;
        g.comments.push(FakeComment {
            id,
            issue,
            user: user.into(),
            body: body.into(),
        });
        id
    }

    pub fn comments(&self, issue: u64) -> Vec<FakeComment> {
        self.inner()
            .comments
            .iter()
            .filter(|c| c.issue == issue)
            .cloned()
            .collect()
    }

    /// Statuses created for `sha`, oldest first.
    pub fn statuses_for(&self, sha: &str) -> Vec<FakeStatus> {
        self.inner()
            .statuses
            .iter()
            .filter(|s| s.sha == sha)
            .cloned()
            .collect()
    }

    /// The check run as the API would return it.
    pub fn check_run(&self, id: u64) -> Option<Value> {
        self.inner().check_runs.get(&id).cloned()
    }

    /// Every check run created so far, oldest first.
    pub fn check_runs(&self) -> Vec<Value> {
        self.inner().check_runs.values().cloned().collect()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner().requests.clone()
    }

    /// The next `n` (valid) requests are answered `status` (e.g. 502).
    pub fn fail_next(&self, n: usize, status: u16) {
        self.fail_next_with(n, status, None);
    }

    /// Like [`fail_next`](Self::fail_next) with a `Retry-After` header (seconds); a 403 with
    /// one is GitHub's secondary rate limit.
    pub fn fail_next_with(&self, n: usize, status: u16, retry_after: Option<u64>) {
        let mut g = self.inner();
        for _ in 0..n {
            g.failures.push_back(Failure {
                status,
                retry_after,
            });
        }
    }

    /// The next `n` requests are answered only after `delay`.
    pub fn delay_next(&self, n: usize, delay: Duration) {
        let mut g = self.inner();
        for _ in 0..n {
            g.delays.push_back(delay);
        }
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner().violations.clone()
    }

    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.inner().violations)
    }

    /// Panics listing every request that did not match GitHub's description.
    #[track_caller]
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "{} GitHub API violation(s):\n  {}",
            v.len(),
            v.join("\n  ")
        );
    }
}

type Reply = (u16, Value, Vec<(&'static str, String)>);

fn error_body(status: u16, message: &str) -> Value {
    json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": status.to_string(),
    })
}

async fn handle(
    State(st): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let method = method.as_str().to_string();
    let full_path = uri.path().to_string();
    let query = parse_query(uri.query());
    let hdrs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let json_body = serde_json::from_slice::<Value>(&body).ok();
    let delay = {
        let mut g = st.inner.lock().unwrap();
        g.requests.push(RecordedRequest {
            method: method.clone(),
            path: full_path.clone(),
            query: query.clone(),
            headers: hdrs.clone(),
            body: json_body,
        });
        g.delays.pop_front()
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }

    let reject = |status: u16, reasons: Vec<String>| {
        let mut g = st.inner.lock().unwrap();
        for r in &reasons {
            g.violations.push(format!("{method} {full_path}: {r}"));
        }
        let msg = if status == 404 {
            "Not Found".to_string()
        } else {
            format!(
                "Validation Failed (berth GitHub fake): {}",
                reasons.join("; ")
            )
        };
        let mut b = error_body(status, &msg);
        if status == 422 {
            b["errors"] = Value::Array(
                reasons
                    .iter()
                    .map(|r| json!({ "resource": "Request", "code": "invalid", "message": r }))
                    .collect(),
            );
        }
        reply(status, b, Vec::new())
    };

    let Some(path) = full_path
        .strip_prefix(st.prefix.as_str())
        .filter(|p| p.starts_with('/'))
    else {
        return reject(
            404,
            vec![format!("not under the API prefix {:?}", st.prefix)],
        );
    };
    let spec = Spec::get();
    let matched = match spec.validate_request(&method, path, &query, &hdrs, &body) {
        Ok(m) => m,
        Err(r) => return reject(r.status, r.reasons),
    };

    let failure = st.inner.lock().unwrap().failures.pop_front();
    if let Some(f) = failure {
        let msg = match f.status {
            403 if f.retry_after.is_some() => {
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            }
            429 => "API rate limit exceeded",
            s if s >= 500 => "Server Error",
            _ => "Injected failure",
        };
        let mut extra = Vec::new();
        if let Some(ra) = f.retry_after {
            extra.push(("retry-after", ra.to_string()));
        }
        return reply(f.status, error_body(f.status, msg), extra);
    }

    let bearer = hdrs
        .iter()
        .find(|(k, _)| k == "authorization")
        .and_then(|(_, v)| v.split_once(' ').map(|(_, t)| t.trim().to_string()))
        .unwrap_or_default();
    let (status, body, extra) = {
        let mut g = st.inner.lock().unwrap();
        dispatch(&st, &mut g, &matched, &query, &bearer)
    };
    if (200..300).contains(&status) {
        if let Some(schema) = spec.response_schema(&matched.operation_id, status) {
            let reasons = spec.validate_value(schema, &body);
            if !reasons.is_empty() {
                let mut g = st.inner.lock().unwrap();
                for r in reasons {
                    g.violations.push(format!(
                        "FAKE BUG: response to {method} {full_path} ({status}): {r}"
                    ));
                }
            }
        } else {
            st.inner.lock().unwrap().violations.push(format!(
                "FAKE BUG: {} has no {status} response in the description",
                matched.operation_id
            ));
        }
    }
    reply(status, body, extra)
}

fn reply(status: u16, body: Value, extra: Vec<(&'static str, String)>) -> Response {
    let mut resp = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    for (k, v) in extra {
        resp.headers_mut()
            .insert(k, HeaderValue::from_str(&v).unwrap());
    }
    resp
}

enum Caller {
    Jwt,
    Token { installation: bool },
}

fn authenticate(g: &Inner, bearer: &str, want_jwt: bool) -> Result<Caller, Reply> {
    let unauthorized = |m: &str| (401, error_body(401, m), Vec::new());
    if want_jwt {
        let Some(public) = &g.app_public_pem else {
            return Err(unauthorized(
                "A JSON web token could not be decoded (no App registered with the fake)",
            ));
        };
        // The process-wide provider berth itself uses: installed here too, so that a test run
        // that starts with this one (a filter) does not depend on another test installing it.
        berth::github::install_jwt_provider();
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).expect("public key");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_required_spec_claims(&["exp", "iat", "iss"]);
        v.leeway = 0;
        let claims = match jsonwebtoken::decode::<Value>(bearer, &key, &v) {
            Ok(d) => d.claims,
            Err(e) => {
                return Err(unauthorized(&format!(
                    "A JSON web token could not be decoded: {e}"
                )));
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let iss_ok =
            claims["iss"] == json!(FAKE_APP_ID.to_string()) || claims["iss"] == json!(FAKE_APP_ID);
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap_or(i64::MAX),
            claims["exp"].as_i64().unwrap_or(0),
        );
        if !iss_ok {
            return Err(unauthorized("'Issuer' claim ('iss') must be the App id"));
        }
        if exp > now + 600 {
            return Err(unauthorized(
                "'Expiration time' claim ('exp') is too far in the future",
            ));
        }
        if iat > now + 5 {
            return Err(unauthorized(
                "'Issued at' claim ('iat') must be an Integer representing a time in the past",
            ));
        }
        return Ok(Caller::Jwt);
    }
    match g.tokens.get(bearer) {
        Some(t) if t.expires.is_none_or(|e| e > SystemTime::now()) => Ok(Caller::Token {
            installation: t.installation,
        }),
        _ => Err(unauthorized("Bad credentials")),
    }
}

fn paginate<T: Clone>(
    items: &[T],
    query: &[(String, String)],
    base: &str,
) -> (Vec<T>, Vec<(&'static str, String)>) {
    let q = |k: &str| {
        query
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let per_page = q("per_page").unwrap_or(30).clamp(1, 100);
    let page = q("page").unwrap_or(1).max(1);
    let start = (page - 1).saturating_mul(per_page).min(items.len());
    let end = (start + per_page).min(items.len());
    let last = items.len().div_ceil(per_page).max(1);
    let mut links = Vec::new();
    if page < last {
        links.push(format!(
            "<{base}?per_page={per_page}&page={}>; rel=\"next\"",
            page + 1
        ));
        links.push(format!(
            "<{base}?per_page={per_page}&page={last}>; rel=\"last\""
        ));
    }
    if page > 1 {
        links.push(format!(
            "<{base}?per_page={per_page}&page=1>; rel=\"first\""
        ));
        links.push(format!(
            "<{base}?per_page={per_page}&page={}>; rel=\"prev\"",
            page - 1
        ));
    }
    let extra = if links.is_empty() {
        Vec::new()
    } else {
        vec![("link", links.join(", "))]
    };
    (items[start..end].to_vec(), extra)
}

fn user(login: &str) -> Value {
    let mut u = Spec::get().example("issue-comment")["user"].clone();
    u["login"] = json!(login);
    u["type"] = json!(if login.ends_with("[bot]") {
        "Bot"
    } else {
        "User"
    });
    u
}

fn dispatch(
    st: &FakeState,
    g: &mut Inner,
    m: &Matched,
    query: &[(String, String)],
    bearer: &str,
) -> Reply {
    let spec = Spec::get();
    let not_found = || (404, error_body(404, "Not Found"), Vec::new());
    let p = |k: &str| m.path_params.get(k).cloned().unwrap_or_default();
    let now = rfc3339(SystemTime::now());
    let api = &st.base_url;
    let html = "https://github.com";

    let want_jwt = m.operation_id.starts_with("apps/");
    let caller = match authenticate(g, bearer, want_jwt) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if m.template.starts_with("/repos/{owner}/{repo}")
        && (p("owner") != FAKE_OWNER || p("repo") != FAKE_REPO_NAME)
    {
        return not_found();
    }
    let repo_api = format!("{api}/repos/{FAKE_REPO}");
    let body = m.body.clone().unwrap_or(Value::Null);

    match m.operation_id.as_str() {
        "repos/create-commit-status" => {
            g.next_id += 1;
            let s = FakeStatus {
                id: g.next_id,
                sha: p("sha"),
                state: body["state"].as_str().unwrap_or_default().into(),
                context: body["context"].as_str().unwrap_or("default").into(),
                description: body["description"].as_str().map(str::to_string),
                target_url: body["target_url"].as_str().map(str::to_string),
            };
            g.statuses.push(s.clone());
            (201, status_json(&s, &repo_api, &now), Vec::new())
        }
        "repos/list-commit-statuses-for-ref" => {
            let r = p("ref");
            let all: Vec<Value> = g
                .statuses
                .iter()
                .rev()
                .filter(|s| s.sha == r)
                .map(|s| status_json(s, &repo_api, &now))
                .collect();
            let (page, extra) = paginate(&all, query, &format!("{repo_api}/commits/{r}/statuses"));
            (200, Value::Array(page), extra)
        }
        "repos/get-combined-status-for-ref" => {
            let r = p("ref");
            let mut latest: Vec<&FakeStatus> = Vec::new();
            for s in g.statuses.iter().rev().filter(|s| s.sha == r) {
                if !latest.iter().any(|l| l.context == s.context) {
                    latest.push(s);
                }
            }
            let state = if latest
                .iter()
                .any(|s| s.state == "failure" || s.state == "error")
            {
                "failure"
            } else if latest.is_empty() || latest.iter().any(|s| s.state == "pending") {
                "pending"
            } else {
                "success"
            };
            let mut v = spec.example("combined-commit-status");
            let simple = |s: &FakeStatus| {
                let mut j = status_json(s, &repo_api, &now);
                if let Some(o) = j.as_object_mut() {
                    o.remove("creator");
                    o.insert("required".into(), json!(false));
                }
                j
            };
            v["state"] = json!(state);
            v["sha"] = json!(r);
            v["total_count"] = json!(latest.len());
            v["statuses"] = Value::Array(latest.iter().map(|s| simple(s)).collect());
            v["commit_url"] = json!(format!("{repo_api}/commits/{r}"));
            v["url"] = json!(format!("{repo_api}/commits/{r}/status"));
            (200, v, Vec::new())
        }
        "checks/create" | "checks/update" => {
            if !matches!(caller, Caller::Token { installation: true }) {
                return (
                    403,
                    error_body(403, "You must authenticate via a GitHub App."),
                    Vec::new(),
                );
            }
            let (id, mut run, code) = if m.operation_id == "checks/create" {
                g.next_id += 1;
                let id = g.next_id;
                let mut run = spec.example("check-run");
                run["id"] = json!(id);
                run["head_sha"] = body["head_sha"].clone();
                run["status"] = json!("queued");
                run["conclusion"] = Value::Null;
                run["started_at"] = json!(now);
                run["completed_at"] = Value::Null;
                run["url"] = json!(format!("{repo_api}/check-runs/{id}"));
                run["html_url"] = json!(format!("{html}/{FAKE_REPO}/runs/{id}"));
                run["output"] = json!({ "title": null, "summary": null, "text": null, "annotations_count": 0,
                    "annotations_url": format!("{repo_api}/check-runs/{id}/annotations") });
                run["pull_requests"] = json!([]);
                (id, run, 201)
            } else {
                let id: u64 = p("check_run_id").parse().unwrap_or(0);
                match g.check_runs.get(&id) {
                    Some(r) => (id, r.clone(), 200),
                    None => return not_found(),
                }
            };
            for k in [
                "name",
                "details_url",
                "external_id",
                "status",
                "started_at",
                "conclusion",
                "completed_at",
            ] {
                if let Some(v) = body.get(k) {
                    run[k] = v.clone();
                }
            }
            if let Some(o) = body.get("output") {
                for k in ["title", "summary", "text"] {
                    if let Some(v) = o.get(k) {
                        run["output"][k] = v.clone();
                    }
                }
            }
            if !body["conclusion"].is_null() {
                run["status"] = json!("completed");
            }
            if run["status"] == "completed" && run["completed_at"].is_null() {
                run["completed_at"] = json!(now);
            }
            g.check_runs.insert(id, run.clone());
            (code, run, Vec::new())
        }
        "checks/get" => {
            let id: u64 = p("check_run_id").parse().unwrap_or(0);
            match g.check_runs.get(&id) {
                Some(r) => (200, r.clone(), Vec::new()),
                None => not_found(),
            }
        }
        "checks/list-for-ref" => {
            let r = p("ref");
            let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let runs: Vec<Value> = g
                .check_runs
                .values()
                .rev()
                .filter(|c| c["head_sha"] == r.as_str())
                .filter(|c| q("check_name").is_none_or(|n| c["name"] == n))
                .filter(|c| q("status").is_none_or(|s| c["status"] == s))
                .cloned()
                .collect();
            let (page, extra) =
                paginate(&runs, query, &format!("{repo_api}/commits/{r}/check-runs"));
            (
                200,
                json!({ "total_count": runs.len(), "check_runs": page }),
                extra,
            )
        }
        "issues/create-comment" => {
            let issue: u64 = p("issue_number").parse().unwrap_or(0);
            g.next_id += 1;
            let login = match caller {
                Caller::Token { installation: true } => FAKE_BOT_LOGIN,
                _ => "berth-user",
            };
            let c = FakeComment {
                id: g.next_id,
                issue,
                user: login.into(),
                body: body["body"].as_str().unwrap_or_default().into(),
            };
            g.comments.push(c.clone());
            (201, comment_json(&c, &repo_api, &now), Vec::new())
        }
        "issues/list-comments" => {
            let issue: u64 = p("issue_number").parse().unwrap_or(0);
            let all: Vec<Value> = g
                .comments
                .iter()
                .filter(|c| c.issue == issue)
                .map(|c| comment_json(c, &repo_api, &now))
                .collect();
            let (page, extra) =
                paginate(&all, query, &format!("{repo_api}/issues/{issue}/comments"));
            (200, Value::Array(page), extra)
        }
        "issues/update-comment" => {
            let id: u64 = p("comment_id").parse().unwrap_or(0);
            match g.comments.iter_mut().find(|c| c.id == id) {
                Some(c) => {
                    c.body = body["body"].as_str().unwrap_or_default().into();
                    let c = c.clone();
                    (200, comment_json(&c, &repo_api, &now), Vec::new())
                }
                None => not_found(),
            }
        }
        "apps/get-repo-installation" => {
            let mut v = spec.example("installation");
            v["id"] = json!(FAKE_INSTALLATION_ID);
            v["app_id"] = json!(FAKE_APP_ID);
            v["access_tokens_url"] = json!(format!(
                "{api}/app/installations/{FAKE_INSTALLATION_ID}/access_tokens"
            ));
            (200, v, Vec::new())
        }
        "apps/create-installation-access-token" => {
            if p("installation_id") != FAKE_INSTALLATION_ID.to_string() {
                return not_found();
            }
            if let Some(repos) = body.get("repositories").and_then(Value::as_array) {
                if repos.iter().any(|r| r != FAKE_REPO_NAME) {
                    return (
                        422,
                        error_body(
                            422,
                            "There is at least one repository that does not exist or is not accessible to the parent installation.",
                        ),
                        Vec::new(),
                    );
                }
            }
            let n = g.minted.len() + 1;
            let token = format!("ghs_fakeInstallationToken{n:04}");
            let expires = SystemTime::now() + g.token_ttl;
            g.tokens.insert(
                token.clone(),
                Token {
                    expires: Some(expires),
                    installation: true,
                },
            );
            g.minted.push(token.clone());
            let mut v = spec.example("installation-token");
            v["token"] = json!(token);
            v["expires_at"] = json!(rfc3339(expires));
            (201, v, Vec::new())
        }
        "pulls/get" => {
            let n: u64 = p("pull_number").parse().unwrap_or(0);
            let Some(pr) = g.pulls.get(&n) else {
                return not_found();
            };
            let mut v = spec.example("pull-request");
            v["number"] = json!(n);
            v["url"] = json!(format!("{repo_api}/pulls/{n}"));
            v["html_url"] = json!(format!("{html}/{FAKE_REPO}/pull/{n}"));
            v["state"] = json!(pr.state);
            v["merged"] = json!(pr.merged);
            v["base"]["ref"] = json!(pr.base_ref);
            v["base"]["label"] = json!(format!("{FAKE_OWNER}:{}", pr.base_ref));
            v["head"]["sha"] = json!(pr.head_sha);
            // The description's own example lacks `type` on its requested team: not ours to copy.
            v["requested_teams"] = json!([]);
            (200, v, Vec::new())
        }
        other => (
            500,
            error_body(
                500,
                &format!("berth GitHub fake does not implement {other}"),
            ),
            Vec::new(),
        ),
    }
}

fn status_json(s: &FakeStatus, repo_api: &str, now: &str) -> Value {
    let mut v = Spec::get().example("status");
    v["id"] = json!(s.id);
    v["url"] = json!(format!("{repo_api}/statuses/{}", s.sha));
    v["state"] = json!(s.state);
    v["context"] = json!(s.context);
    v["description"] = json!(s.description);
    v["target_url"] = json!(s.target_url);
    v["created_at"] = json!(now);
    v["updated_at"] = json!(now);
    v
}

fn comment_json(c: &FakeComment, repo_api: &str, now: &str) -> Value {
    let mut v = Spec::get().example("issue-comment");
    v["id"] = json!(c.id);
    v["body"] = json!(c.body);
    v["url"] = json!(format!("{repo_api}/issues/comments/{}", c.id));
    v["issue_url"] = json!(format!("{repo_api}/issues/{}", c.issue));
    v["html_url"] = json!(format!(
        "https://github.com/{FAKE_REPO}/pull/{}#issuecomment-{}",
        c.issue, c.id
    ));
    v["user"] = user(&c.user);
    v["created_at"] = json!(now);
    v["updated_at"] = json!(now);
    v
}
