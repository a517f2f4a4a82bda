//! Loader tests, continued: service fields, `extends`, resources (see `tests.rs` for the
//! helpers, fixtures, snapshots and locations).

use std::fs;

use super::tests::*;
use super::*;
use crate::model::*;

#[test]
fn environment_forms_and_env_file() {
    let (_d, r) = load_files(
        &[
            (
                "app/compose.yaml",
                "services:\n  w:\n    image: x\n    env_file:\n      - common.env\n      - path: missing.env\n        required: false\n    environment:\n      - A=override\n      - FROM_SHELL\n      - NOT_SET\n      - EMPTY=\n",
            ),
            ("app/common.env", "# shared\nA=1\nB=${HOST_VAR:-dflt}\n"),
        ],
        &[("FROM_SHELL", "shell")],
    );
    let d = r.unwrap();
    let e = &d.stacks["app"].services["w"].environment;
    let got: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
    assert_eq!(
        got,
        [
            ("A", "override"),
            ("B", "dflt"),
            ("EMPTY", ""),
            ("FROM_SHELL", "shell")
        ]
    );

    let errs = errors("services:\n  w:\n    image: x\n    env_file: nope.env\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(
            "app/compose.yaml:4:15: services.w.env_file: cannot read env file \"nope.env\""
        ),
        "{errs:?}"
    );
}

#[test]
fn command_entrypoint_and_healthcheck() {
    let s = svc(
        "services:\n  w:\n    image: x\n    command: sh -c 'echo \"hi there\"'\n    entrypoint: [\"/bin/tini\", \"--\"]\n    healthcheck:\n      test: curl -f http://localhost/ || exit 1\n      interval: 1m30s\n      timeout: 500ms\n      start_period: 1h\n      retries: 3\n",
    );
    assert_eq!(s.command.unwrap(), ["sh", "-c", "echo \"hi there\""]);
    assert_eq!(s.entrypoint.unwrap(), ["/bin/tini", "--"]);
    let h = s.healthcheck.unwrap();
    assert_eq!(h.test, ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]);
    assert_eq!(h.interval, Some(90_000_000_000));
    assert_eq!(h.timeout, Some(500_000_000));
    assert_eq!(h.start_period, Some(3_600_000_000_000));
    assert_eq!(h.retries, Some(3));
    let s = svc("services:\n  w:\n    image: x\n    healthcheck:\n      disable: true\n");
    assert_eq!(s.healthcheck.unwrap().test, ["NONE"]);
    assert_one_error(
        "services:\n  w:\n    image: x\n    healthcheck:\n      interval: 10\n",
        "app/compose.yaml:5:17: services.w.healthcheck.interval: missing unit in duration \"10\" (use e.g. 10s, 1m30s, 500ms)",
    );
}

#[test]
fn sizes_and_durations() {
    assert_eq!(read::parse_bytes("1g").unwrap(), 1 << 30);
    assert_eq!(read::parse_bytes("1gb").unwrap(), 1 << 30);
    assert_eq!(read::parse_bytes("512M").unwrap(), 512 << 20);
    assert_eq!(read::parse_bytes("100k").unwrap(), 100 << 10);
    assert_eq!(read::parse_bytes("1024").unwrap(), 1024);
    assert_eq!(read::parse_bytes("1.5g").unwrap(), 3 << 29);
    assert!(read::parse_bytes("lots").is_err());
    assert!(read::parse_bytes("1x").is_err());
    assert_eq!(read::parse_duration("1m30s").unwrap(), 90_000_000_000);
    assert_eq!(read::parse_duration("1.5s").unwrap(), 1_500_000_000);
    assert_eq!(read::parse_duration("0").unwrap(), 0);
    assert!(read::parse_duration("5 minutes").is_err());
    assert!(read::parse_duration("-5s").is_err());
    assert_eq!(
        parse_duration("2m").unwrap(),
        std::time::Duration::from_secs(120)
    );
    let s = svc(
        "services:\n  w:\n    image: x\n    shm_size: 1gb\n    mem_limit: 536870912\n    memswap_limit: 1g\n    mem_reservation: 128m\n    cpus: \"1.5\"\n    stop_grace_period: 1m30s\n",
    );
    assert_eq!(s.shm_size, Some(1 << 30));
    assert_eq!(s.mem_limit, Some(512 << 20));
    assert_eq!(s.memswap_limit, Some(1 << 30));
    assert_eq!(s.mem_reservation, Some(128 << 20));
    assert_eq!(s.nano_cpus, Some(1_500_000_000));
    assert_eq!(s.stop_grace_period, Some(90));
}

