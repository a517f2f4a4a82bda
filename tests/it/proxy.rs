//! Routes and the Caddy proxy on real parts: Caddy 2.6 and pebble 2.4 (Debian packages) on a
//! systemd test host, berth on the host applying a config folder, the upstream containers on
//! the outer Engine on a Docker network the host is attached to (Caddy dials their addresses),
//! and two client containers: one on a "tailnet" network inside 100.64.0.0/10, one on an
//! "internet" network. Caddy's TLS certificates come from pebble through Caddy's own ACME flow.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::host::{TestHost, poll};
use crate::support::{Networks, Run, World, docker, docker_run, pebble_cert};

/// The outer networks and client containers of one test; removed on drop, also when the test
/// fails: the clients, then the networks (the test host, which goes after this, is disconnected
/// from them first).
struct Lab {
    networks: Networks,
    clients: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &self.clients {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        // `networks` goes next, as a field.
    }
}

/// Everything one test sets up.
struct Edge {
    _lab: Lab,
    /// The upstream network (the Proxy's `network:`).
    edge: String,
    /// The host's address on the tailnet and on the internet network.
    host_tail: String,
    host_inet: String,
    tail: String,
    inet: String,
}

const HOSTS: &[&str] = &[
    "app1.example.org",
    "admin.example.org",
    "app2.example.org",
    "app3.example.org",
    "bad.example.org",
];

/// Networks (on free subnets), clients, pebble and Caddy for `host`.
fn edge(host: &TestHost, test: &str) -> Edge {
    let pid = std::process::id();
    let edge = format!("berth-px-edge-{test}-{pid}");
    let tailnet = format!("berth-px-tail-{test}-{pid}");
    let internet = format!("berth-px-inet-{test}-{pid}");
    let mut lab = Lab {
        networks: Networks::new(),
        clients: Vec::new(),
    };
    lab.networks.create(&edge);
    let t = lab.networks.on_free_subnet(&tailnet, "100.64");
    let i = lab.networks.on_free_subnet(&internet, "10.251");
    let host_tail = format!("{t}.2");
    let host_inet = format!("{i}.2");
    docker(&["network", "connect", &edge, host.name()]);
    docker(&[
        "network",
        "connect",
        "--ip",
        &host_tail,
        &tailnet,
        host.name(),
    ]);
    docker(&[
        "network",
        "connect",
        "--ip",
        &host_inet,
        &internet,
        host.name(),
    ]);
    let mut client = |net: &str, ip: String, role: &str| {
        let name = format!("berth-px-{role}-{test}-{pid}");
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
        lab.clients.push(name.clone());
        name
    };
    let tail = client(&tailnet, format!("{t}.10"), "tail");
    let inet = client(&internet, format!("{i}.10"), "inet");

    // pebble: its own TLS certificate (for 127.0.0.1), names through /etc/hosts, validations
    // on Caddy's ports 80/443.
    let dir = host.dir().join("pebble");
    std::fs::create_dir_all(&dir).unwrap();
    pebble_cert(
        &dir.join("key.pem"),
        &dir.join("cert.pem"),
        "IP:127.0.0.1,DNS:localhost",
    );
    host.write(
        "/etc/pebble/cert.pem",
        &std::fs::read_to_string(dir.join("cert.pem")).unwrap(),
    );
    host.write(
        "/etc/pebble/key.pem",
        &std::fs::read_to_string(dir.join("key.pem")).unwrap(),
    );
    host.write(
        "/etc/pebble/config.json",
        r#"{"pebble": {"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
  "certificate": "/etc/pebble/cert.pem", "privateKey": "/etc/pebble/key.pem",
  "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": false}}"#,
    );
    host.ok(&format!(
        "chmod 0644 /etc/pebble/*.pem && echo '127.0.0.1 {}' >> /etc/hosts",
        HOSTS.join(" ")
    ));
    host.ok(
        "systemd-run --unit pebble -E PEBBLE_VA_NOSLEEP=1 -E PEBBLE_WFE_NONCEREJECT=0 \
         /usr/bin/pebble -config /etc/pebble/config.json",
    );
    host.ok("systemctl start caddy.service");
    assert!(
        poll(Duration::from_secs(20), || {
            host.sh("curl -sf http://127.0.0.1:2019/config/ >/dev/null && curl -sk https://127.0.0.1:14000/dir >/dev/null")
                .status
                .success()
        }),
        "Caddy's admin API and pebble answer"
    );
    Edge {
        _lab: lab,
        edge,
        host_tail,
        host_inet,
        tail,
        inet,
    }
}

