//! The corpus of public Compose files in `tests/fixtures/corpus` (origins and licences in its
//! ORIGIN.md). Each folder is loaded on its own with [`load_dir`]: first with no variables at
//! all (only a `.env` that upstream ships), then — when the folder has a `vars.env` (the values
//! a user would put in `.env`, taken from the project's example) — with those variables.
//!
//! The expected outcome of every file is pinned in [`EXPECTED`], so a loader change that makes a
//! file fail (or pass) shows up here. Keys berth refuses by design must be reported with a
//! position and the key's full path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{dotenv, load_dir};
use crate::diag::Diagnostics;

/// What loading a corpus folder must give.
enum Expect {
    /// Loads without a diagnostic.
    Valid,
    /// Refused only because of keys berth does not support by design (full key paths).
    Refused(&'static [&'static str]),
    /// The file itself is wrong (Compose refuses it, or the Engine would): the messages, without
    /// the `file:line:col: ` prefix.
    Invalid(&'static [&'static str]),
}
use Expect::*;

const EXPECTED: &[(&str, Expect)] = &[
    ("ac-alfresco", Valid),
    ("ac-angular", Valid),
    ("ac-aspnet-mssql", Valid),
    ("ac-bunkerweb-mariadb", Valid),
    ("ac-caddy-fastapi", Valid),
    ("ac-django", Valid),
    ("ac-elasticsearch-logstash-kibana", Valid),
    ("ac-fastapi-ollama", Valid),
    ("ac-genieacs-mongodb", Valid),
    ("ac-gitea-postgres", Valid),
    ("ac-graylog", Valid),
    ("ac-localstack", Valid),
    ("ac-minecraft", Valid),
    ("ac-netdata", Valid),
    ("ac-nextcloud-postgres", Valid),
    ("ac-nextcloud-redis-mariadb", Valid),
    ("ac-nginx-flask-mysql", Valid),
    ("ac-nginx-golang-postgres-rabbitmq", Valid),
    ("ac-nginx-wsgi-flask", Valid),
    ("ac-odoo-postgres", Valid),
    ("ac-pihole-cloudflared-doh", Valid),
    ("ac-plex", Valid),
    ("ac-portainer", Valid),
    ("ac-postgresql-pgadmin", Valid),
    // Two mounts on /prometheus: the Engine refuses the container ("Duplicate mount point").
    (
        "ac-prometheus-grafana",
        Invalid(&["services.prometheus: duplicate mount target \"/prometheus\""]),
    ),
    ("ac-prometheus-grafana-provision", Valid),
    // The service is spelt `Backend` but depended on as `backend`: Compose refuses it too.
    (
        "ac-react-express-mongodb",
        Invalid(&["services.frontend.depends_on: depends on undefined service `backend`"]),
    ),
    ("ac-react-express-mysql", Valid),
    ("ac-react-java-mysql", Valid),
    ("ac-react-rust-postgres", Valid),
    ("ac-spring-postgres", Valid),
    ("ac-telegraf-influxdb-grafana", Valid),
    ("ac-traefik-golang", Valid),
    ("ac-wasmedge-kafka-mysql", Valid),
    ("ac-wasmedge-mysql-nginx", Valid),
    ("ac-wireguard", Valid),
    ("ac-wordpress-mysql", Valid),
    ("airflow", Valid),
    ("atsea-shop", Valid),
    ("docker-elk", Valid),
    ("dockprom", Valid),
    ("example-voting-app", Valid),
    ("kong", Valid),
    ("langfuse", Valid),
    ("netbox-docker", Valid),
    ("nginx-proxy", Valid),
    ("supabase", Valid),
    ("superset", Valid),
    ("temporal", Valid),
    ("traefik-acme-dns-secrets", Valid),
    ("uptime-kuma", Valid),
    // Swarm placement constraints: by design (one server).
    (
        "vegasbrianc-prometheus",
        Refused(&[
            "services.alertmanager.deploy.placement",
            "services.prometheus.deploy.placement",
        ]),
    ),
];

const REFUSED: &str = " is not supported by berth";

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

/// The variables of `dir/vars.env`, if there is one.
fn vars(dir: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(dir.join("vars.env")).ok()?;
    let vars =
        dotenv::parse_env_file(&text).unwrap_or_else(|e| panic!("{}/vars.env:{e}", dir.display()));
    Some(vars)
}

/// A diagnostic without its `file:line:col: ` prefix; refusals as the refused key's full path.
fn outcome(diags: &Diagnostics) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut refused = BTreeSet::new();
    let mut other = BTreeSet::new();
    for d in &diags.0 {
        let m = &d.message;
        // A refusal may end with its reason: "…: key `k` is not supported by berth: why".
        if let Some((rest, _why)) = m.split_once(REFUSED)
            && let Some((path, key)) = rest.split_once(": key `")
            && let Some(key) = key.strip_suffix('`')
        {
            assert!(d.line > 0 && d.column > 0, "a refusal must be located: {d}");
            refused.insert(format!("{path}.{key}"));
        } else {
            other.insert(m.clone());
        }
    }
    (refused, other)
}

#[test]
fn corpus_validates() {
    let root = corpus_root();
    let mut dirs: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let listed: Vec<String> = EXPECTED.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        dirs, listed,
        "every corpus folder needs an entry in EXPECTED (sorted), and every entry a folder"
    );

    let none = BTreeMap::new();
    let (mut bare_ok, mut ok, mut refused_n, mut invalid_n) = (0, 0, 0, 0);
    let mut mismatches = Vec::new();
    for (name, expect) in EXPECTED {
        let dir = root.join(name);
        let bare = load_dir(&dir, &none);
        if bare.is_ok() {
            bare_ok += 1;
        }
        let result = match vars(&dir) {
            Some(v) => load_dir(&dir, &v),
            None => bare,
        };
        let (refused, other) = match &result {
            Ok(_) => Default::default(),
            Err(d) => outcome(d),
        };
        let set = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let matches = match expect {
            Valid => result.is_ok(),
            Refused(keys) => other.is_empty() && refused == set(keys),
            Invalid(msgs) => refused.is_empty() && other == set(msgs),
        };
        match (expect, matches) {
            (Valid, true) => ok += 1,
            (Refused(_), true) => refused_n += 1,
            (Invalid(_), true) => invalid_n += 1,
            (_, false) => mismatches.push(format!(
                "{name}: {}",
                match &result {
                    Ok(_) => "valid".to_string(),
                    Err(d) => format!("\n    {}", d.to_string().replace('\n', "\n    ")),
                }
            )),
        }
    }
    let total = EXPECTED.len();
    // The files that use only what one server needs and are valid Compose.
    let eligible = total - refused_n - invalid_n;
    println!(
        "corpus: {total} files; {ok} valid ({:.1}% of the {eligible} that use only single-server \
         features), {refused_n} refused by design, {invalid_n} invalid Compose; \
         {bare_ok} valid with no variables set",
        100.0 * ok as f64 / eligible.max(1) as f64
    );
    assert!(
        mismatches.is_empty(),
        "unexpected outcomes:\n{}",
        mismatches.join("\n")
    );
}
