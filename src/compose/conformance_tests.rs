//! Cases from compose-go's loader tests (and Compose v2's behaviour on a single Engine) that
//! berth used to refuse or get wrong. Each asserts the accepted, normalised result, or the
//! located error (`path:line:col: key: message`).

use std::fs;

use super::tests::{assert_one_error, errors, load_files, load_one, svc};
use crate::model::*;

pub(super) fn notes(s: &StackSpec) -> Vec<String> {
    s.notes.iter().map(|d| d.to_string()).collect()
}

#[test]
fn selinux_relabel_on_a_named_volume_is_accepted() {
    for z in ["z", "Z"] {
        let s = svc(&format!(
            "services:\n  db:\n    image: x\n    volumes:\n      - data:/var/lib/db:{z}\n      - logs:/logs:ro,z\nvolumes:\n  data: {{}}\n  logs: {{}}\n"
        ));
        assert_eq!(
            s.mounts[1].source,
            MountSource::Volume {
                name: "app_data".into(),
                nocopy: false,
                subpath: None,
                selinux: Some(z.into()),
            }
        );
        assert_eq!(s.mounts[1].target, "/var/lib/db");
        assert!(s.mounts[0].read_only);
        assert!(
            matches!(&s.mounts[0].source, MountSource::Volume { selinux: Some(v), .. } if v == "z")
        );
    }
    // A propagation mode stays a bind-mount-only option.
    assert_one_error(
        "services:\n  db:\n    image: x\n    volumes: ['data:/d:rshared']\nvolumes:\n  data: {}\n",
        "app/compose.yaml:4:15: services.db.volumes[0]: invalid volume \"data:/d:rshared\": \
         propagation options apply to bind mounts",
    );
}

#[test]
fn a_volume_without_relabel_keeps_its_hash() {
    // `selinux: None` is omitted from the canonical JSON: existing containers are not replaced.
    let s = svc("services:\n  db:\n    image: x\n    volumes: ['data:/d']\nvolumes:\n  data: {}\n");
    let json = s.canonical_json();
    assert!(
        json.contains(r#""source":{"name":"app_data","type":"volume"}"#),
        "{json}"
    );
}

#[test]
fn cpu_count_and_endpoint_driver_opts() {
    // compose-go: TestLoadCPUCount-like; `services.*.networks.*.driver_opts` (EndpointSettings).
    let s = svc(
        "services:\n  w:\n    image: x\n    cpu_count: 2\n    networks:\n      front:\n        link_local_ips: [169.254.8.8]\n        driver_opts:\n          com.docker.network.endpoint.ifname: eth7\nnetworks:\n  front: {}\n",
    );
    assert_eq!(s.cpu_count, Some(2));
    let att = &s.networks["app_front"];
    assert_eq!(att.link_local_ips, ["169.254.8.8"]);
    assert_eq!(
        att.driver_opts
            .get("com.docker.network.endpoint.ifname")
            .map(String::as_str),
        Some("eth7")
    );
    let plain = svc("services:\n  w:\n    image: x\n");
    assert!(!plain.canonical_json().contains("cpu_count"));
    assert!(!plain.canonical_json().contains("device_cgroup_rules"));
    let r =
        svc("services:\n  w:\n    image: x\n    device_cgroup_rules: ['c 1:3 mr', 'a 7:* rmw']\n");
    assert_eq!(r.device_cgroup_rules, ["c 1:3 mr", "a 7:* rmw"]);
    let s = load_one("services:\n  w:\n    image: x\n    attach: false\n").unwrap();
    assert_eq!(s.services["w"], plain);
    assert_eq!(
        notes(&s),
        [
            "app/compose.yaml:4:5: services.w.attach: accepted but not applied: it chooses whose \
          logs `docker compose up` shows; berth does not attach to containers"
        ]
    );
}

#[test]
fn develop_is_accepted_and_reported_as_not_applied() {
    let s = load_one(
        "services:\n  web:\n    image: x\n    develop:\n      watch:\n        - action: sync\n          path: ./src\n          target: /app\n",
    )
    .unwrap();
    assert_eq!(s.services.len(), 1);
    assert_eq!(
        notes(&s),
        [
            "app/compose.yaml:4:5: services.web.develop: accepted but not applied: `develop` drives \
          `docker compose watch` on a developer's machine; berth deploys what is committed"
        ]
    );
    // Nothing of it reaches the spec.
    assert_eq!(s.services["web"], svc("services:\n  web:\n    image: x\n"));
}

#[test]
fn empty_compose_file_is_an_error() {
    // compose-go TestEmptyFile: "empty compose file".
    for text in ["", "# nothing\n", "{}\n"] {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0] == "app/compose.yaml: empty compose file: declare at least `services:`",
            "{errs:?}"
        );
    }
}

