//! The GitHub adapter against the OpenAPI-validating stand-in (`github_fake`), and the
//! stand-in's validator itself (a validator that accepts everything would make the rest moot).

use std::time::Duration;

use berth::github::{
    Auth, CheckConclusion, CheckRun, CheckStatus, GitHub, GitHubError, PullState, RetryPolicy,
    StatusState, StatusUpdate, with_retry,
};
use berth::model::Secret;
use serde_json::{Value, json};

use crate::github_fake::{
    FAKE_APP_ID, FAKE_INSTALLATION_ID, FAKE_REPO, FAKE_TOKEN, GitHubFake, Spec,
};

const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";

fn headers() -> Vec<(String, String)> {
    [
        ("authorization", "Bearer x"),
        ("user-agent", "berth/test"),
        ("accept", "application/vnd.github+json"),
        ("x-github-api-version", "2022-11-28"),
        ("content-type", "application/json"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn post(
    path: &str,
    body: Value,
) -> Result<crate::github_fake::Matched, crate::github_fake::Rejection> {
    Spec::get().validate_request("POST", path, &[], &headers(), body.to_string().as_bytes())
}

#[track_caller]
fn rejected(
    r: Result<crate::github_fake::Matched, crate::github_fake::Rejection>,
    status: u16,
    needle: &str,
) {
    match r {
        Ok(m) => panic!(
            "accepted {}, expected {status} mentioning {needle:?}",
            m.operation_id
        ),
        Err(rej) => {
            assert_eq!(rej.status, status, "{:?}", rej.reasons);
            assert!(
                rej.reasons.iter().any(|r| r.contains(needle)),
                "no reason mentions {needle:?}: {:?}",
                rej.reasons
            );
        }
    }
}

fn status(state: StatusState, description: &str) -> StatusUpdate {
    StatusUpdate {
        state,
        context: "berth/plan".into(),
        description: description.into(),
        target_url: Some("https://berth.example/runs/1".into()),
    }
}

fn client(fake: &GitHubFake, auth: Auth) -> GitHub {
    GitHub::new(fake.options(auth)).expect("client")
}

#[test]
fn github_validator_rejects_bad_requests() {
    let statuses = format!("/repos/o/r/statuses/{SHA}");
    // Valid requests pass (nullable target_url included) …
    let ok = post(
        &statuses,
        json!({"state": "success", "context": "c", "description": "d", "target_url": null}),
    )
    .unwrap();
    assert_eq!(ok.operation_id, "repos/create-commit-status");
    assert_eq!(ok.path_params["sha"], SHA);
    // … and a multi-segment ref is one parameter.
    let m = Spec::get()
        .validate_request(
            "GET",
            "/repos/o/r/commits/heads/main/status",
            &[],
            &headers(),
            b"",
        )
        .unwrap();
    assert_eq!(m.path_params["ref"], "heads/main");

    rejected(
        post(&statuses, json!({"context": "c"})),
        422,
        "required property \"state\" missing",
    );
    rejected(
        post(&statuses, json!({"state": "bogus"})),
        422,
        "is not one of",
    );
    rejected(
        post(&statuses, json!({"state": "success", "description": 5})),
        422,
        "expected string",
    );
    rejected(
        post(&statuses, json!({"state": "success", "context": null})),
        422,
        "null is not allowed",
    );
    // Not in the description's schema, but GitHub enforces it; the fake says so.
    rejected(
        post(
            &statuses,
            json!({"state": "success", "description": "x".repeat(141)}),
        ),
        422,
        "GitHub rule: maximum is 140",
    );
    assert!(
        post(
            &statuses,
            json!({"state": "success", "description": "é".repeat(140)})
        )
        .is_ok()
    );
    rejected(
        Spec::get().validate_request("POST", &statuses, &[], &headers(), b"{not json"),
        422,
        "not JSON",
    );
    rejected(
        Spec::get().validate_request("POST", &statuses, &[], &headers(), b""),
        422,
        "body is required",
    );

    // Unknown paths and methods.
    rejected(
        post("/repos/o/r/deployments", json!({})),
        404,
        "no operation",
    );
    rejected(
        Spec::get().validate_request("DELETE", &statuses, &[], &headers(), b""),
        404,
        "no DELETE operation",
    );

    // Headers.
    let no_auth: Vec<_> = headers()
        .into_iter()
        .filter(|(k, _)| k != "authorization")
        .collect();
    rejected(
        Spec::get().validate_request("GET", "/repos/o/r/pulls/1", &[], &no_auth, b""),
        401,
        "Authorization",
    );
    let no_version: Vec<_> = headers()
        .into_iter()
        .filter(|(k, _)| k != "x-github-api-version")
        .collect();
    rejected(
        Spec::get().validate_request("GET", "/repos/o/r/pulls/1", &[], &no_version, b""),
        422,
        "X-GitHub-Api-Version",
    );

    // Path and query parameter types.
    rejected(
        post("/repos/o/r/issues/abc/comments", json!({"body": "x"})),
        422,
        "path parameter issue_number",
    );
    let q = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let list = |query: Vec<(String, String)>| {
        Spec::get().validate_request(
            "GET",
            "/repos/o/r/issues/1/comments",
            &query,
            &headers(),
            b"",
        )
    };
    assert!(list(q("per_page", "100")).is_ok());
    rejected(list(q("per_page", "many")), 422, "query parameter per_page");
    rejected(
        list(q("sort", "created")),
        422,
        "unknown query parameter sort",
    );
    rejected(
        Spec::get().validate_request(
            "GET",
            &format!("/repos/o/r/commits/{SHA}/check-runs"),
            &q("status", "done"),
            &headers(),
            b"",
        ),
        422,
        "query parameter status",
    );

    // Nested objects, maxLength, anyOf.
    let checks = "/repos/o/r/check-runs";
    rejected(
        post(
            checks,
            json!({"name": "n", "head_sha": SHA, "output": {"title": "t"}}),
        ),
        422,
        "body.output: required property \"summary\"",
    );
    rejected(
        post(
            checks,
            json!({"name": "n", "head_sha": SHA, "output": {"title": "t", "summary": "x".repeat(65_536)}}),
        ),
        422,
        "maxLength 65535",
    );
    rejected(
        post(
            checks,
            json!({"name": "n", "head_sha": SHA, "status": "completed"}),
        ),
        422,
        "required when status is completed",
    );
    let patch = |b: Value| {
        Spec::get().validate_request(
            "PATCH",
            "/repos/o/r/check-runs/5",
            &[],
            &headers(),
            b.to_string().as_bytes(),
        )
    };
    assert!(patch(json!({"status": "completed", "conclusion": "success"})).is_ok());
    assert!(patch(json!({"status": "in_progress"})).is_ok());
    rejected(
        patch(json!({"status": "completed"})),
        422,
        "matches no branch of anyOf",
    );
    rejected(
        post(
            "/app/installations/1/access_tokens",
            json!({"repositories": [1]}),
        ),
        422,
        "body.repositories[0]: expected string",
    );

    // The keywords the subset only uses in responses: $ref, additionalProperties, oneOf.
    let spec = Spec::get();
    assert!(
        !spec
            .validate_value(
                &json!({"$ref": "#/components/schemas/installation-token"}),
                &json!({})
            )
            .is_empty()
    );
    let closed = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": false});
    assert!(spec.validate_value(&closed, &json!({"a": 1})).is_empty());
    assert!(
        spec.validate_value(&closed, &json!({"a": 1, "b": 2}))[0]
            .contains("unknown property \"b\"")
    );
    let one_of = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
    assert!(spec.validate_value(&one_of, &json!(3)).is_empty());
    assert!(!spec.validate_value(&one_of, &json!(true)).is_empty());
    let items = json!({"type": "array", "items": {"type": "string", "enum": ["a"]}, "maxItems": 1});
    assert!(spec.validate_value(&items, &json!(["a"])).is_empty());
    assert_eq!(spec.validate_value(&items, &json!(["a", "b"])).len(), 2);
}

#[tokio::test]
async fn github_fake_answers_invalid_requests_422_and_records_them() {
    let fake = GitHubFake::start().await;
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/repos/{FAKE_REPO}/statuses/{SHA}", fake.url))
        .header("authorization", format!("Bearer {FAKE_TOKEN}"))
        .header("user-agent", "test")
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .json(&json!({"state": "bogus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let resp = http
        .get(format!("{}/repos/{FAKE_REPO}/pulls/1", fake.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v = fake.take_violations();
    assert!(v.iter().any(|v| v.contains("is not one of")), "{v:?}");
    assert!(
        v.iter().any(|v| v.contains("missing Authorization")),
        "{v:?}"
    );
    assert!(
        fake.statuses_for(SHA).is_empty(),
        "an invalid request changed state"
    );
    fake.assert_no_violations();
}

#[tokio::test]
async fn github_create_status_pending_then_success() {
    let fake = GitHubFake::start().await;
    let gh = client(&fake, fake.token_auth());
    assert!(!gh.is_app());
    gh.create_status(SHA, &status(StatusState::Pending, "planning"))
        .await
        .unwrap();
    let long = "é".repeat(300);
    gh.create_status(SHA, &status(StatusState::Success, &long))
        .await
        .unwrap();

    let s = fake.statuses_for(SHA);
    assert_eq!(s.len(), 2);
    assert_eq!(
        (s[0].state.as_str(), s[0].description.as_deref()),
        ("pending", Some("planning"))
    );
    assert_eq!(s[1].state, "success");
    assert_eq!(s[1].context, "berth/plan");
    assert_eq!(
        s[1].target_url.as_deref(),
        Some("https://berth.example/runs/1")
    );
    let d = s[1].description.as_deref().unwrap();
    assert_eq!(d.chars().count(), 140);
    assert!(d.ends_with('…'));

    for r in fake.requests() {
        assert_eq!(r.header("accept"), Some("application/vnd.github+json"));
        assert_eq!(r.header("x-github-api-version"), Some("2022-11-28"));
        assert_eq!(
            r.header("user-agent"),
            Some(concat!("berth/", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(r.bearer(), Some(FAKE_TOKEN));
    }
    fake.assert_no_violations();
}

#[tokio::test]
async fn github_enterprise_api_prefix() {
    let fake = GitHubFake::start_with_prefix("/api/v3").await;
    let gh = client(&fake, fake.token_auth());
    gh.create_status(SHA, &status(StatusState::Success, "ok"))
        .await
        .unwrap();
    assert!(fake.requests()[0].path.starts_with("/api/v3/repos/"));
    assert_eq!(fake.statuses_for(SHA).len(), 1);
    fake.assert_no_violations();
}

#[tokio::test]
async fn github_check_run_create_and_update_truncates_output() {
    let fake = GitHubFake::start().await;
    let gh = client(&fake, fake.enable_app());
    assert!(gh.is_app());
    let mut run = CheckRun {
        name: "berth / plan".into(),
        status: CheckStatus::InProgress,
        conclusion: None,
        title: "Planning".into(),
        summary: "started".into(),
        text: None,
    };
    let id = gh.create_check_run(SHA, &run).await.unwrap();
    let created = fake.check_run(id).unwrap();
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["head_sha"], SHA);

    run.status = CheckStatus::Completed;
    run.conclusion = Some(CheckConclusion::Success);
    run.title = "3 changes".into();
    run.summary = "ü".repeat(40_000); // 80,000 bytes
    run.text = Some("line of plan output\n".repeat(5_000)); // 100,000 characters
    gh.update_check_run(id, &run).await.unwrap();

    let updated = fake.check_run(id).unwrap();
    assert_eq!(updated["status"], "completed");
    assert_eq!(updated["conclusion"], "success");
    assert_eq!(updated["output"]["title"], "3 changes");
    for field in ["summary", "text"] {
        let s = updated["output"][field].as_str().unwrap();
        assert!(
            s.chars().count() < 65_535 && s.len() <= 65_535,
            "{field}: {} chars",
            s.chars().count()
        );
        assert!(
            s.contains("truncated by berth"),
            "{field} has no truncation note"
        );
    }
    assert!(
        updated["output"]["text"]
            .as_str()
            .unwrap()
            .starts_with("line of plan output\n")
    );

    // Completed without a conclusion is sent as neutral (GitHub requires one).
    run.conclusion = None;
    gh.update_check_run(id, &run).await.unwrap();
    assert_eq!(fake.check_run(id).unwrap()["conclusion"], "neutral");
    fake.assert_no_violations();
}

#[tokio::test]
async fn github_check_runs_need_an_app() {
    let fake = GitHubFake::start().await;
    let gh = client(&fake, fake.token_auth());
    let run = CheckRun {
        name: "berth".into(),
        status: CheckStatus::Queued,
        conclusion: None,
        title: "t".into(),
        summary: "s".into(),
        text: None,
    };
    let err = gh.create_check_run(SHA, &run).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(!err.is_transient(), "{err}");
    fake.assert_no_violations();
}

#[tokio::test]
async fn github_upsert_comment_finds_its_comment_across_pages() {
    let fake = GitHubFake::start().await;
    let gh = client(&fake, fake.token_auth());
    let pr = 7;
    let marker = "<!-- berth:preview:default -->";
    fake.add_comment(pr, "alice", "first!");
    fake.add_comment(pr, "bob", "<!-- berth:preview:other-instance -->\nnot ours");
    fake.add_comment(8, "carol", &format!("{marker}\non another PR"));

    let id = gh
        .upsert_comment(pr, marker, "plan: 2 changes")
        .await
        .unwrap();
    assert_eq!(fake.comments(pr).len(), 3);
    // Bury it under more than a page (100) of other comments.
    for i in 0..150 {
        fake.add_comment(pr, "chatty", &format!("comment {i}"));
    }
    let again = gh
        .upsert_comment(pr, marker, "plan: 3 changes")
        .await
        .unwrap();
    assert_eq!(again, id, "updated in place");
    let ours: Vec<_> = fake
        .comments(pr)
        .into_iter()
        .filter(|c| c.body.contains(marker))
        .collect();
    assert_eq!(ours.len(), 1, "never a second comment");
    assert_eq!(ours[0].body, format!("{marker}\nplan: 3 changes"));
    assert_eq!(fake.comments(pr).len(), 153);
    let other = fake
        .comments(pr)
        .into_iter()
        .find(|c| c.user == "bob")
        .unwrap();
    assert!(other.body.ends_with("not ours"));

    // Once the comment sits on page 2, it is still found.
    let buried = 9;
    for i in 0..130 {
        fake.add_comment(buried, "chatty", &format!("comment {i}"));
    }
    let late = gh
        .upsert_comment(buried, "berth:preview:default", "first")
        .await
        .unwrap();
    let late2 = gh
        .upsert_comment(buried, "berth:preview:default", "second")
        .await
        .unwrap();
    assert_eq!(late, late2);
    assert_eq!(fake.comments(buried).len(), 131);
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path.ends_with("/issues/9/comments")
                && r.query.contains(&("page".to_string(), "2".to_string()))),
        "paginated"
    );

    // Bodies over GitHub's limit are cut, marker kept.
    gh.upsert_comment(pr, marker, &"x".repeat(70_000))
        .await
        .unwrap();
    let ours = fake
        .comments(pr)
        .into_iter()
        .find(|c| c.body.contains(marker))
        .unwrap();
    assert!(ours.body.starts_with(marker));
    assert!(ours.body.chars().count() <= 65_536);
    assert!(ours.body.contains("truncated by berth"));
    fake.assert_no_violations();
}

#[tokio::test]
async fn github_app_auth_jwt_and_token_cache() {
    let fake = GitHubFake::start().await;
    let gh = client(&fake, fake.enable_app());
    for s in [
        StatusState::Pending,
        StatusState::Success,
        StatusState::Success,
    ] {
        gh.create_status(SHA, &status(s, "x")).await.unwrap();
    }
    let minted = fake.minted_tokens();
    assert_eq!(minted.len(), 1, "token cached across calls");
    let reqs = fake.requests();
    let jwt_calls: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.contains("installation"))
        .collect();
    assert_eq!(jwt_calls.len(), 2, "one installation lookup and one token");
    assert_eq!(
        jwt_calls[0].path,
        format!("/repos/{FAKE_REPO}/installation")
    );
    assert_eq!(
        jwt_calls[1].path,
        format!("/app/installations/{FAKE_INSTALLATION_ID}/access_tokens")
    );
    assert_eq!(jwt_calls[1].body, Some(json!({"repositories": ["deploy"]})));
    // The JWT (verified by the fake) carries the App id.
    let jwt = jwt_calls[0].bearer().unwrap();
    let claims: Value =
        serde_json::from_slice(&base64_url_decode(jwt.split('.').nth(1).unwrap())).unwrap();
    assert_eq!(claims["iss"], FAKE_APP_ID.to_string());
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 600, "iat = now-60s, exp = now+9min");
    let api_calls: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.contains("/statuses/"))
        .collect();
    assert_eq!(api_calls.len(), 3);
    assert!(
        api_calls
            .iter()
            .all(|r| r.bearer() == Some(minted[0].as_str()))
    );

    // A token that expires within the 5-minute margin is replaced on the next call.
    let fake2 = GitHubFake::start().await;
    let gh2 = client(&fake2, fake2.enable_app());
    fake2.set_token_ttl(Duration::from_secs(4 * 60));
    gh2.create_status(SHA, &status(StatusState::Pending, "1"))
        .await
        .unwrap();
    fake2.set_token_ttl(Duration::from_secs(3600));
    gh2.create_status(SHA, &status(StatusState::Pending, "2"))
        .await
        .unwrap();
    gh2.create_status(SHA, &status(StatusState::Pending, "3"))
        .await
        .unwrap();
    let minted2 = fake2.minted_tokens();
    assert_eq!(minted2.len(), 2, "refreshed once, then cached");
    let used: Vec<String> = fake2
        .requests()
        .iter()
        .filter(|r| r.path.contains("/statuses/"))
        .map(|r| r.bearer().unwrap().to_string())
        .collect();
    assert_eq!(
        used,
        vec![minted2[0].clone(), minted2[1].clone(), minted2[1].clone()]
    );
    let lookups = fake2
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/installation"))
        .count();
    assert_eq!(lookups, 1, "installation id cached");

    // A revoked token: the call fails 401 (permanent) and the next one mints a new token.
    fake2.revoke_token(&minted2[1]);
    let err = gh2
        .create_status(SHA, &status(StatusState::Pending, "4"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_transient());
    assert!(
        !format!("{err} {err:?}").contains(&minted2[1]),
        "token in error: {err}"
    );
    gh2.create_status(SHA, &status(StatusState::Pending, "5"))
        .await
        .unwrap();
    assert_eq!(fake2.minted_tokens().len(), 3);

    fake.assert_no_violations();
    fake2.assert_no_violations();
}

#[tokio::test]
async fn github_app_with_wrong_key_is_rejected() {
    let fake = GitHubFake::start().await;
    fake.enable_app();
    // A different key than the one the fake knows: the JWT signature does not verify.
    let other = std::process::Command::new("openssl")
        .args(["genrsa", "2048"])
        .output()
        .unwrap();
    assert!(other.status.success());
    let auth = Auth::App {
        app_id: FAKE_APP_ID,
        private_key_pem: Secret::new(String::from_utf8(other.stdout).unwrap()),
    };
    let gh = client(&fake, auth);
    let err = gh
        .create_status(SHA, &status(StatusState::Pending, "x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("GitHub App"), "{err}");
    assert!(fake.minted_tokens().is_empty());
    // A key that is not a key at all is a configuration error.
    let bad = GitHub::new(fake.options(Auth::App {
        app_id: 1,
        private_key_pem: Secret::new("nope"),
    }));
    assert!(matches!(bad, Err(GitHubError::Config(_))));
    fake.assert_no_violations();
}

#[tokio::test]
async fn github_transient_and_permanent_errors() {
    let fake = GitHubFake::start().await;
    let gh = client(&fake, fake.token_auth());
    let s = status(StatusState::Pending, "x");

    fake.fail_next(1, 502);
    let err = gh.create_status(SHA, &s).await.unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert!(err.is_transient(), "{err}");
    gh.create_status(SHA, &s).await.unwrap();

    fake.fail_next_with(1, 403, Some(7));
    let err = gh.create_status(SHA, &s).await.unwrap_err();
    assert!(err.is_transient(), "secondary rate limit: {err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    fake.fail_next(1, 429);
    assert!(gh.create_status(SHA, &s).await.unwrap_err().is_transient());

    fake.fail_next(1, 403);
    assert!(
        !gh.create_status(SHA, &s).await.unwrap_err().is_transient(),
        "plain 403 is permanent"
    );
    fake.fail_next(1, 422);
    assert!(!gh.create_status(SHA, &s).await.unwrap_err().is_transient());
    let err = gh.pull_request(404).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(!err.is_transient());

    // Timeout.
    let mut opts = fake.options(fake.token_auth());
    opts.timeout = Duration::from_millis(300);
    let impatient = GitHub::new(opts).unwrap();
    fake.delay_next(1, Duration::from_secs(2));
    let err = impatient.create_status(SHA, &s).await.unwrap_err();
    assert!(matches!(err, GitHubError::Timeout { .. }), "{err:?}");
    assert!(err.is_transient());

    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut opts = fake.options(fake.token_auth());
    opts.api_url = format!("http://{closed}");
    let err = GitHub::new(opts)
        .unwrap()
        .create_status(SHA, &s)
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::Network { .. }), "{err:?}");
    assert!(err.is_transient());

    // Bad credentials: permanent, and the token is not in the error.
    let secret = "ghp_thisIsAWrongTokenThatMustNotLeak0000";
    let wrong = client(&fake, Auth::Token(Secret::new(secret)));
    let err = wrong.create_status(SHA, &s).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_transient());
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(secret) && !shown.contains(FAKE_TOKEN),
        "{shown}"
    );
    assert!(shown.contains("Bad credentials"), "{shown}");
    assert!(!format!("{:?}", fake.options(fake.token_auth())).contains(FAKE_TOKEN));
    fake.assert_no_violations();
}

#[tokio::test]
async fn github_with_retry_retries_only_transient_errors() {
    let fake = GitHubFake::start().await;
    let gh = client(&fake, fake.token_auth());
    let s = status(StatusState::Success, "x");
    let policy = RetryPolicy {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_retries: 4,
    };
    fake.fail_next(2, 502);
    with_retry(&policy, || gh.create_status(SHA, &s))
        .await
        .unwrap();
    assert_eq!(fake.requests().len(), 3);

    fake.fail_next(1, 422);
    let err = with_retry(&policy, || gh.create_status(SHA, &s))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert_eq!(fake.requests().len(), 4, "permanent errors are not retried");

    // A Retry-After beyond the policy's cap is left to the caller's queue.
    fake.fail_next_with(1, 403, Some(3600));
    let err = with_retry(&policy, || gh.create_status(SHA, &s))
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(fake.requests().len(), 5);

    fake.fail_next(10, 503);
    let err = with_retry(&policy, || gh.create_status(SHA, &s))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(fake.requests().len(), 10, "1 attempt + 4 retries");
    fake.assert_no_violations();
}

#[tokio::test]
async fn github_pull_request_info() {
    let fake = GitHubFake::start().await;
    let gh = client(&fake, fake.token_auth());
    fake.add_pull(12, "main", SHA);
    let p = gh.pull_request(12).await.unwrap();
    assert_eq!(p.number, 12);
    assert_eq!(p.base_ref, "main");
    assert_eq!(p.head_sha, SHA);
    assert_eq!(p.state, PullState::Open);
    assert!(!p.merged);
    fake.set_pull_state(12, "closed", true);
    let p = gh.pull_request(12).await.unwrap();
    assert_eq!((p.state, p.merged), (PullState::Closed, true));
    fake.assert_no_violations();
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => panic!("not base64url: {c}"),
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        acc = (acc << 6) | u32::from(val(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
