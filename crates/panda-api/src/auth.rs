//! Bearer tokens: every `/api` call carries one; reads need any live token, writes an admin one.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use panda_store::TokenScope;

use crate::{AppState, Failure};

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
    let token = state
        .store
        .token_verify(secret, state.clock.now())
        .await?
        .ok_or_else(|| {
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
