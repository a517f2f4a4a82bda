//! GitHub webhooks, the pure part: signature verification and what a delivery means for berth.
//! No IO here; [`super::http`] does the serving, counting and logging.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::queue::{Cause, Work};

/// Why a delivery's signature was refused. The messages never include the secret or the
/// expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("malformed X-Hub-Signature-256 header (want sha256=<64 hex digits>)")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

/// Check `X-Hub-Signature-256: sha256=<hex>` against the HMAC-SHA256 of the raw body, in
/// constant time.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_sig.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let sig = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| SignatureError::Mismatch)
}

/// What to do with a (verified) delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// GitHub's hello when the hook is created.
    Ping,
    /// Push this work; the string says why, for the response body and the log.
    Enqueue(Work, String),
    /// Nothing to do, and why.
    Ignore(String),
    /// The body is not the payload the event promises (400).
    Invalid(String),
}

/// Pull request actions that (re)plan a preview.
const PREVIEW_ACTIONS: &[&str] = &["opened", "synchronize", "reopened", "ready_for_review"];

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
    deleted: Option<bool>,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: Option<String>,
    number: Option<u64>,
    pull_request: Option<PullRequest>,
}

#[derive(Deserialize)]
struct PullRequest {
    number: Option<u64>,
    head: Option<GitRef>,
    base: Option<GitRef>,
}

#[derive(Deserialize)]
struct GitRef {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    sha: Option<String>,
}

/// Decide what a delivery of `event` with this `body` means when berth tracks `branch`
/// (`main` or `refs/heads/main`).
pub fn route(event: &str, body: &[u8], branch: &str) -> Decision {
    let branch = branch.strip_prefix("refs/heads/").unwrap_or(branch);
    match event {
        "ping" => Decision::Ping,
        "push" => route_push(body, branch),
        "pull_request" => route_pull_request(body, branch),
        other => Decision::Ignore(other.to_string()),
    }
}

fn route_push(body: &[u8], branch: &str) -> Decision {
    let p: PushPayload = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return Decision::Invalid(format!("push payload: {e}")),
    };
    let Some(git_ref) = p.git_ref else {
        return Decision::Invalid("push payload has no ref".into());
    };
    if git_ref.starts_with("refs/tags/") {
        return Decision::Ignore(format!("tag push {git_ref}"));
    }
    let Some(name) = git_ref.strip_prefix("refs/heads/") else {
        return Decision::Ignore(format!("push to {git_ref}, not a branch"));
    };
    if name != branch {
        return Decision::Ignore(format!("push to {git_ref}, tracking {branch}"));
    }
    let after = p.after.unwrap_or_default();
    if p.deleted == Some(true) || (!after.is_empty() && after.bytes().all(|b| b == b'0')) {
        return Decision::Ignore(format!("branch {branch} deleted"));
    }
    if !is_commit_id(&after) {
        return Decision::Invalid(format!("push to {git_ref}: `after` is not a commit id"));
    }
    let reason = format!("push to {git_ref} at {after}");
    Decision::Enqueue(
        Work::Branch {
            cause: Cause::Webhook,
            commit: Some(after),
        },
        reason,
    )
}

fn route_pull_request(body: &[u8], branch: &str) -> Decision {
    let p: PullRequestPayload = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return Decision::Invalid(format!("pull_request payload: {e}")),
    };
    let Some(action) = p.action else {
        return Decision::Invalid("pull_request payload has no action".into());
    };
    let Some(pr) = p.pull_request else {
        return Decision::Invalid("pull_request payload has no pull_request".into());
    };
    let Some(number) = p.number.or(pr.number) else {
        return Decision::Invalid("pull_request payload has no number".into());
    };
    let closed = action == "closed";
    if !closed && !PREVIEW_ACTIONS.contains(&action.as_str()) {
        return Decision::Ignore(format!("pull request #{number} {action}"));
    }
    let Some(base) = pr.base.and_then(|b| b.git_ref) else {
        return Decision::Invalid(format!("pull request #{number}: no base.ref"));
    };
    let base = base.strip_prefix("refs/heads/").unwrap_or(&base);
    if base != branch {
        return Decision::Ignore(format!(
            "pull request #{number} targets {base}, tracking {branch}"
        ));
    }
    let (head, branch) = match pr.head {
        Some(h) => (
            h.sha.unwrap_or_default(),
            h.git_ref.filter(|r| is_branch_name(r)),
        ),
        None => (String::new(), None),
    };
    if !is_commit_id(&head) {
        return Decision::Invalid(format!(
            "pull request #{number}: head.sha is not a commit id"
        ));
    }
    if closed {
        let reason = format!("pull request #{number} closed");
        Decision::Enqueue(Work::PreviewClosed { number, head }, reason)
    } else {
        let reason = format!("pull request #{number} {action} at {head}");
        Decision::Enqueue(
            Work::Preview {
                number,
                head,
                branch,
            },
            reason,
        )
    }
}

