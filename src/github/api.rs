//! The endpoints berth calls: commit statuses, check runs, the one PR comment, pull requests.

use serde::Deserialize;
use serde_json::{Value, json};

use super::*;

#[derive(Deserialize)]
pub(super) struct CommentItem {
    pub(super) id: u64,
    #[serde(default)]
    pub(super) body: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct PullResponse {
    pub(super) number: u64,
    pub(super) state: PullState,
    #[serde(default)]
    pub(super) merged: Option<bool>,
    #[serde(default)]
    pub(super) draft: Option<bool>,
    pub(super) base: PullRef,
    pub(super) head: PullRef,
}

#[derive(Deserialize)]
pub(super) struct PullRef {
    #[serde(rename = "ref")]
    pub(super) ref_: String,
    pub(super) sha: String,
}

pub(super) fn check_run_body(c: &CheckRun) -> Value {
    let mut output = json!({
        "title": c.title,
        "summary": truncate_with_note(&c.summary, CHECK_OUTPUT_MAX),
    });
    if let Some(text) = &c.text {
        output["text"] = json!(truncate_with_note(text, CHECK_OUTPUT_MAX));
    }
    let mut body = json!({ "name": c.name, "status": c.status, "output": output });
    // A conclusion only goes with `completed`: GitHub would complete the run otherwise.
    if c.status == CheckStatus::Completed {
        body["conclusion"] = json!(c.conclusion.unwrap_or(CheckConclusion::Neutral));
    }
    body
}

pub(super) fn normalize_marker(marker: &str) -> Result<String, GitHubError> {
    let m = marker.trim();
    let inner = m
        .strip_prefix("<!--")
        .and_then(|s| s.strip_suffix("-->"))
        .unwrap_or(m)
        .trim();
    if inner.is_empty() || inner.contains("--") || inner.contains('\n') {
        return Err(GitHubError::Config(format!(
            "comment marker {marker:?} must be a one-line text without \"--\""
        )));
    }
    Ok(format!("<!-- {inner} -->"))
}

pub(super) fn compose_comment(marker: &str, body: &str) -> String {
    let body = body.replace(marker, "");
    let room = COMMENT_BODY_MAX - marker.len() - 1;
    format!(
        "{marker}\n{}",
        truncate_with_note(body.trim_start_matches('\n'), room)
    )
}

impl GitHub {
    /// `POST /repos/{owner}/{repo}/statuses/{sha}`.
    pub async fn create_status(&self, sha: &str, s: &StatusUpdate) -> Result<(), GitHubError> {
        let url = self.repo_url(&["statuses", sha]);
        let mut body = json!({
            "state": s.state,
            "context": s.context,
            "description": truncate_chars(&s.description, STATUS_DESCRIPTION_MAX_CHARS),
        });
        if let Some(t) = &s.target_url {
            body["target_url"] = json!(t);
        }
        let _: Value = self.call(Method::POST, url, Some(&body)).await?;
        Ok(())
    }

    /// `POST /repos/{owner}/{repo}/check-runs`; returns the check run's id.
    pub async fn create_check_run(&self, sha: &str, c: &CheckRun) -> Result<u64, GitHubError> {
        let url = self.repo_url(&["check-runs"]);
        let mut body = check_run_body(c);
        body["head_sha"] = json!(sha);
        let created: Id = self.call(Method::POST, url, Some(&body)).await?;
        Ok(created.id)
    }

    /// `PATCH /repos/{owner}/{repo}/check-runs/{id}`.
    pub async fn update_check_run(&self, id: u64, c: &CheckRun) -> Result<(), GitHubError> {
        let url = self.repo_url(&["check-runs", &id.to_string()]);
        let body = check_run_body(c);
        let _: Value = self.call(Method::PATCH, url, Some(&body)).await?;
        Ok(())
    }

    /// Creates or updates berth's comment on pull request `pr`, identified by `marker`: an
    /// HTML comment such as `<!-- berth:preview:default -->` (plain text is wrapped into one).
    /// The marker is put at the top of the body. All comment pages are searched, the first
    /// (oldest) comment carrying the marker is edited in place; a comment is created only when
    /// none carries it. Returns the comment id.
    pub async fn upsert_comment(
        &self,
        pr: u64,
        marker: &str,
        body: &str,
    ) -> Result<u64, GitHubError> {
        let marker = normalize_marker(marker)?;
        let full = compose_comment(&marker, body);
        let payload = json!({ "body": full });
        match self.find_comment(pr, &marker).await? {
            Some(id) => {
                let url = self.repo_url(&["issues", "comments", &id.to_string()]);
                let _: Value = self.call(Method::PATCH, url, Some(&payload)).await?;
                Ok(id)
            }
            None => {
                let url = self.repo_url(&["issues", &pr.to_string(), "comments"]);
                let created: Id = self.call(Method::POST, url, Some(&payload)).await?;
                Ok(created.id)
            }
        }
    }

    /// `GET /repos/{owner}/{repo}/pulls/{n}`.
    pub async fn pull_request(&self, pr: u64) -> Result<PullInfo, GitHubError> {
        let url = self.repo_url(&["pulls", &pr.to_string()]);
        let p: PullResponse = self.call(Method::GET, url, None).await?;
        Ok(PullInfo {
            number: p.number,
            state: p.state,
            merged: p.merged.unwrap_or(false),
            draft: p.draft.unwrap_or(false),
            base_ref: p.base.ref_,
            base_sha: p.base.sha,
            head_ref: p.head.ref_,
            head_sha: p.head.sha,
        })
    }

    async fn find_comment(&self, pr: u64, marker: &str) -> Result<Option<u64>, GitHubError> {
        for page in 1..=MAX_COMMENT_PAGES {
            let mut url = self.repo_url(&["issues", &pr.to_string(), "comments"]);
            url.query_pairs_mut()
                .append_pair("per_page", &COMMENTS_PER_PAGE.to_string())
                .append_pair("page", &page.to_string());
            let items: Vec<CommentItem> = self.call(Method::GET, url, None).await?;
            if let Some(c) = items
                .iter()
                .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
            {
                return Ok(Some(c.id));
            }
            if items.len() < COMMENTS_PER_PAGE {
                return Ok(None);
            }
        }
        Ok(None)
    }
}