#[test]
fn numeric_project_name_is_an_error() {
    // compose-go TestInvalidProjectNameType: "name must be a string".
    assert_one_error(
        "name: 123\nservices:\n  w:\n    image: x\n",
        "app/compose.yaml:1:7: name: must be a string, found an integer",
    );
}

#[test]
fn external_volume_with_driver_is_an_error() {
    // compose-go TestInvalidExternalAnd{Driver,DirverOpts,Labels}Combination.
    for (k, v, line) in [
        ("driver", "foobar", 5),
        ("driver_opts", "{beep: boop}", 5),
        ("labels", "[beep=boop]", 5),
    ] {
        assert_one_error(
            &format!(
                "services:\n  w:\n    image: x\nvolumes:\n  external_volume:\n    external: true\n    {k}: {v}\n"
            ),
            &format!(
                "app/compose.yaml:7:5: volumes.external_volume: conflicting parameters \"external\" and \"{k}\" specified"
            ),
        );
        let _ = line;
    }
}

#[test]
fn deprecated_external_name_is_accepted_with_a_note() {
    // compose-go TestLoad{Volumes,Networks,Secrets}WarnOnDeprecatedExternalName.
    let s = load_one(
        "services:\n  w:\n    image: x\n    volumes: ['foo:/foo']\n    networks: [net]\nvolumes:\n  foo:\n    external:\n      name: oops\nnetworks:\n  net:\n    external:\n      name: outer\nsecrets:\n  s:\n    external:\n      name: sec\n",
    )
    .unwrap();
    assert_eq!(s.volumes["foo"].name, "oops");
    assert!(s.volumes["foo"].external);
    assert_eq!(s.networks["net"].name, "outer");
    assert!(s.networks["net"].external);
    assert!(s.services["w"].networks.contains_key("outer"));
    let n = notes(&s);
    assert_eq!(n.len(), 3, "{n:?}");
    assert!(n.contains(
        &"app/compose.yaml:9:7: volumes.foo.external: `external.name` is deprecated: set `name:` and `external: true`"
            .to_string()
    ), "{n:?}");
    // ... and conflicts with a `name:` of its own (TestLoad*InvalidExternalNameAndNameCombination).
    for kind in ["volumes", "networks", "secrets"] {
        assert_one_error(
            &format!(
                "services:\n  w:\n    image: x\n{kind}:\n  foo:\n    name: user_specified_name\n    external:\n      name: external_name\n"
            ),
            &format!(
                "app/compose.yaml:8:7: {kind}.foo: name and external.name conflict; only use name"
            ),
        );
    }
}

#[test]
fn secret_uid_gid_mode_follow_compose() {
    let (_d, r) = load_files(
        &[
            (
                "app/compose.yaml",
                "services:\n  w:\n    image: x\n    secrets:\n      - source: inline\n        uid: '103'\n        gid: 104\n        mode: 0440\n      - source: onfile\n        uid: '103'\n    configs:\n      - source: c\n        target: /etc/c.conf\n        mode: 0444\nsecrets:\n  inline:\n    environment: TOKEN\n  onfile:\n    file: ./pw.txt\n    labels: [team=ops]\nconfigs:\n  c:\n    content: hello\n",
            ),
            ("app/pw.txt", "pw"),
        ],
        &[("TOKEN", "t0k")],
    );
    let s = r.unwrap().stacks.remove("app").unwrap();
    let w = &s.services["w"];
    let by_target = |t: &str| {
        w.mounts
            .iter()
            .find(|m| m.target == t)
            .unwrap()
            .source
            .clone()
    };
    // Content secrets are copied into the container: the copy carries uid, gid and mode.
    let MountSource::File {
        uid,
        gid,
        mode,
        content,
        ..
    } = by_target("/run/secrets/inline")
    else {
        panic!()
    };
    assert_eq!((uid, gid, mode), (Some(103), Some(104), Some(0o440)));
    assert_eq!(content.unwrap().expose(), "t0k");
    // 0444 is the default copy mode: not stored, the hash stays that of a plain entry.
    assert!(matches!(
        by_target("/etc/c.conf"),
        MountSource::File { mode: None, .. }
    ));
    // A file secret is bind-mounted: Compose ignores uid/gid/mode there, berth says so.
    assert!(matches!(
        by_target("/run/secrets/onfile"),
        MountSource::File { uid: None, .. }
    ));
    let n = notes(&s);
    assert!(
        n.iter().any(|m| m.starts_with(
            "app/compose.yaml:10:14: services.w.secrets[1].uid: ignored, as by Compose"
        )),
        "{n:?}"
    );
    assert!(
        n.iter().any(|m| m
            .starts_with("app/compose.yaml:20:5: secrets.onfile.labels: accepted but not applied")),
        "{n:?}"
    );
    // A uid must be a number.
    super::tests::assert_one_error_env(
        &[("HOME", "/root")],
        "services:\n  w:\n    image: x\n    secrets:\n      - source: s\n        uid: root\nsecrets:\n  s:\n    environment: HOME\n",
        "app/compose.yaml:6:14: services.w.secrets[0].uid: must be a numeric id, found \"root\"",
    );
}

