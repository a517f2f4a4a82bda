//! Manifest loader tests: each kind's keys and defaults, discovery, interpolation, and every
//! error's exact `file:line:col: message`. Everything goes through `compose::load_dir` on a
//! temporary config tree, as `berth validate` does.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::compose::load_dir;
use crate::model::host::*;

/// Write `files` (path relative to the root → text) into a new temporary config root.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_in(dir: &Path, env: &[(&str, &str)]) -> Result<HostSpec, Vec<String>> {
    load_dir(dir, &vars(env))
        .map(|d| d.host)
        .map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

fn host(files: &[(&str, &str)]) -> HostSpec {
    let d = tree(files);
    load_in(d.path(), &[]).unwrap_or_else(|e| panic!("{e:#?}"))
}

fn errors(files: &[(&str, &str)]) -> Vec<String> {
    let d = tree(files);
    load_in(d.path(), &[]).expect_err("an error")
}

/// The errors of one `berth.yaml`.
fn errs(text: &str) -> Vec<String> {
    errors(&[("berth.yaml", text)])
}

fn origin(file: &str, line: u64, col: u64) -> Origin {
    Origin {
        file: file.into(),
        line,
        col,
    }
}

const STACK: &str =
    "services:\n  app:\n    image: nginx\n  off:\n    image: x\n    profiles: [debug]\n";

// ---------------------------------------------------------------------------------------------
// Kinds: keys and defaults

#[test]
fn file_defaults() {
    let h = host(&[("berth.yaml", "kind: File\npath: /etc/motd\ncontent: hi\n")]);
    let f = &h.files[Path::new("/etc/motd")];
    assert_eq!(
        *f,
        FileSpec {
            path: "/etc/motd".into(),
            content: b"hi".to_vec(),
            owner: Ownership {
                mode: 0o644,
                owner: "root".into(),
                group: "root".into()
            },
            secret: false,
            validate: None,
            adopt: false,
            on_change: None,
            origin: origin("berth.yaml", 1, 1),
        }
    );
    assert_eq!(h.len(), 1);
}

#[test]
fn file_every_key() {
    let h = host(&[
        ("web/compose.yaml", STACK),
        (
            "web/berth.yaml",
            "# nginx\nkind: File\npath: /etc/nginx//conf.d/./app.conf\ncontent: |\n  server {}\nmode: \"0600\"\nowner: www-data\ngroup: 33\nsecret: true\nvalidate: nginx -t -c %s\nadopt: true\non_change: {restart_service: web/app}\n",
        ),
    ]);
    let f = &h.files[Path::new("/etc/nginx/conf.d/app.conf")];
    assert_eq!(f.path, Path::new("/etc/nginx/conf.d/app.conf"));
    assert_eq!(f.content, b"server {}\n");
    assert_eq!(
        f.owner,
        Ownership {
            mode: 0o600,
            owner: "www-data".into(),
            group: "33".into()
        }
    );
    assert!(f.secret && f.adopt);
    assert_eq!(f.validate.as_deref(), Some("nginx -t -c %s"));
    assert_eq!(
        f.on_change,
        Some(OnChange::RestartService {
            stack: "web".into(),
            service: "app".into()
        })
    );
    assert_eq!(f.origin, origin("web/berth.yaml", 2, 1));

    for (oc, want) in [
        (
            "{reload: nginx.service}",
            OnChange::Reload("nginx.service".into()),
        ),
        (
            "{restart: getty@tty1.service}",
            OnChange::Restart("getty@tty1.service".into()),
        ),
    ] {
        let h = host(&[(
            "berth.yaml",
            &format!("kind: File\npath: /etc/x\ncontent: ''\non_change: {oc}\n"),
        )]);
        assert_eq!(h.files[Path::new("/etc/x")].on_change, Some(want));
        assert!(h.files[Path::new("/etc/x")].content.is_empty());
    }
}

#[test]
fn modes_in_every_accepted_form() {
    for (written, want) in [
        ("\"0644\"", 0o644),
        ("\"644\"", 0o644),
        ("'1777'", 0o1777),
        ("0640", 0o640),
        ("0o755", 0o755),
        ("0", 0),
        ("7", 0o7),
    ] {
        let h = host(&[(
            "berth.yaml",
            &format!("kind: Directory\npath: /srv/d\nmode: {written}\n"),
        )]);
        assert_eq!(h.dirs[Path::new("/srv/d")].owner.mode, want, "{written}");
    }
}

