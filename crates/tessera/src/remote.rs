//! Talking to a Tessera server (`--server URL`, `--token`): requests with the bearer token,
//! and the server's JSON errors (`{"error": {"code", "message", "details"}}`) as
//! [`ServerRefused`].

use std::fmt;

use anyhow::Result;
use serde_json::Value;

/// A server's base URL and token.
#[derive(Debug, Clone)]
pub struct Remote {
    pub base: String,
    token: Option<String>,
    pub client: reqwest::Client,
}

/// The server answered with an error status.
#[derive(Debug)]
pub struct ServerRefused {
    pub status: reqwest::StatusCode,
    pub message: String,
    pub details: Value,
}

impl fmt::Display for ServerRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ServerRefused {}

impl Remote {
    pub fn new(base: &str, token: Option<&str>) -> Result<Remote> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = base.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("--server {base}: expected an http:// or https:// URL");
        }
        Ok(Remote {
            base: base.to_string(),
            token: token.map(str::to_string),
            client: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()?,
        })
    }

    /// A request to `path` (starting with `/`), with the token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends a request; an error status becomes [`ServerRefused`].
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let error = &body["error"];
        let mut message = error["message"]
            .as_str()
            .unwrap_or("request failed")
            .to_string();
        // An internal error is quoted by its id, which is in the server's log.
        if let Some(id) = error["error_id"].as_str() {
            message.push_str(&format!(" (error id {id})"));
        }
        Err(ServerRefused {
            status,
            message,
            details: error["details"].clone(),
        }
        .into())
    }

    /// `method path` → its JSON answer.
    pub async fn json(&self, method: reqwest::Method, path: &str) -> Result<Value> {
        let resp = self.send(self.request(method, path)).await?;
        Ok(resp.json().await.unwrap_or(Value::Null))
    }
}

/// The runtime of one command's requests.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// An id given by the user, checked before it goes into a URL path.
pub fn checked_id<'a>(what: &str, id: &'a str) -> Result<&'a str> {
    if uuid::Uuid::parse_str(id).is_err() {
        anyhow::bail!("`{id}` is not a valid {what} id (expected a UUID)");
    }
    Ok(id)
}

/// A path segment (a task id, a node name) percent-encoded: whatever it holds, it stays one
/// segment of the URL (`../` or `?` cannot change the route).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~') && s != "." && s != ".."
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