impl Edge {
    /// `curl` from a client to `https://<host><path>` through Caddy: (status, body).
    fn get(&self, client: &str, name: &str, path: &str) -> (String, String) {
        let ip = if client == self.tail {
            &self.host_tail
        } else {
            &self.host_inet
        };
        let out = Command::new("docker")
            .args(["exec", client, "curl", "-sk", "--max-time", "5"])
            .args(["--resolve", &format!("{name}:443:{ip}")])
            .args(["-w", "\n%{http_code}"])
            .arg(format!("https://{name}{path}"))
            .output()
            .expect("docker exec curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().to_string(), body.to_string())
    }

    /// Poll until `client` gets `code` for `name`. A new certificate takes a moment, and when
    /// Caddy's first ACME attempt fails (pebble validating while a load switches the servers)
    /// Caddy tries again after a minute: 90 s covers one retry.
    #[track_caller]
    fn wait_for(&self, client: &str, name: &str, code: &str) {
        let mut last = (String::new(), String::new());
        let ok = poll(Duration::from_secs(90), || {
            last = self.get(client, name, "/");
            last.0 == code
        });
        assert!(ok, "{name} from {client}: wanted {code}, got {last:?}");
    }
}

/// The config folder on the host (shared path), berth run on the host as this test's instance.
struct Config<'h> {
    host: &'h TestHost,
    world: World,
}

impl Config<'_> {
    fn write(&self, rel: &str, content: &str) {
        let p = self.host.dir().join("config").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn berth(&self, cmd: &str) -> Run {
        let root = self.host.dir().join("config");
        self.host.berth(&[
            "--instance",
            &self.world.instance,
            cmd,
            root.to_str().unwrap(),
        ])
    }
}

fn app_stack(name: &str, image: &str, edge: &str, routes: &str) -> String {
    stack_with(name, image, edge, routes, COMPOSE_HEALTHCHECK)
}

const COMPOSE_HEALTHCHECK: &str = r#"    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      retries: 30
"#;

fn stack_with(name: &str, image: &str, edge: &str, routes: &str, healthcheck: &str) -> String {
    format!(
        r#"name: {name}
services:
  app:
    image: {image}
    expose: [8080]
    stop_grace_period: 1s
{healthcheck}    networks: [edge]
    x-berth:
      routes:
{routes}
networks:
  edge:
    external: true
    name: {edge}
"#
    )
}

fn proxy_manifest(edge: &str) -> String {
    format!(
        "kind: Proxy
admin: http://127.0.0.1:2019
network: {edge}
email: admin@example.org
acme_ca: https://127.0.0.1:14000/dir
acme_ca_root: /etc/pebble/cert.pem
headers: default
"
    )
}

const ROUTES: &str = "        - host: app1.example.org
          port: 8080
        - host: admin.example.org
          port: 8080
          access: tailnet
";

