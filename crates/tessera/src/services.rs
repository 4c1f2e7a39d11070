//! `tessera services announce|list|remove`: the registry that `service: name/endpoint` nodes
//! resolve against — the data dir's (what `tessera run` uses), or a server's with `--server`.
//! Also the registry read of `tessera validate --server`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::Value;
use tessera_core::services::Announced;

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum ServicesAction {
    /// Record running services: each URL is asked for its description (`GET URL/`: name,
    /// URL and endpoints, what it announces to a server); --from reads an announcement file.
    Announce {
        /// Base URLs of running services (e.g. http://127.0.0.1:8101).
        urls: Vec<String>,
        /// An announcement `{"name", "url", "endpoints": [{"route", "path", …}]}` (`-` =
        /// stdin), for a service that does not describe itself.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
    },
    /// Services known now, with their endpoints.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Forget a service (and the pipelines made from its endpoints).
    Remove { name: String },
}

/// A small HTTP client for the registry commands (one request at a time).
struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    fn new(token: Option<&str>) -> Result<Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Client {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            token: token.map(str::to_string),
        })
    }

    /// Sends a request and reads its JSON answer; an error status names the server's message.
    fn call(&self, method: reqwest::Method, url: &str, body: Option<&Value>) -> Result<Value> {
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.runtime.block_on(async {
            let resp = req
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                let msg = body["error"]["message"]
                    .as_str()
                    .unwrap_or("request failed")
                    .to_string();
                let details = match &body["error"]["details"] {
                    Value::Array(items) if !items.is_empty() => format!(
                        "\n{}",
                        items
                            .iter()
                            .map(|d| format!(
                                "  {}: {}",
                                d["field"].as_str().unwrap_or(""),
                                d["message"].as_str().unwrap_or("")
                            ))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ),
                    _ => String::new(),
                };
                bail!("{url}: {status}: {msg}{details}");
            }
            Ok(body)
        })
    }
}

/// The services a server's registry knows (`GET /api/v1/registry/services`).
pub fn server_registry(server: &str, token: Option<&str>) -> Result<Vec<Announced>> {
    let client = Client::new(token)?;
    let url = format!("{}/api/v1/registry/services", server.trim_end_matches('/'));
    let body = client.call(reqwest::Method::GET, &url, None)?;
    Ok(announced(body["items"].as_array().into_iter().flatten()))
}

fn announced<'a>(items: impl Iterator<Item = &'a Value>) -> Vec<Announced> {
    items
        .map(|s| {
            Announced::new(
                s["name"].as_str().unwrap_or(""),
                s["url"].as_str().unwrap_or(""),
                &s["endpoints"],
            )
        })
        .collect()
}

pub fn services(
    settings: &Settings,
    server: Option<&str>,
    token: Option<&str>,
    action: ServicesAction,
) -> Result<ExitCode> {
    if server.is_none() && settings.ephemeral {
        bail!("--ephemeral keeps no registry");
    }
    match action {
        ServicesAction::Announce { urls, from } => {
            if urls.is_empty() && from.is_none() {
                bail!("name the services' URLs (or --from FILE)");
            }
            let client = Client::new(token)?;
            let mut announcements = Vec::new();
            if let Some(path) = &from {
                let text = if path.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())?
                } else {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                };
                let doc: Value = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not JSON", path.display()))?;
                announcements.push(doc);
            }
            for url in &urls {
                let base = url.trim_end_matches('/');
                let mut doc = client
                    .call(reqwest::Method::GET, &format!("{base}/"), None)
                    .with_context(|| format!("cannot ask {base} for its description"))?;
                // It is where it was reached, whatever it believes its URL to be.
                doc["url"] = Value::String(base.to_string());
                announcements.push(doc);
            }
            for doc in announcements {
                announce(settings, server, &client, &doc)?;
            }
        }
        ServicesAction::List { json } => {
            let list: Vec<Value> = match server {
                Some(s) => {
                    let client = Client::new(token)?;
                    let url = format!("{}/api/v1/registry/services", s.trim_end_matches('/'));
                    let body = client.call(reqwest::Method::GET, &url, None)?;
                    body["items"].as_array().cloned().unwrap_or_default()
                }
                None => settings
                    .open_store()?
                    .list_services()?
                    .into_iter()
                    .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
                    .collect(),
            };
            if json {
                crate::output::json(&list)?;
            } else if list.is_empty() {
                errln!("no services announced");
            } else {
                for s in announced(list.iter()) {
                    let endpoints: Vec<String> =
                        s.paths.iter().map(|p| format!("{}{p}", s.name)).collect();
                    outln!("{:<16} {:<28} {}", s.name, s.url, endpoints.join(" "))?;
                }
            }
        }
        ServicesAction::Remove { name } => {
            if server.is_some() {
                bail!("a server forgets a service by itself once it stops announcing");
            }
            let store = settings.open_store()?;
            if !store.list_services()?.iter().any(|s| s.name == name) {
                bail!("no service named `{name}` is announced");
            }
            store.remove_service(&name)?;
            errln!("removed service `{name}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Records one announcement in the data dir's registry (as the server records the ones it
/// receives), or sends it to the server.
fn announce(settings: &Settings, server: Option<&str>, client: &Client, doc: &Value) -> Result<()> {
    let name = doc["name"].as_str().unwrap_or("?").to_string();
    let conflicts = match server {
        Some(s) => {
            let url = format!("{}/api/v1/registry/announce", s.trim_end_matches('/'));
            let body = client.call(reqwest::Method::POST, &url, Some(doc))?;
            let list = |k: &str| -> Vec<String> {
                body[k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            list("conflicts")
        }
        None => {
            let store = settings.open_store()?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let body = serde_json::to_vec(doc)?;
            let recorded = tessera_server::registry::record_announcement(
                store.as_ref(),
                &tessera_core::Scripts::default(),
                &body,
                now,
            )
            .map_err(|e| anyhow::anyhow!("{}", api_error_text(&e)))
            .with_context(|| format!("service `{name}`"))?;
            recorded.conflicts
        }
    };
    let endpoints: Vec<String> = announced(std::iter::once(doc))
        .into_iter()
        .flat_map(|s| s.paths.into_iter().map(move |p| format!("{}{p}", s.name)))
        .collect();
    errln!("announced `{name}`: {}", endpoints.join(", "));
    if !conflicts.is_empty() {
        errln!(
            "  routes taken by other pipelines (not replaced): {}",
            conflicts.join(", ")
        );
    }
    Ok(())
}

/// An announcement refused by the registry, with each problem on its own line.
fn api_error_text(e: &tessera_server::error::ApiError) -> String {
    match e {
        tessera_server::error::ApiError::Invalid { message, details } => {
            let mut text = message.clone();
            for d in details.as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "\n  {}: {}",
                    d["field"].as_str().unwrap_or(""),
                    d["message"].as_str().unwrap_or("")
                ));
            }
            text
        }
        other => other.to_string(),
    }
}