#[test]
fn file_source_is_read_as_bytes_relative_to_the_manifest() {
    let d = tree(&[(
        "hosts/a/berth.yaml",
        "kind: File\npath: /etc/blob\nsource: files/blob.bin\n",
    )]);
    fs::create_dir_all(d.path().join("hosts/a/files")).unwrap();
    fs::write(d.path().join("hosts/a/files/blob.bin"), [0xff, 0, 0xfe]).unwrap();
    let h = load_in(d.path(), &[]).unwrap();
    assert_eq!(h.files[Path::new("/etc/blob")].content, [0xff, 0, 0xfe]);
    // `..` that stays inside the root is fine.
    fs::write(
        d.path().join("hosts/a/berth.yaml"),
        "kind: File\npath: /etc/blob\nsource: ../../shared.txt\n",
    )
    .unwrap();
    fs::write(d.path().join("shared.txt"), "shared\n").unwrap();
    let h = load_in(d.path(), &[]).unwrap();
    assert_eq!(h.files[Path::new("/etc/blob")].content, b"shared\n");
}

#[test]
fn directory_defaults_and_keys() {
    let h = host(&[(
        "berth.yaml",
        "kind: Directory\npath: /srv/data\n---\nkind: Directory\npath: /srv/www\nmode: 02775\nowner: 1000\ngroup: www-data\nadopt: true\n",
    )]);
    assert_eq!(
        h.dirs[Path::new("/srv/data")],
        DirSpec {
            path: "/srv/data".into(),
            owner: Ownership::new(0o755),
            adopt: false,
            origin: origin("berth.yaml", 1, 1),
        }
    );
    assert_eq!(
        h.dirs[Path::new("/srv/www")],
        DirSpec {
            path: "/srv/www".into(),
            owner: Ownership {
                mode: 0o2775,
                owner: "1000".into(),
                group: "www-data".into()
            },
            adopt: true,
            origin: origin("berth.yaml", 4, 1),
        }
    );
}

#[test]
fn sysctl_values_are_normalised_and_kept_as_written() {
    let h = host(&[(
        "berth.yaml",
        "kind: Sysctl\nkey: net.ipv4.ip_local_port_range\nvalue: \"32768   60999\"\n---\nkind: Sysctl\nkey: net.ipv4.ip_forward\nvalue: 1\n---\nkind: Sysctl\nkey: fs.mqueue.msg_max\nvalue: 010\n---\nkind: Sysctl\nkey: net.ipv4.conf.br-lan.rp_filter\nvalue: '0'\n",
    )]);
    let v = |k: &str| h.sysctls[k].value.as_str();
    assert_eq!(v("net.ipv4.ip_local_port_range"), "32768\t60999");
    assert_eq!(v("net.ipv4.ip_forward"), "1");
    // As written, not as the YAML parser's octal reading (8).
    assert_eq!(v("fs.mqueue.msg_max"), "010");
    assert_eq!(v("net.ipv4.conf.br-lan.rp_filter"), "0");
    assert_eq!(
        h.sysctls["net.ipv4.ip_forward"].origin,
        origin("berth.yaml", 5, 1)
    );
}

