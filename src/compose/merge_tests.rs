//! compose-go's `include`, multi-document, override-file and `!reset`/`!override` cases (see
//! `conformance_tests.rs` for the rest).

use super::conformance_tests::load_stack;
use super::tests::{errors, load_files, load_one};
use crate::model::*;

#[test]
fn include_short_form_merges_resources_and_resolves_paths_there() {
    let (dir, r) = load_files(
        &[
            (
                "app/compose.yaml",
                "include:\n  - ./db/compose.yaml\nservices:\n  web:\n    image: web\n    depends_on: [db]\n    volumes: [data:/d]\n",
            ),
            (
                "app/db/compose.yaml",
                "services:\n  db:\n    image: pg:${PG_TAG:-16}\n    env_file: db.env\n    volumes: ['./init:/docker-entrypoint-initdb.d:ro', 'data:/var/lib/pg']\n    secrets: [pw]\nvolumes:\n  data: {}\nsecrets:\n  pw:\n    file: ./pw.txt\n",
            ),
            ("app/db/db.env", "POSTGRES_DB=app\n"),
            ("app/db/init/01.sql", "select 1;"),
            ("app/db/pw.txt", "s3cret"),
            ("app/db/.env", "PG_TAG=17\n"),
        ],
        &[],
    );
    let s = r.unwrap().stacks.remove("app").unwrap();
    let root = dir.path().canonicalize().unwrap();
    let db = &s.services["db"];
    assert_eq!(
        db.image, "pg:17",
        "the included file's .env interpolates it"
    );
    assert_eq!(db.environment["POSTGRES_DB"].expose(), "app");
    let init = db
        .mounts
        .iter()
        .find(|m| m.target == "/docker-entrypoint-initdb.d")
        .unwrap();
    assert_eq!(
        init.source,
        MountSource::Bind {
            path: root.join("app/db/init").to_string_lossy().into_owned(),
            selinux: None,
            propagation: None,
            create_host_path: true,
        }
    );
    assert!(db.config_files.contains_key("app/db/init/"));
    let pw = db
        .mounts
        .iter()
        .find(|m| m.target == "/run/secrets/pw")
        .unwrap();
    assert!(
        matches!(&pw.source, MountSource::File { file, .. } if file.ends_with("app/db/pw.txt"))
    );
    assert_eq!(s.volumes["data"].name, "app_data");
    assert!(s.services["web"].depends_on.contains_key("db"));
}

#[test]
fn include_long_form_project_directory_and_env_file() {
    let s = load_stack(
        &[
            (
                "app/compose.yaml",
                "include:\n  - path: [lib/base.yaml, lib/override.yaml]\n    project_directory: lib/proj\n    env_file: [lib/custom.env]\nservices:\n  a:\n    image: alpine\n    environment:\n      V: ${VAR_NAME:-none}\n",
            ),
            ("app/lib/base.yaml", "services:\n  b:\n    image: alpine:${TAG}\n    env_file: x.env\n"),
            ("app/lib/override.yaml", "services:\n  b:\n    environment:\n      V: ${VAR_NAME}\n"),
            ("app/lib/custom.env", "VAR_NAME=value\nTAG=3\n"),
            ("app/lib/proj/x.env", "FROM_PROJ=1\n"),
        ],
        &[],
    )
    .unwrap();
    // TestLoadWithIncludeEnv: the include's env_file is only visible to the included file.
    assert_eq!(s.services["a"].environment["V"].expose(), "none");
    let b = &s.services["b"];
    assert_eq!(b.image, "alpine:3");
    assert_eq!(b.environment["V"].expose(), "value");
    // Relative paths resolve against project_directory.
    assert_eq!(b.environment["FROM_PROJ"].expose(), "1");
}