#[test]
fn replicas_scale_and_container_name() {
    assert_eq!(svc("services:\n  w:\n    image: x\n").replicas, 1);
    assert_eq!(
        svc("services:\n  w:\n    image: x\n    scale: 3\n").replicas,
        3
    );
    assert_eq!(
        svc("services:\n  w:\n    image: x\n    deploy: {replicas: 2}\n").replicas,
        2
    );
    let g = svc("services:\n  w:\n    image: x\n    deploy: {mode: global}\n");
    assert_eq!((g.replicas, g.deploy_mode.as_deref()), (1, Some("global")));
    assert_one_error(
        "services:\n  w:\n    image: x\n    scale: 3\n    deploy:\n      replicas: 2\n",
        "app/compose.yaml:6:17: services.w.deploy.replicas: conflicts with `scale: 3`",
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    container_name: w\n    scale: 2\n",
        "app/compose.yaml:5:12: services.w: `container_name` requires a single replica, but 2 are requested",
    );
}

#[test]
fn restart_policy_from_deploy() {
    let s = svc(
        "services:\n  w:\n    image: x\n    deploy:\n      restart_policy: {condition: on-failure, max_attempts: 5}\n",
    );
    assert_eq!(s.restart.as_deref(), Some("on-failure:5"));
    let s = svc(
        "services:\n  w:\n    image: x\n    restart: always\n    deploy:\n      restart_policy: {condition: none}\n",
    );
    assert_eq!(s.restart.as_deref(), Some("always"));
    let s =
        svc("services:\n  w:\n    image: x\n    deploy:\n      restart_policy: {condition: any}\n");
    assert_eq!(s.restart.as_deref(), Some("always"));
}

#[test]
fn pull_policy_and_build() {
    assert_eq!(
        svc("services:\n  w:\n    image: x\n    pull_policy: if_not_present\n").pull_policy,
        PullPolicy::Missing
    );
    assert_eq!(
        svc("services:\n  w:\n    image: x\n    pull_policy: always\n").pull_policy,
        PullPolicy::Always
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    pull_policy: daily\n",
        "app/compose.yaml:4:18: services.w.pull_policy: `daily` is not supported by berth (use always, missing, never or build)",
    );
    let b = svc("services:\n  w:\n    build:\n      context: .\n      dockerfile: Dockerfile\n");
    assert!(b.build);
    assert_eq!(b.image, "app-w");
    assert_one_error(
        "services:\n  w:\n    restart: always\n",
        "app/compose.yaml:2:3: services.w: service has neither `image` nor `build`",
    );
}

#[test]
fn misc_service_fields() {
    let s = svc(
        "services:\n  w:\n    image: x\n    labels:\n      - a=1\n      - b\n    extra_hosts:\n      - \"db:10.0.0.2\"\n      - host.docker.internal=host-gateway\n    dns: 1.1.1.1\n    sysctls:\n      net.ipv4.ip_forward: 1\n    ulimits:\n      nofile: {soft: 1024, hard: 2048}\n    devices:\n      - /dev/fuse\n      - /dev/sda:/dev/xvda:r\n      - source: /dev/kvm\n    expose: [\"8000-8001\", \"53/udp\"]\n    tty: true\n    init: true\n    user: \"1000\"\n    read_only: true\n    oom_score_adj: -500\n",
    );
    assert_eq!(
        s.labels,
        BTreeMap::from([("a".into(), "1".into()), ("b".into(), "".into())])
    );
    assert_eq!(
        s.extra_hosts,
        ["db:10.0.0.2", "host.docker.internal:host-gateway"]
    );
    assert_eq!(s.dns, ["1.1.1.1"]);
    assert_eq!(s.sysctls["net.ipv4.ip_forward"], "1");
    assert_eq!(
        s.ulimits["nofile"],
        Ulimit {
            soft: 1024,
            hard: 2048
        }
    );
    assert_eq!(
        s.devices,
        [
            DeviceMapping {
                host: "/dev/fuse".into(),
                container: "/dev/fuse".into(),
                permissions: "rwm".into()
            },
            DeviceMapping {
                host: "/dev/sda".into(),
                container: "/dev/xvda".into(),
                permissions: "r".into()
            },
            DeviceMapping {
                host: "/dev/kvm".into(),
                container: "/dev/kvm".into(),
                permissions: "rwm".into()
            },
        ]
    );
    assert_eq!(s.expose, ["53/udp", "8000/tcp", "8001/tcp"]);
    assert!(s.tty && s.read_only);
    assert_eq!(s.init, Some(true));
    assert_eq!(s.user.as_deref(), Some("1000"));
    assert_eq!(s.oom_score_adj, Some(-500));
}

