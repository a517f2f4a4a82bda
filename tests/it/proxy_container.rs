//! `kind: Proxy` with `service:`: Caddy as a container of a stack berth manages (Debian's Caddy
//! 2.6 from the test-host image, no registry here), berth on the Engine's machine reaching its
//! admin API on the container's address, upstreams dialled on the network the two share, a
//! certificate from a pebble container through Caddy's ACME flow, and clients on a "tailnet"
//! and an "internet" network the Caddy container joins.

use std::process::Command;
use std::time::Duration;

use crate::host::poll;
use crate::support::{Networks, World, docker_run, pebble_cert};

fn curl(client: &str, ip: &str, name: &str) -> String {
    let out = Command::new("docker")
        .args([
            "exec",
            client,
            "curl",
            "-sk",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
        ])
        .args([
            "-w",
            "%{http_code}",
            "--resolve",
            &format!("{name}:443:{ip}"),
        ])
        .arg(format!("https://{name}/"))
        .output()
        .expect("docker exec curl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn caddy_as_a_stack_service_serves_routes_by_access_set() {
    let pid = std::process::id();
    let edge = format!("berth-pxc-edge-{pid}");
    let tail = format!("berth-pxc-tail-{pid}");
    let inet = format!("berth-pxc-inet-{pid}");
    let mut nets = Networks::new();
    let e = nets.on_free_subnet(&edge, "10.253");
    let t = nets.on_free_subnet(&tail, "100.64");
    let i = nets.on_free_subnet(&inet, "10.252");
    // World after the networks: its containers go first, then the networks.
    let w = World::new("pxcont");
    let caddy_edge = format!("{e}.200");
    let caddy_tail = format!("{t}.200");
    let caddy_inet = format!("{i}.200");

    // pebble in a container on the edge network, with its own certificate.
    let dir = w.path().join("proxy/bootstrap");
    std::fs::create_dir_all(&dir).unwrap();
    pebble_cert(
        &dir.join("pebble-key.pem"),
        &dir.join("pebble.pem"),
        "DNS:pebble",
    );
    std::fs::write(
        dir.join("pebble.json"),
        r#"{"pebble": {"listenAddress": "0.0.0.0:14000", "managementListenAddress": "0.0.0.0:15000",
  "certificate": "/etc/caddy/pebble.pem", "privateKey": "/etc/caddy/pebble-key.pem",
  "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": false}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("bootstrap.json"),
        "{\"admin\": {\"listen\": \":2019\"}}\n",
    )
    .unwrap();
    // World's temp dir is 0700: the containers read it as root, fine.

    let apps = w.stack("apps");
    let proxy = w.stack("proxy");
    w.write(
        "apps/compose.yaml",
        &format!(
            r#"name: {apps}
services:
  app:
    image: berth-test/app:1
    expose: [8080]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
    networks: [edge]
    x-berth:
      routes:
        - host: app1.example.org
          port: 8080
        - host: admin.example.org
          port: 8080
          access: tailnet
networks:
  edge: {{external: true, name: {edge}}}
"#
        ),
    );
    w.write(
        "proxy/compose.yaml",
        &format!(
            r#"name: {proxy}
services:
  caddy:
    image: {image}
    command: ["caddy", "run", "--resume", "--config", "/etc/caddy/bootstrap.json"]
    stop_grace_period: 1s
    volumes:
      - ./bootstrap:/etc/caddy:ro
    depends_on: [pebble]
    networks:
      edge: {{ipv4_address: {caddy_edge}}}
      tail: {{ipv4_address: {caddy_tail}}}
      inet: {{ipv4_address: {caddy_inet}}}
  pebble:
    image: {image}
    command: ["pebble", "-config", "/etc/caddy/pebble.json"]
    environment:
      PEBBLE_VA_NOSLEEP: "1"
      PEBBLE_WFE_NONCEREJECT: "0"
    # pebble validates the names against Caddy.
    extra_hosts:
      - "app1.example.org:{caddy_edge}"
      - "admin.example.org:{caddy_edge}"
    volumes:
      - ./bootstrap:/etc/caddy:ro
    networks:
      edge: {{aliases: [pebble]}}
networks:
  edge: {{external: true, name: {edge}}}
  tail: {{external: true, name: {tail}}}
  inet: {{external: true, name: {inet}}}
"#,
            image = crate::host::IMAGE
        ),
    );
    w.write(
        "proxy/berth.yaml",
        &format!(
            "kind: Proxy\nservice: {proxy}/caddy\nemail: admin@example.org\nacme_ca: https://pebble:14000/dir\nacme_ca_root: /etc/caddy/pebble.pem\n"
        ),
    );
    // First apply: the containers; Caddy's admin API may not answer yet when the load runs.
    let first = w.berth(&["apply"]);
    let caddy = format!("{proxy}-caddy-1");
    assert!(
        poll(Duration::from_secs(20), || {
            Command::new("docker")
                .args(["inspect", "-f", "{{.State.Running}}", &caddy])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
        }),
        "{}{}",
        first.stdout,
        first.stderr
    );
    if first.code != 0 {
        w.berth(&["apply"]).expect(0);
    }
    let plan = w.berth(&["plan"]);
    assert_eq!(plan.code, 0, "converged:\n{}", plan.stdout);

    // Clients: one on the tailnet, one on the internet network.
    let client = |net: &str, ip: String, role: &str| {
        let name = format!("berth-pxc-{role}-{pid}");
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        docker_run(&[
            "-d",
            "--name",
            &name,
            "--network",
            net,
            "--ip",
            &ip,
            crate::host::IMAGE,
            "sleep",
            "infinity",
        ]);
        w.adopt(&name);
        name
    };
    let t = client(&tail, format!("{t}.10"), "tail");
    let i = client(&inet, format!("{i}.10"), "inet");
    let wait = |c: &str, ip: &str, name: &str, code: &str| {
        let mut last = String::new();
        let ok = poll(Duration::from_secs(30), || {
            last = curl(c, ip, name);
            last == code
        });
        if !ok {
            let logs = Command::new("docker")
                .args(["logs", "--tail", "30", &caddy])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
            panic!("{name} from {c}: wanted {code}, got {last}\ncaddy:\n{logs}");
        }
    };
    wait(&i, &caddy_inet, "app1.example.org", "200");
    wait(&t, &caddy_tail, "app1.example.org", "200");
    wait(&t, &caddy_tail, "admin.example.org", "200");
    wait(&i, &caddy_inet, "admin.example.org", "403");
}
