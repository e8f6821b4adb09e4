//! Bearer tokens: every `/api` call carries one; reads need any live token, writes an admin one.
//!
//! A server remembers the tokens it verified for [`VERIFIED_FOR`], so a busy client costs the
//! store one lookup a second rather than one a request. A revoke through this server forgets
//! them all at once; another server sharing the store stops taking a revoked token within
//! [`VERIFIED_FOR`].

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use panda_store::{ApiToken, StoreError, TokenScope};
use sha2::{Digest, Sha256};

use crate::{AppState, Failure};

/// How long a verified token is taken without asking the store again.
pub(crate) const VERIFIED_FOR: Duration = Duration::from_secs(1);
/// The most tokens remembered; past it the oldest half is forgotten.
const REMEMBERED: usize = 1024;

/// Tokens this server verified lately, by their secret's SHA-256 (never the secret itself).
/// Only live tokens are remembered: a wrong secret always reaches the store, so guessing
/// cannot fill this.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    tokens: Mutex<HashMap<[u8; 32], (ApiToken, Instant)>>,
}

impl Verified {
    fn fresh(&self, key: &[u8; 32], now: Instant) -> Option<ApiToken> {
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(key)
            .filter(|(_, at)| now.duration_since(*at) < VERIFIED_FOR)
            .map(|(token, _)| token.clone())
    }

    fn remember(&self, key: [u8; 32], token: Option<&ApiToken>, now: Instant) {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(token) = token else {
            tokens.remove(&key);
            return;
        };
        if tokens.len() >= REMEMBERED {
            tokens.retain(|_, (_, at)| now.duration_since(*at) < VERIFIED_FOR);
            if tokens.len() >= REMEMBERED {
                tokens.clear();
            }
        }
        tokens.insert(key, (token.clone(), now));
    }

    /// Forgets every token, as a revoke must take effect on this server at once.
    pub(crate) fn forget(&self) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl AppState {
    /// The live token whose secret this is, from what this server verified in the last
    /// [`VERIFIED_FOR`], or else from the store.
    pub(crate) async fn verify_token(&self, secret: &str) -> Result<Option<ApiToken>, StoreError> {
        let key: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if let Some(token) = self.verified.fresh(&key, Instant::now()) {
            return Ok(Some(token));
        }
        let token = self.store.token_verify(secret, self.clock.now()).await?;
        self.verified.remember(key, token.as_ref(), Instant::now());
        Ok(token)
    }
}

/// Checks the request's token and its scope, and hands the token to the route.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, Failure> {
    let secret = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|secret| !secret.is_empty())
        .ok_or_else(|| {
            Failure::new(StatusCode::UNAUTHORIZED, "unauthorized", "no API token given")
                .hint("send Authorization: Bearer <token>; `panda server` wrote an admin token to DATA_DIR/admin.token")
        })?;
    let token = state.verify_token(secret).await?.ok_or_else(|| {
        Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the API token is not valid (unknown or revoked)",
        )
        .hint("create one with `panda token create NAME`, or use the admin token")
    })?;
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reads && token.scope != TokenScope::Admin {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token {:?} is read-only", token.name),
        )
        .hint("use an admin token for changes"));
    }
    request.extensions_mut().insert(token);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str) -> ApiToken {
        ApiToken {
            id: uuid::Uuid::now_v7(),
            name: name.to_owned(),
            scope: TokenScope::Admin,
            created_at: chrono::Utc::now(),
            last_used_at: None,
        }
    }

    fn key(n: usize) -> [u8; 32] {
        Sha256::digest(n.to_string().as_bytes()).into()
    }

    #[test]
    fn a_token_is_taken_for_its_second_then_asked_for_again() {
        let verified = Verified::default();
        let now = Instant::now();
        verified.remember(key(1), Some(&token("ci")), now);
        assert_eq!(
            verified.fresh(&key(1), now).map(|t| t.name),
            Some("ci".into())
        );
        assert!(verified.fresh(&key(1), now + VERIFIED_FOR).is_none());
        assert!(
            verified.fresh(&key(2), now).is_none(),
            "only what was verified"
        );
        // The store said no: what was remembered goes.
        verified.remember(key(1), None, now);
        assert!(verified.fresh(&key(1), now).is_none());
        verified.remember(key(1), Some(&token("ci")), now);
        verified.forget();
        assert!(verified.fresh(&key(1), now).is_none());
    }

    #[test]
    fn it_remembers_at_most_its_bound_and_the_newest_is_kept() {
        let verified = Verified::default();
        let now = Instant::now();
        for n in 0..REMEMBERED * 3 {
            verified.remember(key(n), Some(&token("many")), now);
            let held = verified.tokens.lock().expect("lock").len();
            assert!(held <= REMEMBERED, "{held} remembered");
            assert!(verified.fresh(&key(n), now).is_some(), "the newest, {n}");
        }
    }
}