/// Public and tailnet routes, HTTPS from pebble, headers, the redirect; a bad route beside
/// good ones; a hand edit in Caddy repaired; the route change → served figure.
#[test]
fn routes_are_served_with_https_access_sets_and_headers() {
    let host = TestHost::boot("px-routes");
    let e = edge(&host, "routes");
    let c = Config {
        host: &host,
        world: World::new("pxroutes"),
    };
    let apps = c.world.stack("apps");
    c.write(
        "apps/compose.yaml",
        &app_stack(&apps, "berth-test/app:1", &e.edge, ROUTES),
    );
    c.write("proxy/berth.yaml", &proxy_manifest(&e.edge));

    let plan = c.berth("plan").expect(2);
    for want in [
        format!("+ route app1.example.org → {apps}/app:8080 (public)"),
        format!("+ route admin.example.org → {apps}/app:8080 (tailnet)"),
        "~ proxy:caddy: load the whole config into Caddy at http://127.0.0.1:2019 (2 routes)"
            .to_string(),
        format!("update proxy:caddy needs container:{apps}/{apps}-app-1 (Healthy)"),
    ] {
        if want.starts_with("update") {
            continue; // edges are in the JSON plan, not the text
        }
        assert!(
            plan.stdout.contains(&want),
            "{want} missing:\n{}",
            plan.stdout
        );
    }
    c.berth("apply").expect(0);

    // Public: both clients; tailnet: only the tailnet client.
    e.wait_for(&e.inet, "app1.example.org", "200");
    e.wait_for(&e.tail, "app1.example.org", "200");
    assert_eq!(e.get(&e.tail, "app1.example.org", "/").1, "app v1\n");
    e.wait_for(&e.tail, "admin.example.org", "200");
    e.wait_for(&e.inet, "admin.example.org", "403");

    // The certificate is pebble's, obtained through Caddy's ACME flow: it verifies against
    // pebble's root (and not without it).
    host.ok("curl -sk https://127.0.0.1:15000/roots/0 > /tmp/pebble-root.pem");
    host.ok("curl -sf --cacert /tmp/pebble-root.pem https://app1.example.org/ >/dev/null");
    assert!(
        !host
            .sh("curl -sf https://app1.example.org/ >/dev/null")
            .status
            .success()
    );
    // Security headers and the HTTP → HTTPS redirect.
    let head = host.ok("curl -sI --cacert /tmp/pebble-root.pem https://app1.example.org/");
    for h in [
        "strict-transport-security: max-age=31536000",
        "x-content-type-options: nosniff",
        "referrer-policy: strict-origin-when-cross-origin",
        "x-frame-options: SAMEORIGIN",
    ] {
        assert!(
            head.to_lowercase().contains(&h.to_lowercase()),
            "{h} missing:\n{head}"
        );
    }
    let redirect =
        host.ok("curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://app1.example.org/x");
    assert_eq!(redirect, "308 https://app1.example.org/x");
    assert!(c.berth("plan").expect(0).stdout.contains("No changes"));

    // A hand edit through the admin API is drift: shown, then repaired.
    host.ok(r#"curl -sf -X POST -H 'content-type: application/json' -d '{"admin":{"listen":"127.0.0.1:2019"}}' http://127.0.0.1:2019/load"#);
    e.wait_for(&e.tail, "app1.example.org", "000");
    let drift = c.berth("plan").expect(2);
    assert!(
        drift.stdout.contains(
            "+ route app1.example.org → it-pxroutes"
        ) && drift.stdout.contains(
            "berth loaded it, Caddy no longer serves it (changed by hand or by a restart: drift); found nothing for it"
        ),
        "{}",
        drift.stdout
    );
    c.berth("apply").expect(0);
    e.wait_for(&e.inet, "app1.example.org", "200");

    // A bad route beside good ones: the good ones (old and new) are served, the bad one is
    // reported on its stack and the exit says so.
    let broken = c.world.stack("broken");
    c.write(
        "broken/compose.yaml",
        &app_stack(
            &broken,
            "berth-test/app:1",
            &e.edge,
            "        - host: bad.example.org\n          port: 9999\n",
        ),
    );
    let more = format!("{ROUTES}        - host: app2.example.org\n          port: 8080\n");
    c.write(
        "apps/compose.yaml",
        &app_stack(&apps, "berth-test/app:1", &e.edge, &more),
    );
    let bad = c.berth("apply").expect(1);
    assert!(
        bad.stdout.contains(&format!(
            "broken/compose.yaml:15:17: route bad.example.org: {broken}/app does not expose port 9999"
        )),
        "{}",
        bad.stdout
    );
    // Readiness: Caddy has the new host's certificate (tight TLS polling while it is being
    // obtained was seen to keep failing on a loaded machine), then it must be served.
    let obtained = || {
        host.ok("journalctl -u caddy --no-pager -o cat")
            .lines()
            .any(|l| {
                l.contains("certificate obtained successfully") && l.contains("app2.example.org")
            })
    };
    let mut issued = poll(Duration::from_secs(90), obtained);
    // Caddy 2.6 and pebble 2.4 sometimes disagree on the ACME account after the first two
    // certificates were obtained side by side ("JWS verification error: … error in
    // cryptographic primitive" on every retry, also after a restart: the stored account is the
    // inconsistent one; seen in two of six runs): not berth's. Caddy's stored ACME account is
    // removed and Caddy restarted, so it registers a new one; berth then loads its config again
    // (the restart is drift), and the certificate must follow.
    let jws = host
        .ok("journalctl -u caddy --no-pager -o cat")
        .contains("JWS verification error");
    if !issued && jws {
        eprintln!("caddy/pebble account mismatch: restarting caddy");
        host.ok("systemctl stop caddy && rm -rf /var/lib/caddy/.local/share/caddy/acme && systemctl start caddy");
        c.berth("apply").expect(1);
        issued = poll(Duration::from_secs(90), obtained);
    }
    assert!(issued, "{}", host.journal("caddy.service"));
    e.wait_for(&e.inet, "app2.example.org", "200");
    e.wait_for(&e.inet, "app1.example.org", "200");
    assert_ne!(e.get(&e.inet, "bad.example.org", "/").0, "200");
    // Its stack was not changed: no container of `broken` was created.
    assert!(docker(&["ps", "-aq", "--filter", &format!("name={broken}-app")]).is_empty());

    // Route change → served: from `berth apply` starting to the new route answering.
    std::fs::remove_file(host.dir().join("config/broken/compose.yaml")).unwrap();
    let more = format!("{more}        - host: app3.example.org\n          port: 8080\n");
    c.write(
        "apps/compose.yaml",
        &app_stack(&apps, "berth-test/app:1", &e.edge, &more),
    );
    let start = Instant::now();
    c.berth("apply").expect(0);
    e.wait_for(&e.inet, "app3.example.org", "200");
    eprintln!(
        "route change → served: {} ms (berth apply + first 200 through Caddy, certificate from pebble included)",
        start.elapsed().as_millis()
    );

    // A bad `kind: Route` to a fixed address is the proxy's problem, never a stack's: a stack
    // named `edge` (as in the README) still gets its change, and the bad route is named.
    let edge_stack = |image: &str| {
        format!("name: edge\nservices:\n  web:\n    image: {image}\n    stop_grace_period: 1s\n")
    };
    c.write("edge/compose.yaml", &edge_stack("berth-test/app:1"));
    c.berth("apply").expect(0);
    let before = docker(&["inspect", "-f", "{{.Id}}", "edge-web-1"]);
    c.write("edge/compose.yaml", &edge_stack("berth-test/app:2"));
    c.write(
        "proxy/old.berth.yaml",
        "kind: Route\nhost: old.example.org\nto: 127.0.0.1:8001\naccess: office\n",
    );
    let out = c.berth("apply").expect(1);
    assert!(
        out.stdout.contains(
            "proxy/old.berth.yaml:4:9: route old.example.org: access: unknown address set `office`"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("~ edge/web: replace container edge-web-1")
            && !out.stdout.contains("(withheld)"),
        "{}",
        out.stdout
    );
    let after = docker(&["inspect", "-f", "{{.Id}} {{.Config.Image}}", "edge-web-1"]);
    let owner = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"io.berth.instance\"}}",
        "edge-web-1",
    ]);
    assert_eq!(owner, c.world.instance, "edge-web-1 is not this test's");
    assert!(
        !after.starts_with(&before) && after.ends_with("berth-test/app:2"),
        "edge/web was not replaced: {after}"
    );
    e.wait_for(&e.inet, "app1.example.org", "200");
}

