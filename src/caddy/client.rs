//! Caddy's admin API over HTTP (reqwest): `GET /config/` and `POST /load`. Every request has a
//! connect and a total timeout, and a response is read up to [`MAX_RESPONSE`] bytes.

use std::time::Duration;

use serde_json::Value;

/// The most bytes of a response berth reads (a config with thousands of routes fits).
pub const MAX_RESPONSE: usize = 8 << 20;

/// Why talking to Caddy failed.
#[derive(Debug, thiserror::Error)]
pub enum CaddyError {
    #[error("Caddy's admin API at {url} does not answer: {message}")]
    Unreachable { url: String, message: String },
    /// Caddy refused the config (and keeps running the previous one).
    #[error("Caddy refused the config (it keeps the previous one): {message}")]
    Refused { message: String },
    #[error("Caddy's admin API at {url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("Caddy's answer from {url} is larger than {} MiB", MAX_RESPONSE >> 20)]
    TooLarge { url: String },
    #[error("Caddy's answer from {url} is not JSON: {message}")]
    Invalid { url: String, message: String },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

impl CaddyError {
    /// Worth another try later: Caddy not up (yet), a timeout, a 5xx that is not a refusal.
    pub fn is_transient(&self) -> bool {
        matches!(self, CaddyError::Unreachable { .. })
            || matches!(self, CaddyError::Status { status, .. } if *status >= 500)
    }
}

/// A client of one Caddy admin API.
#[derive(Debug, Clone)]
pub struct Caddy {
    http: reqwest::Client,
}

impl Caddy {
    /// `timeout` bounds each request (connect: at most 5 s of it).
    pub fn new(timeout: Duration) -> Result<Caddy, CaddyError> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // The admin API is local: never through a proxy from the environment.
            .no_proxy()
            // Nor anywhere else: an answer that redirects is not Caddy's admin API.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CaddyError::Client(e.to_string()))?;
        Ok(Caddy { http })
    }

    /// The running config (`null` when Caddy has none).
    pub async fn config(&self, admin: &str) -> Result<Value, CaddyError> {
        let url = format!("{admin}/config/");
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))?;
        let status = resp.status().as_u16();
        let body = read_limited(&url, resp).await?;
        if status != 200 {
            return Err(CaddyError::Status {
                url,
                status,
                message: message(&body),
            });
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|e| CaddyError::Invalid {
            url,
            message: e.to_string(),
        })
    }

    /// Replace the whole config. Caddy validates and provisions it first; when that fails it
    /// answers 400 and keeps the config it runs.
    pub async fn load(&self, admin: &str, config: &Value) -> Result<(), CaddyError> {
        let url = format!("{admin}/load");
        let resp = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(config.to_string())
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))?;
        let status = resp.status().as_u16();
        let body = read_limited(&url, resp).await?;
        match status {
            200..=299 => Ok(()),
            400 => Err(CaddyError::Refused {
                message: message(&body),
            }),
            _ => Err(CaddyError::Status {
                url,
                status,
                message: message(&body),
            }),
        }
    }
}

fn unreachable(url: &str, e: &reqwest::Error) -> CaddyError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    CaddyError::Unreachable {
        url: url.to_string(),
        message: kind.to_string(),
    }
}

async fn read_limited(url: &str, mut resp: reqwest::Response) -> Result<Vec<u8>, CaddyError> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if body.len() + c.len() > MAX_RESPONSE {
                    return Err(CaddyError::TooLarge {
                        url: url.to_string(),
                    });
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(unreachable(url, &e)),
        }
    }
}

/// Caddy's error text (`{"error": "..."}`), cut to one readable line.
fn message(body: &[u8]) -> String {
    let text = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 500 {
        let cut: String = one.chars().take(500).collect();
        format!("{cut}…")
    } else {
        one
    }
}
