use std::fs;

use super::*;
use crate::model::*;

pub(super) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose")
}

pub(super) fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Write `files` (path → content) into a fresh folder and load it.
pub(super) fn load_files(
    files: &[(&str, &str)],
    vars: &[(&str, &str)],
) -> (tempfile::TempDir, Result<Desired, Diagnostics>) {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    let r = load_dir(dir.path(), &env(vars));
    (dir, r)
}

/// Load one Compose file as stack `app`.
pub(super) fn load_one(yaml: &str) -> Result<StackSpec, Vec<String>> {
    load_one_env(yaml, &[])
}

pub(super) fn load_one_env(yaml: &str, vars: &[(&str, &str)]) -> Result<StackSpec, Vec<String>> {
    let (_dir, r) = load_files(&[("app/compose.yaml", yaml)], vars);
    match r {
        Ok(mut d) => Ok(d.stacks.remove("app").expect("stack app")),
        Err(e) => Err(e.0.iter().map(|d| d.to_string()).collect()),
    }
}

pub(super) fn errors(yaml: &str) -> Vec<String> {
    match load_one(yaml) {
        Ok(s) => panic!("expected errors, got {s:#?}"),
        Err(e) => e,
    }
}

#[track_caller]
pub(super) fn assert_one_error_env(vars: &[(&str, &str)], yaml: &str, expected: &str) {
    match load_one_env(yaml, vars) {
        Ok(s) => panic!("expected errors, got {s:#?}"),
        Err(errs) => assert_eq!(errs, vec![expected.to_string()]),
    }
}

#[track_caller]
pub(super) fn assert_one_error(yaml: &str, expected: &str) {
    let errs = errors(yaml);
    assert_eq!(errs, vec![expected.to_string()]);
}

pub(super) fn svc(yaml: &str) -> ServiceSpec {
    let mut s = load_one(yaml).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(s.services.len(), 1, "{s:#?}");
    s.services.pop_first().unwrap().1
}

/// A stable JSON view of a stack for snapshots (the absolute folder replaced by `<dir>`).
pub(super) fn stack_json(s: &StackSpec) -> String {
    let services: serde_json::Map<String, serde_json::Value> = s
        .services
        .iter()
        .map(|(k, v)| {
            let mut j = serde_json::to_value(v).unwrap();
            j["replicas"] = v.replicas.into();
            (k.clone(), j)
        })
        .collect();
    let v = serde_json::json!({
        "name": s.name,
        "file": s.file,
        "networks": s.networks,
        "volumes": s.volumes,
        "skipped": s.skipped,
        "services": services,
    });
    let text = serde_json::to_string_pretty(&v).unwrap();
    text.replace(&s.dir.to_string_lossy().into_owned(), "<dir>")
}