#[test]
fn unit_keys_and_defaults() {
    let d = tree(&[
        (
            "berth.yaml",
            "kind: Unit\nname: hello.service\ncontent: |\n  [Service]\n  ExecStart=/bin/echo $HOME\nenabled: true\nstate: started\n---\nkind: Unit\nname: docker.service\ndropins:\n  10-limits.conf: \"[Service]\\nLimitNOFILE=1048576\\n\"\nadopt: true\n---\nkind: Unit\nname: ssh.socket\nstate: stopped\n---\nkind: Unit\nname: backup.timer\nsource: units/backup.timer\nenabled: false\n",
        ),
        ("units/backup.timer", "[Timer]\nOnCalendar=daily\n"),
    ]);
    let h = load_in(d.path(), &[]).unwrap();
    assert_eq!(
        h.units["hello.service"],
        UnitSpec {
            name: "hello.service".into(),
            content: Some("[Service]\nExecStart=/bin/echo $HOME\n".into()),
            dropins: BTreeMap::new(),
            enabled: Some(true),
            state: Some(UnitRunState::Started),
            adopt: false,
            origin: origin("berth.yaml", 1, 1),
        }
    );
    let docker = &h.units["docker.service"];
    assert_eq!(docker.content, None);
    assert_eq!(
        docker.dropins,
        BTreeMap::from([(
            "10-limits.conf".to_string(),
            "[Service]\nLimitNOFILE=1048576\n".to_string()
        )])
    );
    assert!(docker.adopt && docker.enabled.is_none() && docker.state.is_none());
    assert_eq!(h.units["ssh.socket"].state, Some(UnitRunState::Stopped));
    let timer = &h.units["backup.timer"];
    assert_eq!(
        timer.content.as_deref(),
        Some("[Timer]\nOnCalendar=daily\n")
    );
    assert_eq!(timer.enabled, Some(false));
    assert_eq!(timer.origin, origin("berth.yaml", 19, 1));
}

#[test]
fn every_unit_type_is_a_unit_name() {
    for ty in crate::berthfile::UNIT_TYPES {
        let h = host(&[(
            "berth.yaml",
            &format!("kind: Unit\nname: x-y_z@a.{ty}\nenabled: true\n"),
        )]);
        assert_eq!(h.units.len(), 1, "{ty}");
    }
}

// ---------------------------------------------------------------------------------------------
// Files, documents, discovery

#[test]
fn several_documents_and_empty_ones() {
    let h = host(&[(
        "berth.yaml",
        "---\n# nothing here\n---\nkind: File\npath: /a\ncontent: a\n---\n---\n  kind: Directory\n  path: /b\n...\n---\nkind: Sysctl\nkey: vm.swappiness\nvalue: 10\n",
    )]);
    assert_eq!(h.files[Path::new("/a")].origin, origin("berth.yaml", 4, 1));
    assert_eq!(h.dirs[Path::new("/b")].origin, origin("berth.yaml", 9, 3));
    assert_eq!(
        h.sysctls["vm.swappiness"].origin,
        origin("berth.yaml", 13, 1)
    );
    assert_eq!(h.len(), 3);
    // A file of empty documents declares nothing, and is fine.
    assert!(host(&[("berth.yaml", "---\n---\n# c\n")]).is_empty());
}

#[test]
fn discovery_nested_named_and_hidden() {
    let d = tree(&[
        ("berth.yaml", "kind: Directory\npath: /root-level\n"),
        (
            "net.berth.yaml",
            "kind: Sysctl\nkey: net.ipv4.ip_forward\nvalue: 1\n",
        ),
        ("a/b/c/deep.berth.yaml", "kind: Directory\npath: /deep\n"),
        // A berth.yaml in a stack's folder.
        ("web/compose.yaml", STACK),
        ("web/berth.yaml", "kind: Directory\npath: /srv/web\n"),
        // Skipped: hidden folders and files, other names.
        (".git/berth.yaml", "kind: Nonsense\n"),
        ("a/.hidden/x.berth.yaml", "kind: Nonsense\n"),
        (".secret.berth.yaml", "kind: Nonsense\n"),
        ("a/.berth.yaml", "kind: Nonsense\n"),
        ("a/berth.yaml.bak", "kind: Nonsense\n"),
        ("a/notberth.yaml", "kind: Nonsense\n"),
        ("a/other.yaml", "kind: Nonsense\n"),
    ]);
    let h = load_in(d.path(), &[]).unwrap();
    let dirs: Vec<_> = h.dirs.values().map(|d| d.origin.to_string()).collect();
    assert_eq!(
        dirs,
        [
            "a/b/c/deep.berth.yaml:1:1",
            "berth.yaml:1:1",
            "web/berth.yaml:1:1"
        ]
    );
    assert_eq!(
        h.sysctls["net.ipv4.ip_forward"].origin.to_string(),
        "net.berth.yaml:1:1"
    );
    // The stack is loaded beside them.
    let desired = load_dir(d.path(), &BTreeMap::new()).unwrap();
    assert!(desired.stacks.contains_key("web"));
}