#[test]
fn secrets_and_configs() {
    let (_d, r) = load_files(
        &[
            (
                "app/compose.yaml",
                "services:\n  w:\n    image: x\n    secrets:\n      - db_pw\n      - source: token\n        target: api_token\n    configs:\n      - inline\n      - source: nginx\n        target: /etc/nginx/nginx.conf\nsecrets:\n  db_pw:\n    file: ./pw.txt\n  token:\n    environment: API_TOKEN\nconfigs:\n  inline:\n    content: |\n      hello\n  nginx:\n    file: nginx.conf\n",
            ),
            ("app/pw.txt", "s3cret"),
            ("app/nginx.conf", "events {}\n"),
        ],
        &[("API_TOKEN", "tok")],
    );
    let d = r.unwrap();
    let w = &d.stacks["app"].services["w"];
    let targets: Vec<_> = w.mounts.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/etc/nginx/nginx.conf",
            "/inline",
            "/run/secrets/api_token",
            "/run/secrets/db_pw"
        ]
    );
    let MountSource::File {
        digest,
        content,
        file,
        ..
    } = &w.mounts[2].source
    else {
        panic!()
    };
    assert_eq!(digest, &sha256_hex(b"tok"));
    assert_eq!(content.as_ref().unwrap().expose(), "tok");
    assert!(file.is_empty());
    // Secret content never appears in the canonical JSON.
    assert!(!w.canonical_json().contains("s3cret") && !w.canonical_json().contains("\"tok\""));

    let errs = errors(
        "services:\n  w:\n    image: x\n    secrets: [pw]\nsecrets:\n  pw:\n    file: ./nope.txt\n",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("app/compose.yaml:7:11: secrets.pw.file: cannot read \"./nope.txt\""),
        "{errs:?}"
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    secrets: [pw]\nsecrets:\n  pw:\n    external: true\n",
        "app/compose.yaml:4:15: services.w.secrets[0]: secret `pw` is `external`: external \
         secrets are a Swarm feature, and a single Docker Engine has none to mount; declare it \
         with `file`, `environment`",
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    secrets: [nope]\n",
        "app/compose.yaml:4:15: services.w.secrets[0]: secret `nope` is not declared in the top-level `secrets`",
    );
}

#[test]
fn interpolation_applies_to_values_not_keys() {
    let s = load_one_env(
        "services:\n  w:\n    image: \"nginx:${TAG:-1.27}\"\n    labels:\n      ${KEY}: $$literal\n    ports:\n      - \"${PORT}:80\"\n",
        &[("PORT", "8080"), ("KEY", "k")],
    )
    .unwrap();
    let w = &s.services["w"];
    assert_eq!(w.image, "nginx:1.27");
    assert_eq!(w.labels["${KEY}"], "$literal");
    assert_eq!(w.ports[0].published, Some(8080));
    assert_one_error(
        "services:\n  w:\n    image: \"nginx:${TAG\"\n",
        "app/compose.yaml:3:12: services.w.image: invalid interpolation format for \"nginx:${TAG\": missing `}`",
    );
}

#[test]
fn reserved_labels_and_bad_service_names() {
    assert_one_error(
        "services:\n  w:\n    image: x\n    labels:\n      io.berth.managed: \"true\"\n      ok: yes\n",
        "app/compose.yaml:5:7: services.w.labels: label `io.berth.managed` is reserved (`io.berth.*` labels are set by berth)",
    );
    assert_one_error(
        "services:\n  w:\n    image: x\nnetworks:\n  n:\n    labels: [\"com.docker.compose.project=other\"]\n",
        "app/compose.yaml:6:14: networks.n.labels: label `com.docker.compose.project` is reserved (`com.docker.compose.*` labels are set by berth)",
    );
    assert_one_error(
        "services:\n  \"my app\":\n    image: x\n",
        "app/compose.yaml:2:3: services: invalid service name \"my app\": use letters, digits, `.`, `_` and `-`, starting with a letter or digit",
    );
}

