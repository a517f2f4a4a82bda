//! GitHub App authentication: the RS256 JWT, the installation look-up, installation tokens
//! cached until shortly before they expire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use super::*;

pub(super) struct AppAuth {
    pub(super) app_id: u64,
    pub(super) key: jsonwebtoken::EncodingKey,
    pub(super) cache: Mutex<AppCache>,
}

#[derive(Default)]
pub(super) struct AppCache {
    pub(super) installation_id: Option<u64>,
    pub(super) token: Option<(Secret, SystemTime)>,
}

#[derive(Serialize)]
pub(super) struct JwtClaims {
    pub(super) iat: u64,
    pub(super) exp: u64,
    pub(super) iss: String,
}

#[derive(Deserialize)]
pub(super) struct InstallationToken {
    pub(super) token: String,
    pub(super) expires_at: String,
}

impl AppAuth {
    pub(super) fn jwt(&self) -> Result<String, GitHubError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // iat in the past tolerates clock drift; exp within GitHub's 10-minute maximum.
        let claims = JwtClaims {
            iat: now.saturating_sub(60),
            exp: now + 9 * 60,
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| GitHubError::AppAuth(format!("signing the App JWT: {e}")))
    }
}

/// Keeps the classification (a 5xx while minting is still transient) but says which step failed.
pub(super) fn app_step(step: &str, e: GitHubError) -> GitHubError {
    match e {
        GitHubError::Api {
            method,
            path,
            status,
            message,
            retry_after,
            rate_limited,
        } => GitHubError::Api {
            method,
            path,
            status,
            message: format!("GitHub App {step}: {message}"),
            retry_after,
            rate_limited,
        },
        GitHubError::Decode {
            method,
            path,
            message,
        } => GitHubError::AppAuth(format!(
            "{step}: {method} {path}: unexpected response: {message}"
        )),
        other => other,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` → time. Enough for GitHub's timestamps.
pub(super) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

impl GitHub {
    /// The token for API calls: the configured one, or a (cached) App installation token.
    pub(super) async fn bearer(&self) -> Result<Secret, GitHubError> {
        let app = match &self.inner.auth {
            AuthState::Token(t) => return Ok(t.clone()),
            AuthState::App(app) => app,
        };
        // Held across the refresh so that concurrent callers mint one token, not many.
        let mut cache = app.cache.lock().await;
        if let Some((token, expires)) = &cache.token {
            if SystemTime::now() + TOKEN_REFRESH_MARGIN < *expires {
                return Ok(token.clone());
            }
        }
        let jwt = Secret::new(app.jwt()?);
        let installation = match cache.installation_id {
            Some(id) => id,
            None => {
                let url = self.repo_url(&["installation"]);
                let inst: Id = self
                    .send(Method::GET, url, None, &jwt)
                    .await
                    .map_err(|e| app_step("find installation", e))?;
                cache.installation_id = Some(inst.id);
                inst.id
            }
        };
        let url = self.url(&[
            "app",
            "installations",
            &installation.to_string(),
            "access_tokens",
        ]);
        // Narrowed to the one repository berth works on.
        let body = json!({ "repositories": [self.inner.name] });
        let minted: Result<InstallationToken, _> =
            self.send(Method::POST, url, Some(&body), &jwt).await;
        let minted = match minted {
            Ok(t) => t,
            Err(e) => {
                if e.status() == Some(404) {
                    cache.installation_id = None; // re-installed App: look it up again next time
                }
                return Err(app_step("create installation token", e));
            }
        };
        let expires = parse_rfc3339(&minted.expires_at).ok_or_else(|| {
            GitHubError::AppAuth(format!(
                "installation token has an unreadable expires_at {:?}",
                minted.expires_at
            ))
        })?;
        let token = Secret::new(minted.token);
        cache.token = Some((token.clone(), expires));
        tracing::debug!(installation, "minted GitHub App installation token");
        Ok(token)
    }
}
