//! The dashboard's session: the API token itself, in a cookie the page's scripts cannot read
//! (`HttpOnly`) and other sites cannot make the browser send (`SameSite=Strict`).
//!
//! The token is checked against the store on every request, so revoking it ends the session at
//! once. Every form that changes something carries a CSRF token derived from the session's
//! secret (SHA-256 over a fixed label and the secret), which a page of another origin cannot
//! compute; it is compared in constant time.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use panda_store::{ApiToken, TokenScope};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Page;
use crate::AppState;

/// The cookie's name.
pub(crate) const COOKIE: &str = "panda_session";

/// Who is looking at a page.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The token the session was opened with.
    pub token: ApiToken,
    /// The CSRF token every mutating form carries.
    pub csrf: String,
}

impl Session {
    /// Whether this session may change things (and so sees the buttons that do).
    pub(crate) fn can_write(&self) -> bool {
        self.token.scope == TokenScope::Admin
    }

    /// Checks a form's CSRF token.
    pub(crate) fn check(&self, csrf: &str) -> Result<(), Page> {
        if bool::from(self.csrf.as_bytes().ct_eq(csrf.as_bytes())) {
            Ok(())
        } else {
            Err(Page::error(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this dashboard.",
                "Go back, reload the page and try again.",
            ))
        }
    }
}

/// The CSRF token of a session secret.
pub(crate) fn csrf_of(secret: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"panda dashboard csrf\0");
    hash.update(secret.as_bytes());
    hex::encode(hash.finalize())
}

/// The session secret from a request's cookies.
fn secret_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The `Set-Cookie` value that opens a session.
pub(crate) fn open_cookie(secret: &str) -> String {
    format!("{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000")
}

/// The `Set-Cookie` value that ends one.
pub(crate) fn close_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Lets a request through with its [`Session`], or sends a reader without one to the login
/// page. A read-only session may read; anything but `GET` needs an admin token (403).
pub(crate) async fn require_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(secret) = secret_of(request.headers()).map(str::to_owned) else {
        return to_login(&request);
    };
    let token = match state.verify_token(&secret).await {
        Ok(Some(token)) => token,
        Ok(None) => {
            let mut response = to_login(&request);
            if let Ok(value) = close_cookie().parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            return response;
        }
        Err(err) => return Page::from(crate::Failure::from(err)).into_response(),
    };
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reads && token.scope != TokenScope::Admin {
        return Page::error(
            StatusCode::FORBIDDEN,
            &format!("Token {:?} is read-only.", token.name),
            "Log in with an admin token to change things.",
        )
        .into_response();
    }
    request.extensions_mut().insert(Session {
        csrf: csrf_of(&secret),
        token,
    });
    next.run(request).await
}

/// Where a request without a session goes: the login page for a page, 401 for the rest.
fn to_login(request: &Request) -> Response {
    if *request.method() == Method::GET {
        Redirect::to("/login").into_response()
    } else {
        Page::error(
            StatusCode::UNAUTHORIZED,
            "You are not logged in (or your token was revoked).",
            "Log in again.",
        )
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "theme=dark; panda_session=panda_abc ; x=1"
                .parse()
                .expect("a header value"),
        );
        assert_eq!(secret_of(&headers), Some("panda_abc"));
        headers.insert(header::COOKIE, "panda_session=".parse().expect("a value"));
        assert_eq!(secret_of(&headers), None);
    }

    #[test]
    fn csrf_tokens_differ_per_secret_and_are_not_the_secret() {
        let a = csrf_of("panda_a");
        assert_ne!(a, csrf_of("panda_b"));
        assert!(!a.contains("panda_a"));
        assert_eq!(a, csrf_of("panda_a"));
    }
}