#[test]
fn dotenv_interpolates_and_single_quotes_are_literal() {
    let (_d, r) = load_files(
        &[
            (
                "app/compose.yaml",
                "services:\n  w:\n    image: \"x:${TAG}\"\n    env_file: [app.env]\n    environment:\n      - FROM_FILE\n",
            ),
            ("app/.env", "BASE=1.2\nTAG=${BASE}-alpine\nLIT='$BASE'\n"),
            ("app/app.env", "FROM_FILE=${BASE}\nRAW='${BASE}'\n"),
        ],
        &[],
    );
    let d = r.unwrap();
    let w = &d.stacks["app"].services["w"];
    assert_eq!(w.image, "x:1.2-alpine");
    assert_eq!(w.environment["FROM_FILE"].expose(), "1.2");
    assert_eq!(w.environment["RAW"].expose(), "${BASE}");
}

#[test]
fn container_names_are_unique_across_stacks() {
    let (_d, r) = load_files(
        &[
            (
                "a/compose.yaml",
                "services:\n  db:\n    image: x\n    container_name: db\n",
            ),
            (
                "b/compose.yaml",
                "services:\n  pg:\n    image: x\n    container_name: db\n",
            ),
        ],
        &[],
    );
    assert_eq!(
        r.unwrap_err().to_string(),
        "b/compose.yaml: services.pg: container_name `db` is already used by service `db` of stack `a`"
    );
}

#[test]
fn type_errors_name_the_expected_shape() {
    let errs = errors(
        "services:\n  w:\n    image: x\n    ports: \"80:80\"\n    read_only: maybe\n    environment: 5\n    cpus: lots\n    mem_limit: 1q\n",
    );
    assert_eq!(
        errs,
        [
            "app/compose.yaml:4:12: services.w.ports: must be a list, found a string",
            "app/compose.yaml:5:16: services.w.read_only: must be a boolean, found \"maybe\"",
            "app/compose.yaml:6:18: services.w.environment: must be a list or a mapping, found an integer",
            "app/compose.yaml:7:11: services.w.cpus: must be a number, found \"lots\"",
            "app/compose.yaml:8:16: services.w.mem_limit: invalid size \"1q\": unknown unit \"q\" (use b, k, m, g, t, p)",
        ]
    );
}

/// Every prefix of every fixture either loads or yields located diagnostics; nothing panics.
#[test]
fn truncated_fixtures_never_panic() {
    let root = fixtures().canonicalize().unwrap();
    let mut files = Vec::new();
    let mut diags = Vec::new();
    find_stacks(&root, &root, &mut files, &mut diags);
    assert!(diags.is_empty() && files.len() >= 6, "{files:?} {diags:?}");
    let vars = env(&[("DB_PASSWORD", "x")]);
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap().to_path_buf();
        let cuts: Vec<usize> = (0..text.len())
            .filter(|i| text.is_char_boundary(*i))
            .step_by(7)
            .collect();
        for cut in cuts {
            let mut cx = read::Cx::new(PathBuf::from("f.yaml"));
            let r = load_text(&mut cx, &text[..cut], &[], dir.clone(), None, &vars);
            for d in &cx.diags {
                assert!(!d.message.is_empty());
            }
            let _ = r;
        }
    }
}

#[test]
fn links_must_name_services() {
    let s =
        load_one("services:\n  a:\n    image: x\n    links: [\"b:db\", b]\n  b:\n    image: x\n")
            .unwrap();
    assert_eq!(s.services["a"].links, ["b", "b:db"]);
    assert_one_error(
        "services:\n  a:\n    image: x\n    links:\n      - nope:db\n",
        "app/compose.yaml:5:9: services.a.links: links to undefined service `nope`",
    );
}

// ---------------------------------------------------------------------------------------------
// Device requests, volumes_from, resource and namespace options