#[test]
fn external_secrets_and_configs_are_accepted_until_used() {
    // Declared and unused: fine (Compose v2 only fails when a container needs it).
    let s = load_one(
        "services:\n  w:\n    image: x\nsecrets:\n  s:\n    external: true\nconfigs:\n  c:\n    external: true\n",
    )
    .unwrap();
    assert_eq!(s.services.len(), 1);
    assert_one_error(
        "services:\n  w:\n    image: x\n    configs: [c]\nconfigs:\n  c:\n    external: true\n",
        "app/compose.yaml:4:15: services.w.configs[0]: config `c` is `external`: external \
         configs are a Swarm feature, and a single Docker Engine has none to mount; declare it \
         with `file`, `environment` or `content`",
    );
}

#[test]
fn config_repo_bind_mounts_are_digested_into_the_spec() {
    let caddy = "app/Caddyfile";
    let files = [
        (
            "app/compose.yaml",
            "services:\n  web:\n    image: x\n    volumes:\n      - ./Caddyfile:/etc/caddy/Caddyfile\n      - ./site:/srv:ro\n      - ./data:/data\n      - /etc/hostname:/h:ro\n      - ./missing:/m\n",
        ),
        (caddy, ":80 {\n  respond ok\n}\n"),
        ("app/site/index.html", "hi"),
        ("app/site/css/a.css", "body{}"),
        ("app/data/db", "written by the container"),
    ];
    let (dir, r) = load_files(&files, &[]);
    let web = r
        .unwrap()
        .stacks
        .remove("app")
        .unwrap()
        .services
        .remove("web")
        .unwrap();
    let keys: Vec<&str> = web.config_files.keys().map(String::as_str).collect();
    // Host files outside the config root, missing sources and writable folders (data) are not
    // tracked.
    assert_eq!(keys, ["app/Caddyfile", "app/site/"]);
    assert_eq!(
        web.config_files["app/Caddyfile"],
        sha256_hex(b":80 {\n  respond ok\n}\n")
    );
    let before = web.spec_hash();
    let site_before = web.config_files["app/site/"].clone();

    // A changed file changes the spec hash (so the container is replaced by default).
    fs::write(dir.path().join(caddy), ":80 {\n  respond changed\n}\n").unwrap();
    let again = super::load_dir(dir.path(), &Default::default()).unwrap();
    let web2 = &again.stacks["app"].services["web"];
    assert_ne!(web2.spec_hash(), before);
    assert_eq!(web2.config_files["app/site/"], site_before);

    // A file added to a mounted folder changes its digest; a symlink is hashed, not followed.
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("app/site/link")).unwrap();
    let third = super::load_dir(dir.path(), &Default::default()).unwrap();
    assert_ne!(
        third.stacks["app"].services["web"].config_files["app/site/"],
        site_before
    );
}

#[test]
fn services_without_repo_binds_keep_their_hash() {
    let s = svc("services:\n  w:\n    image: x\n    volumes: ['/etc/hostname:/h:ro']\n");
    assert!(s.config_files.is_empty());
    let json = s.canonical_json();
    assert!(
        !json.contains("config_files") && !json.contains("on_config_change"),
        "{json}"
    );
}

