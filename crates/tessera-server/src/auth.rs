//! Bearer tokens with roles: `admin` manages pipelines and sees everything, `user`
//! runs pipelines and sees its own tasks and objects, `service` announces and calls back.
//! Without tokens, auth is off (and the server only listens on loopback unless told otherwise).

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    User,
    Service,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            "service" => Some(Role::Service),
            _ => None,
        }
    }
}

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token name; `None` when auth is off.
    pub name: Option<String>,
    pub role: Role,
}

impl Caller {
    pub fn require(&self, allowed: &[Role]) -> Result<(), ApiError> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role",
                allowed
                    .iter()
                    .map(|r| format!("{r:?}").to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    /// Whether this caller may see a task owned by `owner`.
    pub fn can_see(&self, owner: Option<&str>) -> bool {
        match self.role {
            Role::Admin => true,
            Role::User => self.name.is_none() || owner == self.name.as_deref(),
            Role::Service => false,
        }
    }

    /// Owner filter for listings: `None` = everything.
    pub fn owner_filter(&self) -> Option<String> {
        match self.role {
            Role::Admin => None,
            _ => self.name.clone(),
        }
    }
}

/// Configured tokens, kept as SHA-256 digests (compared by digest, not by the secret).
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], (String, Role)>,
}

impl Tokens {
    /// Parses `role:name:secret` entries (from flags or `TESSERA_TOKENS`, comma-separated).
    pub fn parse(entries: &[String]) -> Result<Tokens, String> {
        let mut tokens = Tokens::default();
        for entry in entries
            .iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let mut parts = entry.splitn(3, ':');
            let (Some(role), Some(name), Some(secret)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "token `{}…`: expected role:name:secret",
                    entry.chars().take(12).collect::<String>()
                ));
            };
            let role = Role::parse(role).ok_or_else(|| {
                format!("token for `{name}`: unknown role `{role}` (admin, user or service)")
            })?;
            if secret.len() < 16 {
                return Err(format!(
                    "token for `{name}`: the secret must have at least 16 characters"
                ));
            }
            // One secret, one identity: a secret shared by two tokens would act as the last.
            if tokens
                .by_digest
                .insert(digest(secret), (name.to_string(), role))
                .is_some()
            {
                return Err(format!(
                    "token for `{name}`: another token has the same secret; give each its own"
                ));
            }
        }
        Ok(tokens)
    }

    /// Reads `role:name:secret` entries from a file, one per line (`#` comments and blank
    /// lines ignored), so secrets stay out of the process's command line and environment.
    /// The file must not be readable by group or others.
    pub fn entries_from_file(path: &std::path::Path) -> Result<Vec<String>, String> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("tokens file {shown}: {e}"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "tokens file {shown} is open to its group or others (mode {mode:03o}): chmod 600 it"
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("tokens file {shown}: {e}"))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect())
    }

    pub fn enabled(&self) -> bool {
        !self.by_digest.is_empty()
    }

    pub(crate) fn check(&self, secret: &str) -> Option<Caller> {
        self.by_digest
            .get(&digest(secret))
            .map(|(name, role)| Caller {
                name: Some(name.clone()),
                role: *role,
            })
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Who sent a request: its bearer token, or (when `cookie_ok`) the web UI's sign-in cookie;
/// everyone is an admin when tokens are off. `None`: no valid token.
pub(crate) fn caller_of(
    headers: &axum::http::HeaderMap,
    state: &AppState,
    cookie_ok: bool,
) -> Option<Caller> {
    if !state.tokens.enabled() {
        return Some(Caller {
            name: None,
            role: Role::Admin,
        });
    }
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    match bearer {
        Some(secret) => state.tokens.check(secret.trim()),
        None if cookie_ok => {
            let cookie = crate::ui::session::cookie(headers, crate::ui::session::TOKEN_COOKIE)?;
            // Kept as hex: any secret is a valid cookie value that way.
            let secret = String::from_utf8(hex::decode(cookie).ok()?).ok()?;
            state.tokens.check(&secret)
        }
        None => None,
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        // The UI's cookie opens reads only (its pages' images, downloads, item pages): a
        // cross-site form can never use it to change anything through the API.
        let cookie_ok = !crate::ui::session::is_write(&parts.method);
        caller_of(&parts.headers, state, cookie_ok).ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_check() {
        let t = Tokens::parse(&["admin:alice:0123456789abcdef, user:bob:fedcba9876543210".into()])
            .unwrap();
        assert!(t.enabled());
        assert_eq!(t.check("0123456789abcdef").unwrap().role, Role::Admin);
        assert_eq!(
            t.check("fedcba9876543210").unwrap().name.as_deref(),
            Some("bob")
        );
        assert!(t.check("nope").is_none());
        assert!(Tokens::parse(&["root:x:0123456789abcdef".into()]).is_err());
        assert!(Tokens::parse(&["user:x:short".into()]).is_err());
        assert!(Tokens::parse(&["user-only".into()]).is_err());
        assert!(
            Tokens::parse(&["user:a:0123456789abcdef,admin:b:0123456789abcdef".into()]).is_err(),
            "one secret, one identity"
        );
        assert!(
            Tokens::parse(&["ééééééééééééééé".into()]).is_err(),
            "no panic on multibyte text"
        );
    }

    #[test]
    fn users_see_only_their_tasks() {
        let bob = Caller {
            name: Some("bob".into()),
            role: Role::User,
        };
        assert!(bob.can_see(Some("bob")));
        assert!(!bob.can_see(Some("alice")));
        assert!(!bob.can_see(None));
        assert!(bob.require(&[Role::Admin]).is_err());
    }
}