#[test]
fn gpus_and_reserved_devices_become_device_requests() {
    let s = svc("services:\n  w:\n    image: x\n    gpus: all\n");
    assert_eq!(
        s.device_requests,
        [DeviceRequest {
            count: Some(-1),
            capabilities: vec!["gpu".into()],
            ..Default::default()
        }]
    );
    let s = svc("services:
  w:
    image: x
    gpus:
      - driver: nvidia
        device_ids: ['0', '3']
        capabilities: [utility]
        options: {visible: yes}
    deploy:
      resources:
        reservations:
          devices:
            - capabilities: [gpu, compute]
              driver: nvidia
              count: 2
            - capabilities: [tpu]
              count: all
            - capabilities: [gpu]
");
    assert_eq!(
        s.device_requests,
        [
            DeviceRequest {
                driver: Some("nvidia".into()),
                count: Some(2),
                capabilities: vec!["compute".into(), "gpu".into()],
                ..Default::default()
            },
            DeviceRequest {
                count: Some(-1),
                capabilities: vec!["tpu".into()],
                ..Default::default()
            },
            // Neither count nor device_ids: all of them, as Compose does.
            DeviceRequest {
                count: Some(-1),
                capabilities: vec!["gpu".into()],
                ..Default::default()
            },
            DeviceRequest {
                driver: Some("nvidia".into()),
                device_ids: vec!["0".into(), "3".into()],
                capabilities: vec!["gpu".into(), "utility".into()],
                options: BTreeMap::from([("visible".into(), "yes".into())]),
                ..Default::default()
            },
        ]
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    gpus: some\n",
        "app/compose.yaml:4:11: services.w.gpus: must be `all` or a list of device requests, found \"some\"",
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n",
        "app/compose.yaml:8:15: services.w.deploy.resources.reservations.devices[0]: `capabilities` is required (e.g. `capabilities: [gpu]`)",
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    gpus:\n      - count: 1\n        device_ids: ['0']\n",
        "app/compose.yaml:6:9: services.w.gpus[0]: `count` and `device_ids` cannot be used together",
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    gpus:\n      - count: 1\n        ids: ['0']\n",
        "app/compose.yaml:6:9: services.w.gpus[0]: unknown key `ids` (not part of the Compose specification)",
    );
}

#[test]
fn volumes_from_services_and_containers() {
    let s = load_one(
        "services:
  data:
    image: x
  app:
    image: x
    volumes_from:
      - data
      - data:ro
      - container:backup:rw
      - container:legacy:ro
",
    )
    .unwrap();
    assert_eq!(
        s.services["app"].volumes_from,
        ["data", "data:ro", "container:backup", "container:legacy:ro"]
    );
    // Not an ordering dependency in the spec: depends_on stays as written.
    assert!(s.services["app"].depends_on.is_empty());
    assert_one_error(
        "services:\n  app:\n    image: x\n    volumes_from: [nothere]\n",
        "app/compose.yaml:4:20: services.app.volumes_from: undefined service `nothere` (use `container:<name>` for a container outside the stack)",
    );
    assert_one_error(
        "services:\n  app:\n    image: x\n    volumes_from: [\"data:rx\"]\n",
        "app/compose.yaml:4:20: services.app.volumes_from: invalid entry \"data:rx\" (use <service>, <service>:ro, container:<name> or container:<name>:ro)",
    );
    assert_one_error(
        "services:\n  app:\n    image: x\n    volumes_from: [app]\n",
        "app/compose.yaml:4:20: services.app.volumes_from: a service cannot take volumes from itself",
    );
}

#[test]
fn resource_and_namespace_options() {
    let s = svc("services:
  w:
    image: x
    mem_swappiness: 10
    oom_kill_disable: true
    cpu_period: 100000
    cpu_quota: '50000'
    cpu_rt_period: 1s
    cpu_rt_runtime: 950
    blkio_config:
      weight: 300
      weight_device:
        - path: /dev/sda
          weight: 400
      device_read_bps:
        - path: /dev/sda
          rate: 12mb
      device_write_bps:
        - path: /dev/sda
          rate: 1024
      device_read_iops:
        - path: /dev/sdb
          rate: 120
      device_write_iops:
        - path: /dev/sdb
          rate: '30'
    storage_opt:
      size: 20G
    uts: host
    cgroup: private
    external_links: [redis_1, 'db:database']
    annotations:
      - com.example.a=1
");
    assert_eq!(s.mem_swappiness, Some(10));
    assert!(s.oom_kill_disable);
    assert_eq!(s.cpu_period, Some(100_000));
    assert_eq!(s.cpu_quota, Some(50_000));
    assert_eq!(s.cpu_rt_period, Some(1_000_000));
    assert_eq!(s.cpu_rt_runtime, Some(950));
    assert_eq!(
        s.blkio,
        Some(BlkioConfig {
            weight: Some(300),
            weight_device: BTreeMap::from([("/dev/sda".into(), 400)]),
            device_read_bps: BTreeMap::from([("/dev/sda".into(), 12 << 20)]),
            device_write_bps: BTreeMap::from([("/dev/sda".into(), 1024)]),
            device_read_iops: BTreeMap::from([("/dev/sdb".into(), 120)]),
            device_write_iops: BTreeMap::from([("/dev/sdb".into(), 30)]),
        })
    );
    assert_eq!(s.storage_opt["size"], "20G");
    assert_eq!(s.uts.as_deref(), Some("host"));
    assert_eq!(s.cgroup.as_deref(), Some("private"));
    assert_eq!(s.external_links, ["db:database", "redis_1"]);
    assert_eq!(s.annotations["com.example.a"], "1");

    assert_one_error(
        "services:\n  w:\n    image: x\n    mem_swappiness: 101\n",
        "app/compose.yaml:4:21: services.w.mem_swappiness: must be between 0 and 100, found 101",
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    cgroup: shared\n",
        "app/compose.yaml:4:13: services.w.cgroup: invalid cgroup mode \"shared\" (use host or private)",
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    blkio_config:\n      weight: 5\n",
        "app/compose.yaml:5:15: services.w.blkio_config.weight: must be between 10 and 1000, found 5",
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    blkio_config:\n      device_read_bps:\n        - path: /dev/sda\n",
        "app/compose.yaml:6:11: services.w.blkio_config.device_read_bps[0]: `path` and `rate` are required",
    );
    assert_one_error(
        "services:\n  w:\n    image: x\n    uts: private\n",
        "app/compose.yaml:4:10: services.w.uts: invalid UTS mode \"private\" (use host)",
    );
    // Defaults add nothing to the spec (and so do not change existing hashes).
    let plain = svc("services:\n  w:\n    image: x\n");
    assert_eq!(
        plain.canonical_json(),
        r#"{"image":"x","networks":{"app_default":{}}}"#
    );
}

// ---------------------------------------------------------------------------------------------
// extends

#[test]
fn extends_merges_per_the_compose_rules() {
    let s = load_one(
        "services:
  base:
    image: base:1
    command: [serve, --verbose]
    environment: [A=1, B=2]
    labels: {team: ops}
    ports: ['80:80']
    volumes: [data:/data, /cache]
    healthcheck: {test: [CMD, a], interval: 10s}
    deploy:
      resources:
        limits: {memory: 64m}
  web:
    extends: base
    image: web:2
    command: [other]
    environment: {B: 3, C: 4}
    labels: [tier=front]
    ports: ['81:81', '80:80']
    volumes: ['other:/data']
    healthcheck: {test: [CMD, b]}
    deploy:
      resources:
        limits: {cpus: '0.5'}
  chained:
    extends: {service: web}
    environment: [D=5]
volumes:
  data: {}
  other: {}
",
    )
    .unwrap();
    let web = &s.services["web"];
    assert_eq!(web.image, "web:2");
    assert_eq!(web.command.as_deref(), Some(&["other".to_string()][..]));
    let env: BTreeMap<_, _> = web
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(env, BTreeMap::from([("A", "1"), ("B", "3"), ("C", "4")]));
    assert_eq!(
        web.labels,
        BTreeMap::from([
            ("team".into(), "ops".into()),
            ("tier".into(), "front".into())
        ])
    );
    assert_eq!(
        web.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        ["80:80", "81:81"]
    );
    // The local mount replaces the base's at the same path.
    let mounts: Vec<_> = web
        .mounts
        .iter()
        .map(|m| (m.target.as_str(), m.source.clone()))
        .collect();
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0].0, "/cache");
    assert_eq!(
        mounts[1],
        (
            "/data",
            MountSource::Volume {
                name: "app_other".into(),
                nocopy: false,
                subpath: None,
                selinux: None,
            }
        )
    );
    let hc = web.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD", "b"]);
    assert_eq!(hc.interval, Some(10_000_000_000));
    assert_eq!(web.mem_limit, Some(64 << 20));
    assert_eq!(web.nano_cpus, Some(500_000_000));
    // Chained: web's merged definition is the base.
    let chained = &s.services["chained"];
    assert_eq!(chained.image, "web:2");
    assert_eq!(chained.environment.len(), 4);
    // The base itself is a service as written.
    assert_eq!(s.services["base"].image, "base:1");
}