/// A request loop through Caddy while the routed (route-only) service is replaced: zero
/// failed requests, and the new version answers afterwards.
#[test]
fn a_route_only_service_is_replaced_without_a_failed_request() {
    replace_without_a_failed_request(
        "zero",
        "berth-test/app:1",
        "berth-test/app:2",
        COMPOSE_HEALTHCHECK,
    );
}

/// The same with the health check declared only by the image (`HEALTHCHECK`), whose new
/// version listens 2 s after it starts: the route is switched only once the image's health
/// check passes (before, 18 of 200 requests got a 502 during the replace).
#[test]
fn a_route_waits_for_the_images_own_health_check() {
    let (v1, v2) = ("berth-test/app-hc:1", "berth-test/app-hc:2");
    for (tag, from) in [(v1, "berth-test/app:1"), (v2, "berth-test/app:2")] {
        crate::support::test_images();
        let dockerfile = format!(
            "FROM {from}\n\
             LABEL io.berth.test=1\n\
             CMD [\"sh\", \"-c\", \"sleep 2; exec httpd -f -p 8080 -h /www\"]\n\
             HEALTHCHECK --interval=1s --retries=30 CMD wget -q -O /dev/null http://127.0.0.1:8080/\n"
        );
        let mut build = Command::new("docker")
            .args(["build", "-q", "-t", tag, "-"])
            .env("DOCKER_BUILDKIT", "0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("docker build");
        std::io::Write::write_all(&mut build.stdin.take().unwrap(), dockerfile.as_bytes())
            .expect("write the Dockerfile");
        assert!(build.wait().unwrap().success(), "docker build {tag}");
    }
    replace_without_a_failed_request("imghc", v1, v2, "");
}

fn replace_without_a_failed_request(test: &str, v1: &str, v2: &str, healthcheck: &str) {
    let host = TestHost::boot(&format!("px-{test}"));
    let e = edge(&host, test);
    let c = Config {
        host: &host,
        world: World::new(&format!("px{test}")),
    };
    let apps = c.world.stack("apps");
    c.write(
        "apps/compose.yaml",
        &stack_with(&apps, v1, &e.edge, ROUTES, healthcheck),
    );
    c.write("proxy/berth.yaml", &proxy_manifest(&e.edge));
    c.berth("apply").expect(0);
    e.wait_for(&e.tail, "app1.example.org", "200");

    // The loop: curl after curl from the tailnet client, counting what is not a 200.
    let script = format!(
        "ok=0; bad=0; v2=0; while [ ! -e /tmp/stop ]; do \
           out=$(curl -sk --max-time 5 --resolve app1.example.org:443:{ip} -w ' %{{http_code}}' https://app1.example.org/); \
           case \"$out\" in *' 200') ok=$((ok+1));; *) bad=$((bad+1)); echo \"$out\" >> /tmp/bad;; esac; \
           case \"$out\" in *v2*) v2=$((v2+1));; esac; \
           echo $ok > /tmp/ok; \
         done; echo \"$ok $bad $v2\" > /tmp/result",
        ip = e.host_tail
    );
    docker(&["exec", "-d", &e.tail, "sh", "-c", &script]);
    // Requests are flowing before the replace starts.
    assert!(poll(Duration::from_secs(10), || {
        docker(&[
            "exec",
            &e.tail,
            "sh",
            "-c",
            "cat /tmp/ok 2>/dev/null || echo 0",
        ])
        .trim()
        .parse::<u64>()
        .is_ok_and(|n| n >= 5)
    }));

    c.write(
        "apps/compose.yaml",
        &stack_with(&apps, v2, &e.edge, ROUTES, healthcheck),
    );
    let plan = c.berth("plan").expect(2);
    assert!(plan.stdout.contains("zero-downtime"), "{}", plan.stdout);
    let applied = c.berth("apply").expect(0);
    assert!(
        applied.stdout.contains("routes switched to the new"),
        "{}",
        applied.stdout
    );
    // Some requests after the switch.
    assert!(poll(Duration::from_secs(10), || e
        .get(&e.tail, "app1.example.org", "/")
        .1
        == "app v2\n"));
    docker(&["exec", &e.tail, "touch", "/tmp/stop"]);
    let mut result = String::new();
    assert!(poll(Duration::from_secs(15), || {
        result = docker(&[
            "exec",
            &e.tail,
            "sh",
            "-c",
            "cat /tmp/result 2>/dev/null || true",
        ]);
        !result.trim().is_empty()
    }));
    let n: Vec<u64> = result
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let bad = docker(&[
        "exec",
        &e.tail,
        "sh",
        "-c",
        "cat /tmp/bad 2>/dev/null || true",
    ]);
    eprintln!(
        "zero-downtime replace ({test}): {} requests ok, {} failed, {} served by v2",
        n[0], n[1], n[2]
    );
    assert_eq!(n[1], 0, "failed requests during the replace:\n{bad}");
    assert!(n[0] > 10 && n[2] > 0, "{result}");
    // The new container has the real name; the old one is gone.
    let names = docker(&[
        "ps",
        "-a",
        "--filter",
        &c.world.label(),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(names.trim(), format!("{apps}-app-1"));
    assert!(c.berth("plan").expect(0).stdout.contains("No changes"));
}