pub(super) fn fixture_stacks(vars: &[(&str, &str)]) -> Desired {
    load_dir(&fixtures(), &env(vars)).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------------
// Fixtures

#[test]
fn fixtures_all_load_and_hidden_folders_are_skipped() {
    let d = fixture_stacks(&[]);
    let names: Vec<_> = d.stacks.keys().cloned().collect();
    assert_eq!(
        names,
        [
            "anchors",
            "edge",
            "gitea",
            "legacy",
            "monitoring",
            "wordpress"
        ]
    );
    let gitea = &d.stacks["gitea"];
    assert_eq!(gitea.file, Path::new("git/gitea/compose.yml"));
    assert_eq!(
        gitea.dir,
        fixtures().canonicalize().unwrap().join("git/gitea")
    );
}

#[test]
fn snapshot_wordpress() {
    let d = fixture_stacks(&[]);
    insta::assert_snapshot!(stack_json(&d.stacks["wordpress"]));
}

#[test]
fn snapshot_edge_proxy() {
    let d = fixture_stacks(&[]);
    insta::assert_snapshot!(stack_json(&d.stacks["edge"]));
}

#[test]
fn snapshot_monitoring() {
    let d = fixture_stacks(&[]);
    insta::assert_snapshot!(stack_json(&d.stacks["monitoring"]));
}

#[test]
fn snapshot_gitea() {
    let d = fixture_stacks(&[]);
    insta::assert_snapshot!(stack_json(&d.stacks["gitea"]));
}

#[test]
fn snapshot_anchors() {
    let d = fixture_stacks(&[]);
    insta::assert_snapshot!(stack_json(&d.stacks["anchors"]));
}

#[test]
fn snapshot_legacy() {
    let d = fixture_stacks(&[]);
    insta::assert_snapshot!(stack_json(&d.stacks["legacy"]));
}

#[test]
fn wordpress_reads_dotenv_and_process_env_wins() {
    let d = fixture_stacks(&[]);
    let wp = &d.stacks["wordpress"];
    let db = &wp.services["db"];
    assert_eq!(
        db.environment["MARIADB_PASSWORD"].expose(),
        "correct horse battery staple"
    );
    assert_eq!(wp.services["wordpress"].ports[0].published, Some(8081));
    let d = fixture_stacks(&[("WP_PORT", "9000"), ("DB_PASSWORD", "from-env")]);
    let wp = &d.stacks["wordpress"];
    assert_eq!(wp.services["wordpress"].ports[0].published, Some(9000));
    assert_eq!(
        wp.services["db"].environment["MARIADB_PASSWORD"].expose(),
        "from-env"
    );
    // Relative bind mounts resolve against the stack folder.
    let m = &wp.services["wordpress"].mounts;
    assert!(
        m.iter()
            .any(|m| matches!(&m.source, MountSource::Bind { path, .. }
        if Path::new(path) == wp.dir.join("uploads.ini"))
                && m.read_only)
    );
}

#[test]
fn monitoring_profiles_and_file_mounts() {
    let d = fixture_stacks(&[]);
    let mon = &d.stacks["monitoring"];
    assert_eq!(
        mon.skipped.get("node-exporter").map(String::as_str),
        Some("profile host-metrics not active")
    );
    assert!(!mon.services.contains_key("node-exporter"));
    let grafana = &mon.services["grafana"];
    let secret = grafana
        .mounts
        .iter()
        .find(|m| m.target == "/run/secrets/grafana_admin_password")
        .expect("secret mount");
    let MountSource::File { file, digest, .. } = &secret.source else {
        panic!("{secret:?}")
    };
    assert!(file.ends_with("grafana/admin_password.txt"));
    assert_eq!(digest, &sha256_hex(b"not-a-real-password\n"));

    let d = fixture_stacks(&[("COMPOSE_PROFILES", "other, host-metrics")]);
    let mon = &d.stacks["monitoring"];
    assert!(mon.skipped.is_empty());
    assert_eq!(
        mon.services["node-exporter"].network_mode.as_deref(),
        Some("host")
    );
}

#[test]
fn anchors_and_merge_keys_are_applied() {
    let d = fixture_stacks(&[]);
    let s = &d.stacks["anchors"];
    let api = &s.services["api"];
    assert_eq!(api.restart.as_deref(), Some("unless-stopped"));
    assert_eq!(api.environment["TZ"].expose(), "Europe/Berlin");
    assert_eq!(api.environment["LOG_LEVEL"].expose(), "debug");
    assert_eq!(api.logging.as_ref().unwrap().options["max-size"], "10m");
    let worker = &s.services["worker"];
    assert_eq!(worker.mem_limit, Some(256 << 20));
    assert_eq!(worker.nano_cpus, Some(500_000_000));
    assert_eq!(worker.environment["LOG_LEVEL"].expose(), "info");
    assert_eq!(worker.cap_add, ["CHOWN", "NET_BIND_SERVICE"]);
}

// ---------------------------------------------------------------------------------------------
// Errors, with exact locations

#[test]
fn unknown_key_is_an_error_with_location() {
    assert_one_error(
        "services:\n  web:\n    image: nginx\n    imagee: nginx\n",
        "app/compose.yaml:4:5: services.web: unknown key `imagee` (not part of the Compose specification); did you mean `image`?",
    );
}

#[test]
fn unsupported_key_is_an_error_with_location() {
    assert_one_error(
        "services:\n  web:\n    image: nginx\n    post_start:\n      - command: [x]\n",
        "app/compose.yaml:4:5: services.web: key `post_start` is not supported by berth",
    );
    assert_one_error(
        "models:\n  m:\n    model: ai/x\nservices:\n  web:\n    image: nginx\n",
        "app/compose.yaml:1:1: key `models` is not supported by berth",
    );
    assert_one_error(
        "services:\n  web:\n    image: nginx\n    deploy:\n      placement:\n        constraints: []\n",
        "app/compose.yaml:5:7: services.web.deploy: key `placement` is not supported by berth: \
         Swarm-only: placement chooses among Swarm nodes, and has no effect on a single Docker \
         Engine; remove it",
    );
    assert_one_error(
        "services:\n  web:\n    image: nginx\n    deploy:\n      resources:\n        reservations:\n          cpus: '0.5'\n",
        "app/compose.yaml:7:11: services.web.deploy.resources.reservations: key `cpus` is not \
         supported by berth: a CPU reservation has no effect on a single Docker Engine (only \
         Swarm schedules by it); remove it or use `cpus` / `cpu_shares`",
    );
    assert_one_error(
        "services:\n  web:\n    image: nginx\n    deploy:\n      restart_policy:\n        delay: 5s\n",
        "app/compose.yaml:6:9: services.web.deploy.restart_policy: key `delay` is not supported \
         by berth: Swarm-only: the Docker Engine's restart policy has no delay (it backs off by \
         itself); remove it",
    );
}

#[test]
fn extensions_and_version_are_ignored() {
    let s = load_one(
        "version: '3.8'\nx-top: 1\nservices:\n  web:\n    image: nginx\n    x-mine: {a: 1}\nnetworks:\n  x-net: 1\n",
    )
    .unwrap();
    assert_eq!(s.services["web"].image, "nginx");
}

#[test]
fn bad_port_names_the_item() {
    assert_one_error(
        "services:\n  web:\n    image: nginx\n    ports:\n      - 80\n      - \"80:abc\"\n",
        "app/compose.yaml:6:9: services.web.ports[1]: invalid port \"80:abc\": \"abc\" is not a port number",
    );
}

#[test]
fn missing_required_variable() {
    assert_one_error(
        "services:\n  web:\n    image: nginx\n    environment:\n      PW: ${PW:?please set PW}\n",
        "app/compose.yaml:5:11: services.web.environment.PW: required variable PW is missing a value: please set PW",
    );
    let s = load_one_env(
        "services:\n  web:\n    image: nginx\n    environment:\n      PW: ${PW:?please set PW}\n",
        &[("PW", "x")],
    )
    .unwrap();
    assert_eq!(s.services["web"].environment["PW"].expose(), "x");
}

#[test]
fn duplicate_key_is_reported_at_its_line() {
    let errs = errors("services:\n  web:\n    image: nginx\n    image: httpd\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("app/compose.yaml:4:"), "{errs:?}");
    assert!(errs[0].to_lowercase().contains("duplicate"), "{errs:?}");
}

#[test]
fn invalid_yaml_has_location() {
    let errs = errors("services:\n  web:\n    image: [nginx\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("app/compose.yaml:"), "{errs:?}");
    assert!(errs[0].contains("invalid YAML"), "{errs:?}");
}

#[test]
fn all_problems_are_reported() {
    let errs = errors(
        "services:\n  a:\n    image: x\n    ports: [\"99999\"]\n  b:\n    image: y\n    restart: sometimes\n    post_start: []\n",
    );
    assert_eq!(
        errs,
        [
            "app/compose.yaml:4:13: services.a.ports[0]: invalid port \"99999\": port \"99999\" is out of range 1-65535",
            "app/compose.yaml:7:14: services.b.restart: invalid restart policy \"sometimes\" (use no, always, on-failure[:N] or unless-stopped)",
            "app/compose.yaml:8:5: services.b: key `post_start` is not supported by berth",
        ]
    );
}

#[test]
fn problems_across_files_are_all_reported_sorted() {
    let (_d, r) = load_files(
        &[
            ("b/compose.yaml", "services:\n  x:\n    imag: y\n"),
            (
                "a/compose.yaml",
                "services:\n  x:\n    image: y\n    foo: 1\n",
            ),
        ],
        &[],
    );
    let errs: Vec<String> = r.unwrap_err().0.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        errs,
        [
            "a/compose.yaml:4:5: services.x: unknown key `foo` (not part of the Compose specification)",
            "b/compose.yaml:2:3: services.x: service has neither `image` nor `build`",
            "b/compose.yaml:3:5: services.x: unknown key `imag` (not part of the Compose specification); did you mean `image`?",
        ]
    );
}

#[test]
fn location_inside_merged_anchor_points_at_the_definition() {
    let errs = errors(
        "x-base: &base\n  restart: always\n  bogus: 1\nservices:\n  web:\n    <<: *base\n    image: nginx\n",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("app/compose.yaml:3:3: services.web: unknown key `bogus`"),
        "{errs:?}"
    );
}

#[test]
fn two_compose_files_in_one_folder() {
    let (_d, r) = load_files(
        &[
            ("app/compose.yaml", "services: {}\n"),
            ("app/docker-compose.yml", "services: {}\n"),
        ],
        &[],
    );
    let errs = r.unwrap_err().to_string();
    assert_eq!(
        errs,
        "app/compose.yaml: the folder holds more than one Compose file: compose.yaml and docker-compose.yml; keep one"
    );
}

#[test]
fn duplicate_stack_names() {
    let (_d, r) = load_files(
        &[
            ("one/compose.yaml", "name: shop\nservices: {}\n"),
            ("two/compose.yaml", "name: shop\nservices: {}\n"),
        ],
        &[],
    );
    assert_eq!(
        r.unwrap_err().to_string(),
        "two/compose.yaml: stack name `shop` is already used by one/compose.yaml; set a different top-level `name:`"
    );
}

#[test]
fn stack_names_are_normalised_and_nested_stacks_found() {
    let (_d, r) = load_files(
        &[
            ("My App.v2/compose.yaml", "services: {}\n"),
            ("My App.v2/inner/compose.yml", "services: {}\n"),
            (".git/compose.yaml", "garbage: ["),
        ],
        &[],
    );
    let d = r.unwrap();
    assert_eq!(d.stacks.keys().collect::<Vec<_>>(), ["inner", "myappv2"]);
    let errs = errors("name: My-App\nservices: {}\n");
    assert!(
        errs[0].contains("invalid project name \"My-App\""),
        "{errs:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Services

#[test]
fn port_short_syntax() {
    let p = |s: &str| {
        ports::parse_port_short(s).map(|v| v.iter().map(|p| format!("{p}")).collect::<Vec<_>>())
    };
    assert_eq!(p("80").unwrap(), ["80"]);
    assert_eq!(p("8080:80").unwrap(), ["8080:80"]);
    assert_eq!(p("127.0.0.1:3000:3000").unwrap(), ["127.0.0.1:3000:3000"]);
    assert_eq!(p("127.0.0.1::80").unwrap(), ["127.0.0.1:80"]);
    assert_eq!(p("8000-8001:80-81").unwrap(), ["8000:80", "8001:81"]);
    assert_eq!(p("53:53/udp").unwrap(), ["53:53/udp"]);
    assert_eq!(p("[::1]:80:80").unwrap(), ["::1:80:80"]);
    assert!(p("8000-8002:80-81").unwrap_err().contains("differ in size"));
    assert!(p("80/xyz").is_err());
    assert!(p("abc:80:80").unwrap_err().contains("not an IP address"));
    assert!(p("0").is_err());
}

#[test]
fn ports_long_syntax_and_sorting() {
    let s = svc(
        "services:\n  w:\n    image: x\n    ports:\n      - 9000\n      - target: \"80-81\"\n        published: \"8000-8001\"\n        host_ip: 127.0.0.1\n        protocol: udp\n        mode: host\n      - target: \"81\"\n      - \"3000:3000\"\n",
    );
    let ports: Vec<String> = s.ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        ports,
        [
            "127.0.0.1:8000:80/udp",
            "81",
            "127.0.0.1:8001:81/udp",
            "3000:3000",
            "9000"
        ]
    );
}

#[test]
fn volumes_short_and_long_syntax() {
    let s = load_one(
        "services:\n  w:\n    image: x\n    volumes:\n      - data:/data:ro,nocopy\n      - ./conf:/etc/conf:Z\n      - /srv/a:/a:rw,rshared\n      - /anon\n      - type: tmpfs\n        target: /tmp\n        tmpfs: {size: 64m, mode: 01777}\n      - type: volume\n        source: data\n        target: /sub\n        volume: {subpath: x, nocopy: true}\n      - type: bind\n        source: ../shared\n        target: /shared\n        bind: {create_host_path: false, selinux: z, propagation: rprivate}\nvolumes:\n  data:\n    name: custom-data\n",
    )
    .unwrap();
    let m = &s.services["w"].mounts;
    let dir = s.dir.to_string_lossy().into_owned();
    let parent = s.dir.parent().unwrap().to_string_lossy().into_owned();
    let got: Vec<_> = m
        .iter()
        .map(|m| (m.target.as_str(), &m.source, m.read_only))
        .collect();
    assert_eq!(
        got,
        [
            (
                "/a",
                &MountSource::Bind {
                    path: "/srv/a".into(),
                    selinux: None,
                    propagation: Some("rshared".into()),
                    create_host_path: true
                },
                false
            ),
            ("/anon", &MountSource::Anonymous, false),
            (
                "/data",
                &MountSource::Volume {
                    name: "custom-data".into(),
                    nocopy: true,
                    subpath: None,
                    selinux: None,
                },
                true
            ),
            (
                "/etc/conf",
                &MountSource::Bind {
                    path: format!("{dir}/conf"),
                    selinux: Some("Z".into()),
                    propagation: None,
                    create_host_path: true
                },
                false
            ),
            (
                "/shared",
                &MountSource::Bind {
                    path: format!("{parent}/shared"),
                    selinux: Some("z".into()),
                    propagation: Some("rprivate".into()),
                    create_host_path: false
                },
                false
            ),
            (
                "/sub",
                &MountSource::Volume {
                    name: "custom-data".into(),
                    nocopy: true,
                    subpath: Some("x".into()),
                    selinux: None,
                },
                false
            ),
            (
                "/tmp",
                &MountSource::Tmpfs {
                    size: Some(64 << 20),
                    mode: Some(0o1777)
                },
                false
            ),
        ]
    );
    assert_eq!(s.volumes["data"].name, "custom-data");
}

#[test]
fn empty_volume_source_is_one_clear_error() {
    // What `${MEDIA_PATH}:/media:z` becomes when MEDIA_PATH is unset.
    assert_one_error(
        "services:\n  w:\n    image: x\n    volumes:\n      - ${MEDIA_PATH}:/media:ro,z\n",
        "app/compose.yaml:5:9: services.w.volumes[0]: invalid volume \":/media:ro,z\": the source before `:` is empty (is a variable unset?)",
    );
}

#[test]
fn undeclared_volume_and_network() {
    let errs = errors(
        "services:\n  w:\n    image: x\n    volumes:\n      - data:/data\n    networks: [front]\n",
    );
    assert_eq!(
        errs,
        [
            "app/compose.yaml:5:9: services.w.volumes[0]: volume `data` is not declared in the top-level `volumes`",
            "app/compose.yaml:6:16: services.w.networks: network `front` is not declared in the top-level `networks`",
        ]
    );
}

#[test]
fn networks_default_and_engine_names() {
    let s = load_one(
        "services:\n  a:\n    image: x\n  b:\n    image: x\n    networks:\n      back:\n        aliases: [db, b2]\n        ipv4_address: 10.5.0.5\n      outside:\n  c:\n    image: x\n    network_mode: \"service:a\"\nnetworks:\n  back:\n    driver: bridge\n    internal: true\n    ipam:\n      config:\n        - subnet: 10.5.0.0/16\n          gateway: 10.5.0.1\n  outside:\n    external: true\n",
    )
    .unwrap();
    assert_eq!(s.networks["default"].name, "app_default");
    assert_eq!(s.networks["back"].name, "app_back");
    assert_eq!(
        s.networks["outside"],
        NetworkSpec {
            name: "outside".into(),
            external: true,
            ..Default::default()
        }
    );
    assert_eq!(
        s.networks["back"].ipam.as_ref().unwrap().config[0]
            .gateway
            .as_deref(),
        Some("10.5.0.1")
    );
    assert_eq!(
        s.services["a"].networks.keys().collect::<Vec<_>>(),
        ["app_default"]
    );
    let b = &s.services["b"].networks;
    assert_eq!(b.keys().collect::<Vec<_>>(), ["app_back", "outside"]);
    assert_eq!(b["app_back"].aliases, ["b2", "db"]);
    assert_eq!(b["app_back"].ipv4_address.as_deref(), Some("10.5.0.5"));
    assert!(s.services["c"].networks.is_empty());

    // No service on the default network: it is not created.
    let s = load_one("services:\n  a:\n    image: x\n    network_mode: host\n").unwrap();
    assert!(s.networks.is_empty());
}

#[test]
fn network_mode_with_networks_is_an_error() {
    assert_one_error(
        "services:\n  a:\n    image: x\n    network_mode: host\n    networks: [default]\n",
        "app/compose.yaml:5:5: services.a.networks: cannot be used together with `network_mode`",
    );
}

#[test]
fn depends_on_unknown_and_cycles() {
    assert_one_error(
        "services:\n  a:\n    image: x\n    depends_on: [nope]\n",
        "app/compose.yaml:4:18: services.a.depends_on: depends on undefined service `nope`",
    );
    assert_one_error(
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on:\n      a: {condition: service_started}\n",
        "app/compose.yaml:2:3: services.a: dependency cycle: a -> b -> a",
    );
    let s = load_one("services:\n  a:\n    image: x\n    depends_on:\n      gone: {condition: service_started, required: false}\n").unwrap();
    assert!(!s.services["a"].depends_on["gone"].required);
}