#[test]
fn extends_from_another_file_reports_its_problems_there() {
    let (_d, r) = load_files(
        &[
            (
                "app/compose.yaml",
                "services:\n  web:\n    extends:\n      file: common/base.yaml\n      service: base\n    ports: ['8080:80']\n",
            ),
            (
                "app/common/base.yaml",
                "services:\n  base:\n    image: base:${TAG:-1}\n    volumes: ['./conf:/etc/conf']\n    env_file: ./base.env\n",
            ),
            ("app/common/base.env", "FROM_BASE=yes\n"),
        ],
        &[],
    );
    let d = r.unwrap_or_else(|e| panic!("{e}"));
    let web = &d.stacks["app"].services["web"];
    assert_eq!(web.image, "base:1");
    assert_eq!(web.environment["FROM_BASE"].expose(), "yes");
    match &web.mounts[0].source {
        MountSource::Bind { path, .. } => assert!(path.ends_with("/app/common/conf"), "{path}"),
        other => panic!("{other:?}"),
    }

    let (_d, r) = load_files(
        &[
            (
                "app/compose.yaml",
                "services:\n  web:\n    extends:\n      file: base.yaml\n      service: base\n",
            ),
            (
                "app/base.yaml",
                "services:\n  base:\n    image: x\n    post_start: []\n    restart: sometimes\n",
            ),
        ],
        &[],
    );
    let errs: Vec<String> = r.unwrap_err().0.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        errs,
        [
            "app/base.yaml:4:5: services.web: key `post_start` is not supported by berth",
            "app/base.yaml:5:14: services.web.restart: invalid restart policy \"sometimes\" (use no, always, on-failure[:N] or unless-stopped)",
        ]
    );
}