#[test]
fn a_yml_manifest_is_refused_not_ignored() {
    assert_eq!(
        errors(&[("x/berth.yml", "kind: File\n"), ("a.berth.yml", "")]),
        [
            "a.berth.yml: berth manifests are named `berth.yaml` or `*.berth.yaml`; rename it",
            "x/berth.yml: berth manifests are named `berth.yaml` or `*.berth.yaml`; rename it",
        ]
    );
}

#[test]
fn every_known_kind_is_dispatched() {
    for kind in crate::berthfile::KINDS {
        // A Firewall with every key at its default is a valid document.
        let d = tree(&[("berth.yaml", &format!("kind: {kind}\n"))]);
        let e = load_in(d.path(), &[]).err().unwrap_or_default();
        assert!(
            e.iter()
                .all(|e| !e.contains("kind `") && !e.contains("unknown kind")),
            "{kind}: {e:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Interpolation

#[test]
fn interpolation_in_values_but_not_in_content_or_dropins() {
    let d = tree(&[(
        "berth.yaml",
        "kind: File\npath: ${CONF_DIR}/app.conf\ncontent: \"port=${PORT}\\n\"\nowner: ${APP_USER:-app}\n---\nkind: Sysctl\nkey: net.core.${KNOB}\nvalue: ${SOMAXCONN}\n---\nkind: Unit\nname: ${UNIT}.service\ncontent: \"ExecStart=/bin/x ${PORT}\\n\"\ndropins:\n  a.conf: \"Environment=P=${PORT}\\n\"\nenabled: ${ENABLE}\n",
    )]);
    let env = [
        ("CONF_DIR", "/etc/app"),
        ("PORT", "8080"),
        ("KNOB", "somaxconn"),
        ("SOMAXCONN", "4096"),
        ("UNIT", "app"),
        ("ENABLE", "true"),
    ];
    let h = load_in(d.path(), &env).unwrap();
    let f = &h.files[Path::new("/etc/app/app.conf")];
    assert_eq!(f.content, b"port=${PORT}\n");
    assert_eq!(f.owner.owner, "app");
    assert_eq!(h.sysctls["net.core.somaxconn"].value, "4096");
    let u = &h.units["app.service"];
    assert_eq!(u.content.as_deref(), Some("ExecStart=/bin/x ${PORT}\n"));
    assert_eq!(u.dropins["a.conf"], "Environment=P=${PORT}\n");
    assert_eq!(u.enabled, Some(true));
}

#[test]
fn interpolation_errors_are_located() {
    assert_eq!(
        errs("kind: File\npath: ${DIR:?set DIR}/x\ncontent: ${NOT:?never parsed}\n"),
        ["berth.yaml:2:7: path: required variable DIR is missing a value: set DIR"]
    );
}

// ---------------------------------------------------------------------------------------------
// Errors, exactly

#[test]
fn unknown_keys_with_and_without_a_suggestion() {
    assert_eq!(
        errs(
            "kind: File\npath: /etc/x\ncontnet: hi\nsource: x\nmode_: 1\n---\nkind: Directory\npath: /d\nwhatever: 1\n"
        ),
        [
            "berth.yaml:3:1: unknown key `contnet` in a File; did you mean `content`?",
            "berth.yaml:4:9: source: cannot read `x`: No such file or directory (os error 2)",
            "berth.yaml:5:1: unknown key `mode_` in a File; did you mean `mode`?",
            "berth.yaml:9:1: unknown key `whatever` in a Directory (known keys: kind, path, mode, owner, group, adopt)",
        ]
    );
    assert_eq!(
        errs("kind: File\npath: /x\ncontent: a\non_change: {reloda: x.service}\n"),
        ["berth.yaml:4:13: on_change: unknown key `reloda` in on_change; did you mean `reload`?"]
    );
}

#[test]
fn content_and_source_exactly_one() {
    assert_eq!(
        errs("kind: File\npath: /etc/x\ncontent: a\nsource: a.txt\n"),
        ["berth.yaml:4:1: set one of `content` or `source`, not both"]
    );
    assert_eq!(
        errs("kind: File\npath: /etc/x\nmode: \"0600\"\n"),
        ["berth.yaml:1:1: a File needs `content` or `source`"]
    );
    assert_eq!(
        errs("kind: Unit\nname: a.service\nsource: a\ncontent: b\n"),
        ["berth.yaml:4:1: set one of `content` or `source`, not both"]
    );
    assert_eq!(
        errs("kind: File\npath: /etc/x\ncontent: [a]\n"),
        ["berth.yaml:3:10: content: must be a string, found a list"]
    );
}

#[test]
fn paths_must_be_absolute_and_clean() {
    let one = |path: &str| {
        let e = errs(&format!("kind: Directory\npath: {path}\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        e.into_iter().next().unwrap()
    };
    assert_eq!(
        one("etc/x"),
        "berth.yaml:2:7: path: must be an absolute path, found \"etc/x\""
    );
    assert_eq!(
        one("/etc/../root/x"),
        "berth.yaml:2:7: path: must not contain `..`, found \"/etc/../root/x\""
    );
    assert_eq!(
        one("/etc/x/"),
        "berth.yaml:2:7: path: must not end in `/`, found \"/etc/x/\""
    );
    assert_eq!(
        one("/"),
        "berth.yaml:2:7: path: must not end in `/`, found \"/\""
    );
    assert_eq!(
        one("12"),
        "berth.yaml:2:7: path: must be a string, found an integer"
    );
    assert_eq!(
        errs("kind: File\ncontent: x\n"),
        ["berth.yaml:1:1: a File needs `path`"]
    );
}

#[test]
fn bad_modes() {
    let one = |mode: &str| {
        let e = errs(&format!("kind: Directory\npath: /d\nmode: {mode}\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        e.into_iter().next().unwrap()
    };
    assert_eq!(
        one("644"),
        "berth.yaml:3:7: mode: 644 is a decimal number (0o1204); write the mode in octal: 0644 or \"644\""
    );
    assert_eq!(
        one("900"),
        "berth.yaml:3:7: mode: 900 is a decimal number (0o1604); write the mode in octal, e.g. 0644 or \"0644\""
    );
    assert_eq!(
        one("\"0999\""),
        "berth.yaml:3:7: mode: invalid mode \"0999\": use octal digits, e.g. \"0644\" (at most 7777)"
    );
    assert_eq!(
        one("'17777'"),
        "berth.yaml:3:7: mode: invalid mode \"17777\": use octal digits, e.g. \"0644\" (at most 7777)"
    );
    assert_eq!(
        one("rw-r--r--"),
        "berth.yaml:3:7: mode: invalid mode \"rw-r--r--\": use octal digits, e.g. \"0644\" (at most 7777)"
    );
    assert_eq!(
        one("017777"),
        "berth.yaml:3:7: mode: mode 0o17777 is out of range (at most 0o7777)"
    );
    assert_eq!(
        one("[1]"),
        "berth.yaml:3:7: mode: must be an octal mode like \"0644\", found a list"
    );
}

#[test]
fn wrong_types_name_the_key_path() {
    assert_eq!(
        errs(
            "kind: File\npath: /x\ncontent: a\nsecret: maybe\nadopt: 1\nowner: a b\ngroup: -1\nvalidate: check\non_change:\n  restart: nginx\n"
        ),
        [
            "berth.yaml:4:9: secret: must be true or false, found \"maybe\"",
            "berth.yaml:5:8: adopt: must be true or false, found 1",
            "berth.yaml:6:8: owner: invalid user or group \"a b\": use a name like `www-data` or a number",
            "berth.yaml:7:8: group: -1 is not a valid user or group id",
            "berth.yaml:8:11: validate: must contain `%s` (the staged file's path), found \"check\"",
            "berth.yaml:10:12: on_change.restart: \"nginx\" must end in a unit type: .service, .timer, .socket, .path, .mount, .target, .slice, .automount, .swap",
        ]
    );
    assert_eq!(
        errs(
            "kind: File\npath: /x\ncontent: a\non_change: {reload: a.service, restart: b.service}\n"
        ),
        ["berth.yaml:4:32: on_change: set exactly one of `reload`, `restart` or `restart_service`"]
    );
    assert_eq!(
        errs("kind: File\npath: /x\ncontent: a\non_change: reload\n"),
        ["berth.yaml:4:12: on_change: must be a mapping, found a string"]
    );
    assert_eq!(
        errs("kind: File\npath: /x\ncontent: a\non_change: {restart_service: app}\n"),
        [
            "berth.yaml:4:30: on_change.restart_service: must be STACK/SERVICE (`web/app`), found \"app\""
        ]
    );
}

#[test]
fn sysctl_and_unit_errors() {
    assert_eq!(
        errs(
            "kind: Sysctl\nkey: net/ipv4/ip_forward\nvalue: 1\n---\nkind: Sysctl\nkey: net..x\nvalue: 1\n---\nkind: Sysctl\nkey: Net.IPv4\nvalue: [1]\n---\nkind: Sysctl\nkey: vm.swappiness\nvalue: '  '\n"
        ),
        [
            "berth.yaml:2:6: key: invalid sysctl key \"net/ipv4/ip_forward\": use dots, not `/` (`net.ipv4.ip_forward`)",
            "berth.yaml:6:6: key: invalid sysctl key \"net..x\": must be dotted segments (`net.ipv4.ip_forward`), with no empty segment",
            "berth.yaml:10:6: key: invalid sysctl key \"Net.IPv4\": segments may only hold `a-z`, `0-9`, `_` and `-`",
            "berth.yaml:11:8: value: must be a string or a number, found a list",
            "berth.yaml:15:8: value: must not be empty",
        ]
    );
    assert_eq!(
        errs(
            "kind: Unit\nname: hello.service\n---\nkind: Unit\nname: ../x.service\nenabled: true\n---\nkind: Unit\nname: x.device\nstate: running\n---\nkind: Unit\nname: y.service\ndropins:\n  override: x\n  a/b.conf: x\n  ok.conf: 1\n"
        ),
        [
            "berth.yaml:1:1: Unit `hello.service` declares nothing: set `content`, `source`, `dropins`, `enabled` or `state`",
            "berth.yaml:5:7: name: \"../x.service\" must be a unit name, not a path",
            "berth.yaml:9:7: name: \"x.device\" must end in a unit type: .service, .timer, .socket, .path, .mount, .target, .slice, .automount, .swap",
            "berth.yaml:10:8: state: must be `started` or `stopped`, found \"running\"",
            "berth.yaml:15:3: dropins: drop-in name \"override\" must be a file name ending in `.conf` (`override.conf`)",
            "berth.yaml:16:3: dropins: drop-in name \"a/b.conf\" must be a file name ending in `.conf` (`override.conf`)",
            "berth.yaml:17:12: dropins.ok.conf: must be a string, found an integer",
        ]
    );
}

#[test]
fn kinds_unknown_missing_and_unsupported() {
    assert_eq!(
        errs("kind: Fiel\npath: /x\n"),
        [
            "berth.yaml:1:7: unknown kind `Fiel` (known kinds: File, Directory, Sysctl, Unit, AddressSet, Firewall, Route, Proxy, Job, Backup, Prune, Defaults); did you mean `File`?"
        ]
    );
    assert_eq!(
        errs("kind: Service\n"),
        [
            "berth.yaml:1:7: unknown kind `Service` (known kinds: File, Directory, Sysctl, Unit, AddressSet, Firewall, Route, Proxy, Job, Backup, Prune, Defaults)"
        ]
    );
    assert_eq!(
        errs("path: /x\ncontent: a\n"),
        [
            "berth.yaml:1:1: missing `kind:` (one of File, Directory, Sysctl, Unit, AddressSet, Firewall, Route, Proxy, Job, Backup, Prune, Defaults)"
        ]
    );
    assert_eq!(
        errs("kind: 3\n"),
        ["berth.yaml:1:7: kind: must be a string, found an integer"]
    );
    assert_eq!(
        errs("- kind: File\n"),
        ["berth.yaml:1:1: a berth document must be a mapping with `kind:`, found a list"]
    );
    let e = errs("kind: File\npath: [\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("berth.yaml:") && e[0].contains(": invalid YAML: "),
        "{e:?}"
    );
}

#[test]
fn duplicate_addresses_name_both_places() {
    assert_eq!(
        errors(&[
            ("berth.yaml", "kind: File\npath: /etc/x\ncontent: a\n"),
            (
                "b/x.berth.yaml",
                "kind: Sysctl\nkey: vm.swappiness\nvalue: 1\n---\n\nkind: File\npath: /etc//x\ncontent: b\n---\nkind: Sysctl\nkey: vm.swappiness\nvalue: 2\n",
            ),
        ]),
        [
            "b/x.berth.yaml:6:1: `file:/etc/x` is already declared at berth.yaml:1:1",
            "b/x.berth.yaml:10:1: `sysctl:vm.swappiness` is already declared at b/x.berth.yaml:1:1",
        ]
    );
    assert_eq!(
        errs(
            "kind: Unit\nname: a.service\nenabled: true\n---\nkind: Unit\nname: a.service\nstate: started\n---\nkind: Directory\npath: /d\n---\nkind: Directory\npath: /d\n"
        ),
        [
            "berth.yaml:5:1: `unit:a.service` is already declared at berth.yaml:1:1",
            "berth.yaml:12:1: `directory:/d` is already declared at berth.yaml:9:1",
        ]
    );
}

#[test]
fn paths_berth_writes_conflict_across_kinds() {
    assert_eq!(
        errs("kind: Directory\npath: /etc/x\n---\nkind: File\npath: /etc/x\ncontent: a\n"),
        [
            "berth.yaml:4:1: `file:/etc/x` conflicts with `directory:/etc/x` declared at berth.yaml:1:1: both manage /etc/x"
        ]
    );
    assert_eq!(
        errs(
            "kind: File\npath: /etc/sysctl.d/99-zz-berth-vm.swappiness.conf\ncontent: a\n---\nkind: Sysctl\nkey: vm.swappiness\nvalue: 1\n"
        ),
        [
            "berth.yaml:5:1: `sysctl:vm.swappiness` conflicts with `file:/etc/sysctl.d/99-zz-berth-vm.swappiness.conf` declared at berth.yaml:1:1: both manage /etc/sysctl.d/99-zz-berth-vm.swappiness.conf"
        ]
    );
    assert_eq!(
        errs(
            "kind: Unit\nname: a.service\ncontent: x\ndropins: {b.conf: y}\n---\nkind: File\npath: /etc/systemd/system/a.service\ncontent: a\n---\nkind: File\npath: /etc/systemd/system/a.service.d/b.conf\ncontent: a\n"
        ),
        [
            "berth.yaml:6:1: `file:/etc/systemd/system/a.service` conflicts with `unit:a.service` declared at berth.yaml:1:1: both manage /etc/systemd/system/a.service",
            "berth.yaml:10:1: `file:/etc/systemd/system/a.service.d/b.conf` conflicts with `unit:a.service` declared at berth.yaml:1:1: both manage /etc/systemd/system/a.service.d/b.conf",
        ]
    );
    // A Unit without content writes no unit file: a File may own it.
    let h = host(&[(
        "berth.yaml",
        "kind: Unit\nname: a.service\nenabled: true\n---\nkind: File\npath: /etc/systemd/system/a.service\ncontent: a\n",
    )]);
    assert_eq!(h.len(), 2);
}

#[test]
fn restart_service_names_a_service_of_the_config() {
    let with = |target: &str| {
        errors(&[
            ("web/compose.yaml", STACK),
            (
                "berth.yaml",
                &format!(
                    "kind: File\npath: /x\ncontent: a\non_change:\n  restart_service: {target}\n"
                ),
            ),
        ])
    };
    assert_eq!(
        with("web/ap"),
        [
            "berth.yaml:5:20: on_change.restart_service: stack `web` has no service `ap`; did you mean `app`?"
        ]
    );
    assert_eq!(
        with("db/app"),
        ["berth.yaml:5:20: on_change.restart_service: no stack `db` in the config"]
    );
    assert_eq!(
        with("web/off"),
        [
            "berth.yaml:5:20: on_change.restart_service: service `off` of stack `web` is not deployed (profile debug not active)"
        ]
    );
}

#[test]
fn secret_content_never_reaches_a_diagnostic() {
    const SECRET: &str = "hunter2-s3cr3t";
    let cases = [
        format!("kind: File\npath: /etc/k\nsecret: true\ncontent: {SECRET}\nsource: x\n"),
        format!(
            "kind: File\npath: etc/k\nsecret: true\ncontent: \"{SECRET}\"\nmode: 999\ncontnet: 1\n"
        ),
        format!("kind: File\npath: /etc/k\nsecret: true\ncontent: ${{{SECRET}\nmode: x\n"),
        format!("kind: File\npath: /etc/k\nsecret: true\ncontent: {{{SECRET}: 1}}\n"),
        format!(
            "kind: File\npath: /etc/k\nsecret: true\ncontent: [{SECRET}]\non_change: {{restart_service: a/b}}\n"
        ),
        format!("kind: Fiel\npath: /etc/k\nsecret: true\ncontent: {SECRET}\n"),
        format!(
            "kind: File\npath: /etc/k\nsecret: true\ncontent: {SECRET}\n---\nkind: File\npath: /etc/k\nsecret: true\ncontent: {SECRET}\n"
        ),
        format!("kind: File\npath: /etc/k\nsecret: true\ncontent: |\n  {SECRET}\n validate: x\n"),
        format!("kind: File\npath: /etc/k\nsecret: true\ncontent: \"{SECRET}\n"),
        format!("kind: File\npath: /etc/k\nsecret: true\ncontent: '{SECRET}' x\n"),
        format!("kind: File\npath: /etc/k\nsecret: true\ncontent: \"\\q{SECRET}\"\n"),
        format!("kind: File\npath: /etc/k\nsecret: true\ncontent: &a {SECRET}\nx: *b\n"),
    ];
    for text in &cases {
        let e = errs(text);
        assert!(!e.is_empty(), "{text}");
        assert!(e.iter().all(|e| !e.contains(SECRET)), "{text}: {e:#?}");
    }
    // Nor does a source file's text.
    let d = tree(&[
        ("berth.yaml", "kind: Unit\nname: a.service\nsource: u\n"),
        ("u", ""),
    ]);
    fs::write(d.path().join("u"), [b'k', 0xff, b'z']).unwrap();
    assert_eq!(
        load_in(d.path(), &[]).unwrap_err(),
        ["berth.yaml:3:9: source: must be UTF-8 text (a unit file)"]
    );
}

#[test]
fn source_must_stay_inside_the_root() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("passwd"), "root:x:0:0\n").unwrap();
    let d = tree(&[(
        "a/berth.yaml",
        "kind: File\npath: /1\nsource: ../../passwd\n---\nkind: File\npath: /2\nsource: /etc/passwd\n---\nkind: File\npath: /3\nsource: link\n---\nkind: File\npath: /4\nsource: dir\n---\nkind: File\npath: /5\nsource: ''\n",
    )]);
    std::os::unix::fs::symlink(outside.path().join("passwd"), d.path().join("a/link")).unwrap();
    fs::create_dir(d.path().join("a/dir")).unwrap();
    assert_eq!(
        load_in(d.path(), &[]).unwrap_err(),
        [
            "a/berth.yaml:3:9: source: `../../passwd` leaves the config root",
            "a/berth.yaml:7:9: source: must be a path relative to the manifest's folder, found \"/etc/passwd\"",
            "a/berth.yaml:11:9: source: `link` leads outside the config root through a symlink",
            "a/berth.yaml:15:9: source: `dir` is a folder, not a file",
            "a/berth.yaml:19:9: source: must be a path relative to the manifest's folder, found \"\"",
        ]
    );
}

#[test]
fn a_stack_named_host_is_refused() {
    assert_eq!(
        errors(&[("host/compose.yaml", STACK)]),
        [
            "host/compose.yaml: stack name `host` is reserved for host settings' commit status (berth/<instance>/host); set a different top-level `name:`"
        ]
    );
    assert_eq!(
        errors(&[("x/compose.yaml", &format!("name: host\n{STACK}"))]),
        [
            "x/compose.yaml: stack name `host` is reserved for host settings' commit status (berth/<instance>/host); set a different top-level `name:`"
        ]
    );
    let d = tree(&[("host/compose.yaml", &format!("name: hostapp\n{STACK}"))]);
    assert!(load_dir(d.path(), &BTreeMap::new()).is_ok());
}

/// `PathBuf` keys are absolute and clean whatever was written.
#[test]
fn paths_are_normalised() {
    let h = host(&[("berth.yaml", "kind: Directory\npath: //srv/./a//b\n")]);
    assert_eq!(
        h.dirs.keys().collect::<Vec<_>>(),
        [&PathBuf::from("/srv/a/b")]
    );
}