#[test]
fn x_berth_on_config_change() {
    let s = svc(
        "services:\n  w:\n    image: x\n    x-berth:\n      on_config_change:\n        signal: SIGHUP\n",
    );
    assert_eq!(
        s.on_config_change,
        Some(ConfigChangeAction::Signal("SIGHUP".into()))
    );
    let s = svc(
        "services:\n  w:\n    image: x\n    x-berth:\n      on_config_change:\n        exec: [caddy, reload, --config, /etc/caddy/Caddyfile]\n",
    );
    assert_eq!(
        s.on_config_change,
        Some(ConfigChangeAction::Exec(vec![
            "caddy".into(),
            "reload".into(),
            "--config".into(),
            "/etc/caddy/Caddyfile".into()
        ]))
    );
    assert!(
        s.canonical_json()
            .contains(r#""on_config_change":{"exec":["caddy""#)
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    x-berth:\n      on_config_change:\n        signal: HUP\n        exec: [x]\n",
        "app/compose.yaml:6:9: services.w.x-berth.on_config_change: set exactly one of `signal` and `exec`",
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    x-berth:\n      on_change: {}\n",
        "app/compose.yaml:5:7: services.w.x-berth: unknown key `on_change` (x-berth takes `on_config_change`, `routes`, `expose_publicly`)",
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    x-berth:\n      on_config_change:\n        signal: hup!\n",
        "app/compose.yaml:6:17: services.w.x-berth.on_config_change.signal: invalid signal \"hup!\" (use a name such as SIGHUP, or a number)",
    );
}

#[test]
fn dotenv_multi_line_values_and_byte_order_mark() {
    let (_d, r) = load_files(
        &[
            (
                "app/compose.yaml",
                "services:\n  w:\n    image: x\n    environment:\n      CERT: ${CERT}\n      USER: ${USER_NAME}\n      PRICE: cost $5 $\n",
            ),
            (
                "app/.env",
                "\u{feff}USER_NAME=me\nCERT=\"-----BEGIN-----\nabc\n-----END-----\"\n",
            ),
        ],
        &[],
    );
    let w = r
        .unwrap()
        .stacks
        .remove("app")
        .unwrap()
        .services
        .remove("w")
        .unwrap();
    assert_eq!(
        w.environment["CERT"].expose(),
        "-----BEGIN-----\nabc\n-----END-----"
    );
    assert_eq!(w.environment["USER"].expose(), "me");
    // A lone `$` (and `$5`) is kept as written, as compose-go does.
    assert_eq!(w.environment["PRICE"].expose(), "cost $5 $");
}

#[test]
fn dotenv_unterminated_quote_is_a_located_error() {
    let (_d, r) = load_files(
        &[
            ("app/compose.yaml", "services:\n  w:\n    image: x\n"),
            ("app/.env", "A=1\nPASSWORD='hunter2\nB=2\n"),
        ],
        &[],
    );
    let errs: Vec<String> = r.unwrap_err().0.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        errs,
        ["app/.env:2:1: unterminated quoted value of PASSWORD"]
    );
}

#[test]
fn env_file_format_raw_and_unknown_format() {
    let (_d, r) = load_files(
        &[
            (
                "app/compose.yaml",
                "services:\n  w:\n    image: x\n    env_file:\n      - path: ./raw.env\n        format: raw\n      - path: ./std.env\n",
            ),
            ("app/raw.env", "Q=\"kept\" # too\nV=${HOME}\n"),
            ("app/std.env", "S=\"unquoted\" # comment\n"),
        ],
        &[("HOME", "/root")],
    );
    let w = r
        .unwrap()
        .stacks
        .remove("app")
        .unwrap()
        .services
        .remove("w")
        .unwrap();
    assert_eq!(w.environment["Q"].expose(), "\"kept\" # too");
    assert_eq!(w.environment["V"].expose(), "${HOME}");
    assert_eq!(w.environment["S"].expose(), "unquoted");
    assert_one_error(
        "services:\n  w:\n    image: x\n    env_file:\n      - path: ./a.env\n        format: toml\n",
        "app/compose.yaml:6:17: services.w.env_file[0].format: unsupported env_file format \"toml\" (use .env or raw)",
    );
}

pub(super) fn load_stack(
    files: &[(&str, &str)],
    vars: &[(&str, &str)],
) -> Result<StackSpec, Vec<String>> {
    let (_d, r) = load_files(files, vars);
    match r {
        Ok(mut d) => Ok(d.stacks.remove("app").expect("stack app")),
        Err(e) => Err(e.0.iter().map(|d| d.to_string()).collect()),
    }
}