#[test]
fn extends_errors_are_located() {
    assert_one_error(
        "services:\n  a:\n    extends: b\n    image: x\n  b:\n    extends: a\n    image: y\n",
        "app/compose.yaml:6:5: services.b: `extends` cycle: a -> b -> a",
    );
    assert_one_error(
        "services:\n  a:\n    extends: nope\n    image: x\n",
        "app/compose.yaml:3:14: services.a.extends: extends undefined service `nope`",
    );
    let errs = errors("services:\n  a:\n    extends: {service: b, file: missing.yaml}\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "app/compose.yaml:3:33: services.a.extends.file: cannot read \"missing.yaml\" ("
        ) && errs[0].ends_with("/app/missing.yaml): No such file or directory (os error 2)"),
        "{errs:?}"
    );
    assert_eq!(
        errors("services:\n  a:\n    extends: {servce: b}\n    image: x\n"),
        [
            "app/compose.yaml:3:14: services.a.extends: `service` is required",
            "app/compose.yaml:3:15: services.a.extends: unknown key `servce` (not part of the Compose specification); did you mean `service`?",
        ]
    );
    assert_one_error(
        "services:\n  a:\n    extends: a\n    image: x\n",
        "app/compose.yaml:3:5: services.a: `extends` cycle: a -> a",
    );
}

#[test]
fn ports_with_host_networking_are_refused_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("s");
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(
        stack.join("compose.yaml"),
        "services:\n  web:\n    image: x:1\n    network_mode: host\n    ports:\n      - \"80:80\"\n",
    )
    .unwrap();
    let diags = super::load_dir(dir.path(), &Default::default()).unwrap_err();
    let text = diags.to_string();
    assert!(text.contains("s/compose.yaml:5:5"), "{text}");
    assert!(text.contains("network_mode: host"), "{text}");
}

#[test]
fn deploy_limits_that_contradict_service_keys_are_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("s");
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(
        stack.join("compose.yaml"),
        "services:\n  web:\n    image: x:1\n    mem_limit: 512m\n    cpus: 1\n    deploy:\n      resources:\n        limits:\n          memory: 512m\n          cpus: '2'\n",
    )
    .unwrap();
    let text = super::load_dir(dir.path(), &Default::default())
        .unwrap_err()
        .to_string();
    // Same memory twice is fine; different CPUs are a located conflict.
    assert!(!text.contains("memory"), "{text}");
    assert!(
        text.contains("s/compose.yaml:10:17")
            && text.contains("conflicts with the service's `cpus`"),
        "{text}"
    );
}