#[test]
fn include_conflicts_and_cycles_are_errors() {
    // Docker Compose v2.40.3: "services.web conflicts with imported resource".
    let errs = load_stack(
        &[
            (
                "app/compose.yaml",
                "include: [inc.yaml]\nservices:\n  web:\n    image: local\n",
            ),
            ("app/inc.yaml", "services:\n  web:\n    image: inc\n"),
        ],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        errs,
        ["app/compose.yaml:3:3: services.web: conflicts with imported resource (from inc.yaml)"]
    );
    // The same definition twice is fine (the same file included twice, an identical volume).
    let s = load_stack(
        &[
            (
                "app/compose.yaml",
                "include: [inc.yaml, inc.yaml]\nservices:\n  x:\n    image: y\n    volumes: [v:/v]\nvolumes:\n  v: {}\n",
            ),
            ("app/inc.yaml", "services:\n  web:\n    image: inc\nvolumes:\n  v: {}\n"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(s.services.len(), 2);
    // A cycle, reported where the include that closes it is written.
    let errs = load_stack(
        &[
            ("app/compose.yaml", "include: [sub/a.yaml]\nservices: {}\n"),
            (
                "app/sub/a.yaml",
                "include:\n  - ../compose.yaml\nservices:\n  a:\n    image: a\n",
            ),
        ],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        errs,
        [
            "app/sub/a.yaml:2:5: include[0]: include cycle: app/compose.yaml -> app/sub/a.yaml -> app/compose.yaml"
        ]
    );
    // Problems inside an included file are reported there.
    let errs = load_stack(
        &[
            ("app/compose.yaml", "include: [inc.yaml]\nservices: {}\n"),
            (
                "app/inc.yaml",
                "services:\n  web:\n    image: x\n    restart: sometimes\n",
            ),
        ],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        errs,
        [
            "app/inc.yaml:4:14: services.web.restart: invalid restart policy \"sometimes\" (use no, always, on-failure[:N] or unless-stopped)"
        ]
    );
    let errs = load_stack(
        &[("app/compose.yaml", "include: [nope.yaml]\nservices: {}\n")],
        &[],
    )
    .unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("app/compose.yaml:1:11: include[0]: cannot read \"nope.yaml\" ("),
        "{errs:?}"
    );
}

#[test]
fn nested_include_and_extends() {
    // compose-go TestNestedIncludeAndExtends.
    let s = load_stack(
        &[
            ("app/compose.yaml", "include:\n  - project_directory: .\n    path: dir/included.yaml\n"),
            (
                "app/dir/included.yaml",
                "services:\n  included:\n    extends:\n      file: dir/extended.yaml\n      service: extended\n",
            ),
            ("app/dir/extended.yaml", "services:\n  extended:\n    image: alpine\n"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(s.services["included"].image, "alpine");
}

#[test]
fn several_documents_in_one_file_merge_in_order() {
    let s = load_one(
        "services:\n  web:\n    image: nginx:1\n    environment: [A=1]\n---\nservices:\n  web:\n    image: nginx:2\n    environment: [B=2]\n  worker:\n    image: w\n",
    )
    .unwrap();
    let web = &s.services["web"];
    assert_eq!(web.image, "nginx:2");
    assert_eq!(web.environment["A"].expose(), "1");
    assert_eq!(web.environment["B"].expose(), "2");
    assert!(s.services.contains_key("worker"));
    // An error in the second document is located in it.
    let errs =
        errors("services:\n  web:\n    image: x\n---\nservices:\n  web:\n    restart: sometimes\n");
    assert_eq!(
        errs,
        [
            "app/compose.yaml:7:14: services.web.restart: invalid restart policy \"sometimes\" (use no, always, on-failure[:N] or unless-stopped)"
        ]
    );
}

#[test]
fn reset_and_override_tags_steer_merges() {
    // compose-go TestLoadExtendsWihReset.
    let s = load_one(
        "services:\n  foo:\n    extends:\n      service: bar\n    volumes: !reset []\n    environment: !override\n      B: '2'\n  bar:\n    image: alpine\n    command: echo\n    volumes:\n      - /src:/src\n    environment:\n      A: '1'\n",
    )
    .unwrap();
    let foo = &s.services["foo"];
    assert!(foo.mounts.is_empty(), "{:?}", foo.mounts);
    assert_eq!(foo.environment.keys().collect::<Vec<_>>(), ["B"]);
    assert_eq!(foo.command, Some(vec!["echo".to_string()]));
    assert_eq!(s.services["bar"].mounts.len(), 1);
    // Across documents; and a `!reset` with nothing to reset leaves the key out.
    let s = load_one(
        "services:\n  web:\n    image: x\n    ports: ['80:80']\n    labels: {a: '1'}\n---\nservices:\n  web:\n    ports: !reset []\n    labels: !override {b: '2'}\n    dns: !reset [1.1.1.1]\n",
    )
    .unwrap();
    let web = &s.services["web"];
    assert!(web.ports.is_empty());
    assert_eq!(web.labels.keys().collect::<Vec<_>>(), ["b"]);
    assert!(web.dns.is_empty());
}

#[test]
fn the_override_file_beside_the_compose_file_is_merged() {
    // Docker Compose loads compose.override.yaml (& co.) after compose.yaml.
    let s = load_stack(
        &[
            (
                "app/compose.yaml",
                "services:\n  web:\n    image: nginx:1\n    ports: ['80:80']\n",
            ),
            (
                "app/compose.override.yaml",
                "services:\n  web:\n    image: nginx:2\n  debug:\n    image: busybox\n",
            ),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(s.services["web"].image, "nginx:2");
    assert_eq!(s.services["web"].ports.len(), 1);
    assert!(s.services.contains_key("debug"));
    let errs = load_stack(
        &[
            ("app/compose.yaml", "services:\n  web:\n    image: x\n"),
            (
                "app/compose.override.yml",
                "services:\n  web:\n    restart: sometimes\n",
            ),
        ],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        errs,
        [
            "app/compose.override.yml:3:14: services.web.restart: invalid restart policy \"sometimes\" (use no, always, on-failure[:N] or unless-stopped)"
        ]
    );
    let errs = load_stack(
        &[
            ("app/compose.yaml", "services:\n  web:\n    image: x\n"),
            ("app/compose.override.yml", "services: {}\n"),
            ("app/docker-compose.override.yml", "services: {}\n"),
        ],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        errs,
        [
            "app/compose.override.yml: the folder holds more than one override file: compose.override.yml and docker-compose.override.yml; keep one"
        ]
    );
}