#[test]
fn legacy_booleans_are_read_with_a_note() {
    // compose-go TestLoadLegacyBoolean: `init: yes` is true (with a warning).
    let s = load_one(
        "services:\n  test:\n    image: x\n    init: yes\n    tty: 'off'\n    privileged: TRUE\n",
    )
    .unwrap();
    let t = &s.services["test"];
    assert_eq!(t.init, Some(true));
    assert!(!t.tty);
    assert!(t.privileged);
    assert_eq!(
        notes(&s),
        [
            "app/compose.yaml:4:11: services.test.init: \"yes\" for a boolean is not YAML 1.2; use `true`",
            "app/compose.yaml:5:10: services.test.tty: \"off\" for a boolean is not YAML 1.2; use `false`",
        ]
    );
    assert_one_error(
        "services:\n  test:\n    image: x\n    init: maybe\n",
        "app/compose.yaml:4:11: services.test.init: must be a boolean, found \"maybe\"",
    );
}

#[test]
fn negative_tmpfs_size_is_an_error() {
    // compose-go TestLoadTmpfsVolumeSizeMustBeGTEQZero.
    assert_one_error(
        "services:\n  tmpfs:\n    image: nginx\n    volumes:\n      - type: tmpfs\n        target: /app\n        tmpfs:\n          size: -1\n",
        "app/compose.yaml:8:17: services.tmpfs.volumes[0].tmpfs.size: must be greater than or equal to 0",
    );
}

#[test]
fn label_file_like_compose_go() {
    // compose-go TestLoadWithLabelFile: label files in order, `labels` override them.
    let s = load_stack(
        &[
            (
                "app/compose.yaml",
                "services:\n  s1:\n    image: x\n    label_file: ./example1.label\n  s2:\n    image: x\n    label_file:\n      - ./example1.label\n      - ./example2.label\n    labels:\n      QUX: from_labels\n",
            ),
            ("app/example1.label", "FOO=foo_from_label_file\nBAR=bar_from_label_file\nLABEL.WITH.DOT=ok\n"),
            ("app/example2.label", "BAR=bar_from_label_file_2\nQUX=quz_from_label_file_2\nREF=${FOO}\n"),
        ],
        &[],
    )
    .unwrap();
    let l1 = &s.services["s1"].labels;
    assert_eq!(l1.len(), 3);
    assert_eq!(l1["LABEL.WITH.DOT"], "ok");
    let l2 = &s.services["s2"].labels;
    assert_eq!(l2["BAR"], "bar_from_label_file_2");
    assert_eq!(l2["QUX"], "from_labels");
    assert_eq!(l2["REF"], "foo_from_label_file");
    let errs = load_stack(
        &[
            (
                "app/compose.yaml",
                "services:\n  s:\n    image: x\n    label_file: l.txt\n",
            ),
            ("app/l.txt", "io.berth.managed=false\n"),
        ],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        errs,
        [
            "app/compose.yaml:4:17: services.s.label_file: l.txt:1: label `io.berth.managed` is reserved (`io.berth.*` labels are set by berth)"
        ]
    );
}

#[test]
fn develop_watch_rules_are_checked() {
    // compose-go TestBadDevelopConfig: "develop.watch.0 missing property 'action'".
    assert_one_error(
        "services:\n  frontend:\n    image: x\n    develop:\n      watch:\n        - path: ./html\n          target: /var/www\n",
        "app/compose.yaml:6:11: services.frontend.develop.watch[0]: missing property `action`",
    );
}

#[test]
fn a_compose_file_may_start_with_a_byte_order_mark() {
    let s = load_one("\u{feff}services:\n  w:\n    image: x\n").unwrap();
    assert_eq!(s.services["w"].image, "x");
}

#[test]
fn a_folder_too_large_to_digest_is_noted_not_tracked() {
    let n = super::config_files::MAX_FILES + 1;
    let names: Vec<String> = (0..n).map(|i| format!("app/big/f{i}")).collect();
    let mut files: Vec<(&str, &str)> = names.iter().map(|p| (p.as_str(), "x")).collect();
    files.push((
        "app/compose.yaml",
        "services:\n  w:\n    image: x\n    volumes: ['./big:/big:ro']\n",
    ));
    let s = load_stack(&files, &[]).unwrap();
    assert!(s.services["w"].config_files.is_empty());
    assert_eq!(
        notes(&s),
        [format!(
            "app/compose.yaml:4:5: services.w.volumes: bind source \"app/big/\" is not tracked (it \
             holds more than {} files): a change to it does not replace the container",
            super::config_files::MAX_FILES
        )]
    );
}
