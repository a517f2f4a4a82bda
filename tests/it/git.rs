//! The git adapter against real git: fixture repositories built with the git CLI, served over
//! file:// and `git daemon` on loopback.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use berth::git::{GitError, Mirror, MirrorOptions};

use crate::support::{GitDaemon, GitRepo, free_port, git};
use berth::model::Secret;

fn opts(url: &str) -> MirrorOptions {
    MirrorOptions {
        url: url.to_owned(),
        token: None,
        timeout: Duration::from_secs(20),
    }
}

/// A TCP listener on loopback that accepts connections and never answers.
fn silent_listener() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    // Drain what the client sends without ever answering.
                    let mut c = s.try_clone().unwrap();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 1024];
                        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                    });
                    let _ = s.set_nodelay(true);
                    held.push(s);
                }
                Err(_) => break,
            }
        }
    });
    port
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn first_commit(f: &GitRepo) -> String {
    f.write("compose.yaml", "services: {}\n");
    f.write(
        "apps/web/compose.yaml",
        "services:\n  web:\n    image: nginx\n",
    );
    f.write("apps/web/.env", "A=1\n");
    f.write("bin/deploy.sh", "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(
        f.work().join("bin/deploy.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("compose.yaml", f.work().join("apps/web/link.yaml")).unwrap();
    std::os::unix::fs::symlink("../../compose.yaml", f.work().join("apps/web/up.yaml")).unwrap();
    let c = f.commit("first: add stacks");
    f.push();
    c
}

#[test]
fn clone_over_file_url_exports_trees() {
    let f = GitRepo::new();
    let c1 = first_commit(&f);
    let dir = f.path("mirror");
    let started = Instant::now();
    let m = Mirror::open_or_clone(&dir, &opts(&f.file_url())).unwrap();
    eprintln!("file:// clone: {:?}", started.elapsed());
    assert!(
        dir.join("HEAD").is_file() && !dir.join(".git").exists(),
        "a bare repo"
    );
    assert_eq!(
        m.local_ref("refs/heads/main").unwrap().as_deref(),
        Some(c1.as_str())
    );
    assert_eq!(m.local_ref("refs/heads/nope").unwrap(), None);
    assert!(m.has_commit(&c1));
    assert_eq!(
        m.commit_summary(&c1).unwrap(),
        "first: add stacks (Ada Author)"
    );

    // Root export: contents, exec bit, symlinks.
    let root = f.path("export-root");
    m.export_tree(&c1, "", &root).unwrap();
    assert_eq!(read(&root.join("compose.yaml")), "services: {}\n");
    assert_eq!(read(&root.join("apps/web/.env")), "A=1\n");
    assert_eq!(mode(&root.join("bin/deploy.sh")), 0o755);
    assert_eq!(mode(&root.join("compose.yaml")), 0o644);
    let link = root.join("apps/web/link.yaml");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("compose.yaml")
    );
    assert_eq!(read(&root.join("apps/web/up.yaml")), "services: {}\n");
    assert!(!root.join(".git").exists());

    // Subpath export: the folder's content at the top; a symlink leaving it is refused.
    let sub = f.path("export-sub");
    let err = m.export_tree(&c1, "apps/web", &sub).unwrap_err();
    assert!(matches!(err, GitError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("up.yaml"), "{err}");
    assert!(!err.is_transient());
    assert!(!sub.exists(), "a failed export leaves nothing behind");
    std::fs::remove_file(f.work().join("apps/web/up.yaml")).unwrap();
    let c2 = f.commit("drop the escaping link");
    f.push();
    m.fetch(&[]).unwrap();
    m.export_tree(&c2, "apps/web/", &sub).unwrap();
    assert_eq!(
        read(&sub.join("compose.yaml")),
        "services:\n  web:\n    image: nginx\n"
    );
    assert!(
        sub.join("link.yaml")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(!sub.join("apps").exists());

    // A file deleted in a later commit is absent from that commit's export only.
    std::fs::remove_file(f.work().join("apps/web/.env")).unwrap();
    let c3 = f.commit("remove .env");
    f.push();
    m.fetch(&["+refs/heads/*:refs/heads/*".to_owned()]).unwrap();
    let e2 = f.path("export-c2");
    let e3 = f.path("export-c3");
    m.export_tree(&c2, "", &e2).unwrap();
    m.export_tree(&c3, "", &e3).unwrap();
    assert!(e2.join("apps/web/.env").is_file());
    assert!(!e3.join("apps/web/.env").exists());
    assert!(e3.join("apps/web/compose.yaml").is_file());

    // Bad inputs are permanent errors.
    let err = m.export_tree(&c3, "", &e3).unwrap_err();
    assert!(
        matches!(err, GitError::Invalid(_)) && !err.is_transient(),
        "{err:?}"
    );
    let err = m
        .export_tree(&c3, "no/such/dir", &f.path("x1"))
        .unwrap_err();
    assert!(
        matches!(err, GitError::NotFound { .. }) && !err.is_transient(),
        "{err:?}"
    );
    let err = m
        .export_tree(&c3, "compose.yaml", &f.path("x2"))
        .unwrap_err();
    assert!(matches!(err, GitError::Invalid(_)), "{err:?}");
    let err = m.export_tree(&c3, "../etc", &f.path("x3")).unwrap_err();
    assert!(matches!(err, GitError::Invalid(_)), "{err:?}");
    let missing = "0123456789012345678901234567890123456789";
    assert!(!m.has_commit(missing));
    let err = m.export_tree(missing, "", &f.path("x4")).unwrap_err();
    assert!(
        matches!(err, GitError::NotFound { .. }) && !err.is_transient(),
        "{err:?}"
    );
    let err = m.commit_summary("main").unwrap_err();
    assert!(matches!(err, GitError::Invalid(_)), "{err:?}");
    for p in ["x1", "x2", "x3", "x4"] {
        assert!(!f.path(p).exists());
    }
}

#[test]
fn git_daemon_remote_ref_sees_push_without_fetching() {
    let f = GitRepo::new();
    let c1 = first_commit(&f);
    let daemon = GitDaemon::start(&f.srv());
    let dir = f.path("mirror");
    let t = Instant::now();
    let m = Mirror::open_or_clone(&dir, &opts(&daemon.url("origin.git"))).unwrap();
    let clone_time = t.elapsed();
    assert_eq!(
        m.local_ref("refs/heads/main").unwrap().as_deref(),
        Some(c1.as_str())
    );

    f.write(
        "apps/web/compose.yaml",
        "services:\n  web:\n    image: nginx:2\n",
    );
    let c2 = f.commit("second");
    f.push();

    let t = Instant::now();
    let remote = m.remote_ref("refs/heads/main").unwrap();
    let remote_ref_time = t.elapsed();
    assert_eq!(remote.as_deref(), Some(c2.as_str()));
    assert!(!m.has_commit(&c2), "remote_ref must not fetch objects");
    assert_eq!(
        m.local_ref("refs/heads/main").unwrap().as_deref(),
        Some(c1.as_str())
    );
    assert_eq!(m.remote_ref("refs/heads/nope").unwrap(), None);

    let t = Instant::now();
    m.fetch(&["+refs/heads/*:refs/heads/*".to_owned()]).unwrap();
    let fetch_time = t.elapsed();
    assert!(m.has_commit(&c2));
    assert_eq!(
        m.local_ref("refs/heads/main").unwrap().as_deref(),
        Some(c2.as_str())
    );
    assert!(m.is_ancestor(&c1, &c2).unwrap());
    assert!(m.is_ancestor(&c2, &c2).unwrap());
    assert!(!m.is_ancestor(&c2, &c1).unwrap());
    // Nothing new: a no-op fetch.
    let t = Instant::now();
    m.fetch(&[]).unwrap();
    let noop_fetch_time = t.elapsed();
    eprintln!(
        "git:// loopback: clone {clone_time:?}, remote_ref {remote_ref_time:?}, fetch {fetch_time:?}, no-op fetch {noop_fetch_time:?}"
    );

    // The mirror re-opens without the network, even with the daemon gone.
    let url = daemon.url("origin.git");
    drop(m);
    drop(daemon);
    let m = Mirror::open_or_clone(&dir, &opts(&url)).unwrap();
    assert_eq!(
        m.local_ref("refs/heads/main").unwrap().as_deref(),
        Some(c2.as_str())
    );
    let err = m.remote_ref("refs/heads/main").unwrap_err();
    assert!(err.is_transient(), "daemon gone: {err:?}");
}

#[test]
fn incremental_fetch_transfers_only_new_objects() {
    let f = GitRepo::new();
    first_commit(&f);
    let daemon = GitDaemon::start(&f.srv());
    let dir = f.path("mirror");
    let m = Mirror::open_or_clone(&dir, &opts(&daemon.url("origin.git"))).unwrap();
    let packs = |d: &Path| -> Vec<u64> {
        let mut sizes: Vec<u64> = std::fs::read_dir(d.join("objects/pack"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
            .map(|e| e.metadata().unwrap().len())
            .collect();
        sizes.sort();
        sizes
    };
    assert_eq!(packs(&dir).len(), 1);
    // A big file in the first pack, then a small change.
    f.write("big.txt", &"lorem ipsum dolor sit amet\n".repeat(20_000));
    f.commit("big");
    f.push();
    m.fetch(&[]).unwrap();
    f.write("small.txt", "x\n");
    let c = f.commit("small");
    f.push();
    m.fetch(&[]).unwrap();
    let sizes = packs(&dir);
    assert_eq!(sizes.len(), 3, "one pack per fetch: {sizes:?}");
    assert!(
        sizes[0] < 2_000,
        "the last fetch only brought the small change: {sizes:?}"
    );
    assert_eq!(
        m.local_ref("refs/heads/main").unwrap().as_deref(),
        Some(c.as_str())
    );
    // Re-opening the existing mirror keeps it (no re-clone).
    drop(m);
    let m = Mirror::open_or_clone(&dir, &opts(&daemon.url("origin.git"))).unwrap();
    assert_eq!(packs(&dir).len(), 3);
    assert_eq!(
        m.local_ref("refs/heads/main").unwrap().as_deref(),
        Some(c.as_str())
    );
}

#[test]
fn force_push_is_detected_with_is_ancestor() {
    let f = GitRepo::new();
    let a = first_commit(&f);
    f.write("b.txt", "b\n");
    let b = f.commit("b");
    f.push();
    let m = Mirror::open_or_clone(&f.path("mirror"), &opts(&f.file_url())).unwrap();
    assert_eq!(
        m.local_ref("refs/heads/main").unwrap().as_deref(),
        Some(b.as_str())
    );

    git(&f.work(), &["reset", "-q", "--hard", &a]);
    f.write("c.txt", "c\n");
    let c = f.commit("c (rewritten history)");
    f.force_push();
    assert_eq!(
        m.remote_ref("refs/heads/main").unwrap().as_deref(),
        Some(c.as_str())
    );
    m.fetch(&[]).unwrap();
    assert_eq!(
        m.local_ref("refs/heads/main").unwrap().as_deref(),
        Some(c.as_str())
    );
    assert!(
        !m.is_ancestor(&b, &c).unwrap(),
        "force push: old head is not an ancestor"
    );
    assert!(m.is_ancestor(&a, &c).unwrap());
    assert!(m.has_commit(&b), "the old commit stays readable");
}

#[test]
fn pull_request_refs_are_fetched_when_present() {
    let f = GitRepo::new();
    first_commit(&f);
    git(&f.work(), &["checkout", "-q", "-b", "feature"]);
    f.write("feature.txt", "pr\n");
    let pr = f.commit("feature work");
    git(
        &f.work(),
        &["push", "-q", "origin", "HEAD:refs/heads/pr-src"],
    );
    git(&f.origin(), &["update-ref", "refs/pull/1/head", &pr]);
    git(&f.origin(), &["update-ref", "-d", "refs/heads/pr-src"]);

    let daemon = GitDaemon::start(&f.srv());
    let m = Mirror::open_or_clone(&f.path("mirror"), &opts(&daemon.url("origin.git"))).unwrap();
    assert!(!m.has_commit(&pr), "the clone mirrors branches only");
    assert_eq!(
        m.remote_ref("refs/pull/1/head").unwrap().as_deref(),
        Some(pr.as_str())
    );
    assert_eq!(m.remote_ref("refs/pull/2/head").unwrap(), None);
    m.fetch(&[
        "+refs/heads/*:refs/heads/*".to_owned(),
        "+refs/pull/1/head:refs/pull/1/head".to_owned(),
        "+refs/pull/2/head:refs/pull/2/head".to_owned(),
    ])
    .unwrap();
    assert_eq!(
        m.local_ref("refs/pull/1/head").unwrap().as_deref(),
        Some(pr.as_str())
    );
    assert_eq!(m.local_ref("refs/pull/2/head").unwrap(), None);
    assert!(m.has_commit(&pr));
    let out = f.path("pr-export");
    m.export_tree(&pr, "", &out).unwrap();
    assert_eq!(read(&out.join("feature.txt")), "pr\n");
}

#[test]
fn silent_server_times_out() {
    let tmp = tempfile::tempdir().unwrap();
    let port = silent_listener();
    for url in [
        format!("git://127.0.0.1:{port}/origin.git"),
        format!("http://127.0.0.1:{port}/origin.git"),
    ] {
        let mut o = opts(&url);
        o.timeout = Duration::from_secs(2);
        let dir = tmp
            .path()
            .join(format!("m-{}", url.split(':').next().unwrap()));
        let t = Instant::now();
        let err = Mirror::open_or_clone(&dir, &o).unwrap_err();
        let took = t.elapsed();
        eprintln!("{url}: {err} after {took:?}");
        assert!(matches!(err, GitError::Timeout { .. }), "{url}: {err:?}");
        assert!(err.is_transient());
        assert!(took < Duration::from_millis(3000), "{url}: took {took:?}");
        assert!(!dir.exists(), "a failed clone leaves nothing behind");
    }
}

#[test]
fn missing_remotes_are_classified() {
    let f = GitRepo::new();
    first_commit(&f);
    // A path that is no repository: permanent.
    let url = format!("file://{}", f.path("nope.git").display());
    let err = Mirror::open_or_clone(&f.path("m1"), &opts(&url)).unwrap_err();
    eprintln!("file missing: {err}");
    assert!(matches!(err, GitError::Remote { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains(&url), "{err}");

    // A daemon that does not export the path: permanent.
    let daemon = GitDaemon::start(&f.srv());
    let url = daemon.url("nope.git");
    let err = Mirror::open_or_clone(&f.path("m2"), &opts(&url)).unwrap_err();
    eprintln!("daemon missing: {err}");
    assert!(matches!(err, GitError::Remote { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains(&url), "{err}");

    // Nobody listening: transient.
    let url = format!("git://127.0.0.1:{}/origin.git", free_port());
    let err = Mirror::open_or_clone(&f.path("m3"), &opts(&url)).unwrap_err();
    eprintln!("connection refused: {err}");
    assert!(matches!(err, GitError::Network { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(!f.path("m1").exists() && !f.path("m2").exists() && !f.path("m3").exists());
}

#[test]
fn broken_or_foreign_mirror_dirs_are_recloned() {
    let f = GitRepo::new();
    let c1 = first_commit(&f);
    let dir = f.path("mirror");
    // Not a repository at all.
    std::fs::create_dir_all(dir.join("junk")).unwrap();
    std::fs::write(dir.join("junk/file"), "x").unwrap();
    let m = Mirror::open_or_clone(&dir, &opts(&f.file_url())).unwrap();
    assert!(!dir.join("junk").exists());
    assert_eq!(
        m.local_ref("refs/heads/main").unwrap().as_deref(),
        Some(c1.as_str())
    );
    drop(m);
    // A mirror of another repository.
    let other = f.path("other.git");
    git(
        &f.path(""),
        &[
            "clone",
            "-q",
            "--bare",
            f.origin().to_str().unwrap(),
            "other.git",
        ],
    );
    let other_url = format!("file://{}", other.display());
    let m = Mirror::open_or_clone(&dir, &opts(&other_url)).unwrap();
    assert_eq!(
        git(&dir, &["config", "remote.origin.url"]),
        other_url,
        "the mirror now belongs to the other URL"
    );
    assert!(m.has_commit(&c1));
}

#[test]
fn token_never_appears_in_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let token = "ghp_SuperSecretToken1234567890";
    let url = format!(
        "https://berth:UrlPassw0rd@127.0.0.1:{}/org/repo.git",
        free_port()
    );
    let o = MirrorOptions {
        url: url.clone(),
        token: Some(Secret::new(token)),
        timeout: Duration::from_secs(5),
    };
    let options_debug = format!("{o:?}");
    assert!(
        !options_debug.contains(token) && !options_debug.contains("UrlPassw0rd"),
        "{options_debug}"
    );
    let err = Mirror::open_or_clone(&tmp.path().join("m"), &o).unwrap_err();
    let texts = [format!("{err}"), format!("{err:?}"), format!("{err:#?}")];
    eprintln!("{}", texts[0]);
    for text in &texts {
        assert!(!text.contains(token), "token leaked: {text}");
        assert!(!text.contains("UrlPassw0rd"), "URL password leaked: {text}");
        assert!(!text.contains("berth:"), "URL userinfo leaked: {text}");
    }
    assert!(texts[0].contains("https://***@127.0.0.1"), "{}", texts[0]);
    assert!(
        err.is_transient(),
        "connection refused is transient: {err:?}"
    );
}

#[test]
fn token_is_sent_as_authorization_header() {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let token = "ghs_AppInstallationToken42";
    let o = MirrorOptions {
        url: format!("http://127.0.0.1:{port}/org/repo.git"),
        token: Some(Secret::new(token)),
        timeout: Duration::from_secs(5),
    };
    let err = Mirror::open_or_clone(&tmp.path().join("m"), &o).unwrap_err();
    let request = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        request.starts_with("GET /org/repo.git/info/refs?service=git-upload-pack"),
        "{request}"
    );
    // base64("x-access-token:ghs_AppInstallationToken42")
    let expected = "Authorization: Basic eC1hY2Nlc3MtdG9rZW46Z2hzX0FwcEluc3RhbGxhdGlvblRva2VuNDI=";
    assert!(
        request.lines().any(|l| l.eq_ignore_ascii_case(expected)),
        "no token header in:\n{request}"
    );
    let text = format!("{err} {err:?}");
    eprintln!("404: {err}");
    assert!(
        !text.contains(token) && !text.contains("eC1hY2Nlc3MtdG9rZW46"),
        "{text}"
    );
    assert!(
        matches!(err, GitError::Remote { .. }),
        "a 404 is permanent: {err:?}"
    );
    assert!(!err.is_transient());
}