/// A branch name that is safe to put in a refspec: git's own rules, restricted to the usual
/// characters (anything else simply disables the fallback to the head branch).
fn is_branch_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.contains("..")
        && !name.contains("//")
        && !name.ends_with(".lock")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
}

/// A full SHA-1 or SHA-256 object id in hex: what is safe to hand to git later.
fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/github/webhooks"
    );
    const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    const PR_HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn github_documented_test_vector_verifies() {
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret, body), header);
        assert_eq!(verify_signature(secret, body, Some(header)), Ok(()));
        // Upper-case hex is the same signature.
        assert_eq!(
            verify_signature(
                secret,
                body,
                Some(&header.to_uppercase().replace("SHA256", "sha256"))
            ),
            Ok(())
        );
    }

    #[test]
    fn missing_malformed_and_wrong_signatures_are_refused() {
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let good = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify_signature(secret, body, None),
            Err(SignatureError::Missing)
        );
        for bad in [
            "",
            good,
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",
            "sha256=",
            "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1700",
        ] {
            assert_eq!(
                verify_signature(secret, body, Some(bad)),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
        let wrong = format!("sha256={}", good.replace('7', "8"));
        assert_eq!(
            verify_signature(secret, body, Some(&wrong)),
            Err(SignatureError::Mismatch)
        );
        let good = format!("sha256={good}");
        assert_eq!(
            verify_signature(b"another secret", body, Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(secret, b"Hello, World?", Some(&good)),
            Err(SignatureError::Mismatch)
        );
    }

    /// Every recorded GitHub payload routes without panicking, whatever the tracked branch.
    #[test]
    fn every_fixture_routes() {
        let mut n = 0;
        for entry in std::fs::read_dir(FIXTURES).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let event = name.split('.').next().unwrap();
            let body = std::fs::read(&path).unwrap();
            for branch in ["master", "main"] {
                let d = route(event, &body, branch);
                assert!(
                    !matches!(d, Decision::Invalid(_)),
                    "{name} on {branch}: {d:?}"
                );
                match event {
                    "ping" => assert_eq!(d, Decision::Ping, "{name}"),
                    "push" | "pull_request" => {}
                    _ => assert_eq!(d, Decision::Ignore(event.to_string()), "{name}"),
                }
            }
            n += 1;
        }
        assert!(n >= 40, "only {n} fixtures");
    }

    #[test]
    fn pushes_to_the_tracked_branch_enqueue_the_after_commit() {
        for name in ["push.5.json", "push.6.json"] {
            let body = fixture(name);
            assert_eq!(
                route("push", &body, "master"),
                Decision::Enqueue(
                    Work::Branch {
                        cause: Cause::Webhook,
                        commit: Some(SHA.into())
                    },
                    format!("push to refs/heads/master at {SHA}")
                ),
                "{name}"
            );
            assert_eq!(
                route("push", &body, "refs/heads/master"),
                route("push", &body, "master")
            );
            assert_eq!(
                route("push", &body, "main"),
                Decision::Ignore("push to refs/heads/master, tracking main".into()),
                "{name}"
            );
        }
    }

    #[test]
    fn tag_pushes_and_deletions_are_ignored() {
        for name in [
            "push.1.json",
            "push.2.json",
            "push.3.json",
            "push.4.json",
            "push.7.json",
        ] {
            let body = fixture(name);
            for branch in ["master", "main"] {
                assert_eq!(
                    route("push", &body, branch),
                    Decision::Ignore("tag push refs/tags/simple-tag".into()),
                    "{name}"
                );
            }
        }
        // The tracked branch deleted: by the flag, or by an all-zero `after` (old payloads).
        let deleted = br#"{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000000","deleted":true}"#;
        let zeros =
            br#"{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000000"}"#;
        for body in [&deleted[..], &zeros[..]] {
            assert_eq!(
                route("push", body, "main"),
                Decision::Ignore("branch main deleted".into())
            );
        }
        assert_eq!(
            route("push", deleted, "feature"),
            Decision::Ignore("push to refs/heads/main, tracking feature".into())
        );
        assert_eq!(
            route("push", br#"{"ref":"refs/notes/commits","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246"}"#, "main"),
            Decision::Ignore("push to refs/notes/commits, not a branch".into())
        );
    }

    #[test]
    fn pull_requests_against_the_tracked_branch_enqueue_previews() {
        for name in [
            "pull_request.opened.1.json",
            "pull_request.opened.2.json",
            "pull_request.opened.3.json",
            "pull_request.opened.4.json",
            "pull_request.reopened.1.json",
            "pull_request.reopened.2.json",
            "pull_request.synchronize.1.json",
        ] {
            let body = fixture(name);
            let action = name.split('.').nth(1).unwrap();
            assert_eq!(
                route("pull_request", &body, "master"),
                Decision::Enqueue(
                    Work::Preview {
                        number: 2,
                        head: PR_HEAD.into(),
                        branch: Some("changes".into()),
                    },
                    format!("pull request #2 {action} at {PR_HEAD}")
                ),
                "{name}"
            );
            assert_eq!(
                route("pull_request", &body, "main"),
                Decision::Ignore("pull request #2 targets master, tracking main".into()),
                "{name}"
            );
        }
        for name in ["pull_request.closed.1.json", "pull_request.closed.2.json"] {
            let body = fixture(name);
            assert_eq!(
                route("pull_request", &body, "master"),
                Decision::Enqueue(
                    Work::PreviewClosed {
                        number: 2,
                        head: PR_HEAD.into()
                    },
                    "pull request #2 closed".into()
                ),
                "{name}"
            );
            assert_eq!(
                route("pull_request", &body, "main"),
                Decision::Ignore("pull request #2 targets master, tracking main".into()),
                "{name}"
            );
        }
    }

    #[test]
    fn other_pull_request_actions_are_ignored() {
        let body = String::from_utf8(fixture("pull_request.opened.1.json"))
            .unwrap()
            .replacen(r#""action": "opened""#, r#""action": "labeled""#, 1);
        assert!(
            body.contains(r#""action": "labeled""#),
            "fixture format changed"
        );
        assert_eq!(
            route("pull_request", body.as_bytes(), "master"),
            Decision::Ignore("pull request #2 labeled".into())
        );
        let ready = body.replacen(
            r#""action": "labeled""#,
            r#""action": "ready_for_review""#,
            1,
        );
        assert!(matches!(
            route("pull_request", ready.as_bytes(), "master"),
            Decision::Enqueue(Work::Preview { number: 2, .. }, _)
        ));
    }

    #[test]
    fn bodies_that_are_not_the_payload_are_invalid() {
        for (event, body) in [
            ("push", &b"not json"[..]),
            ("push", b"{}"),
            ("push", b"[]"),
            ("push", br#"{"ref":"refs/heads/main"}"#),
            ("push", br#"{"ref":"refs/heads/main","after":"--upload-pack=evil"}"#),
            ("push", br#"{"ref":42}"#),
            ("pull_request", b""),
            ("pull_request", b"{}"),
            ("pull_request", br#"{"action":"opened"}"#),
            ("pull_request", br#"{"action":"opened","pull_request":{}}"#),
            (
                "pull_request",
                br#"{"action":"opened","number":1,"pull_request":{"base":{"ref":"main"},"head":{}}}"#,
            ),
        ] {
            assert!(
                matches!(route(event, body, "main"), Decision::Invalid(_)),
                "{event} {}",
                String::from_utf8_lossy(body)
            );
        }
        // Events berth does not handle are not even parsed.
        assert_eq!(
            route("issues", b"not json", "main"),
            Decision::Ignore("issues".into())
        );
        assert_eq!(route("ping", b"not json", "main"), Decision::Ping);
    }
}
