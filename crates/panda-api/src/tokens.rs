//! API tokens: the secret is shown once, at creation; the store keeps only its hash.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use panda_store::{ApiToken, TokenScope};
use serde::{Deserialize, Serialize};

use crate::{AppState, Failure};

/// A token as the API shows it (never its secret).
#[derive(Debug, Serialize)]
pub(crate) struct TokenView {
    name: String,
    scope: TokenScope,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiToken> for TokenView {
    fn from(token: ApiToken) -> Self {
        Self {
            name: token.name,
            scope: token.scope,
            created_at: token.created_at,
            last_used_at: token.last_used_at,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewToken {
    name: String,
    #[serde(default = "admin")]
    scope: TokenScope,
}

fn admin() -> TokenScope {
    TokenScope::Admin
}

/// The one time a token's secret is shown.
#[derive(Debug, Serialize)]
pub(crate) struct CreatedToken {
    #[serde(flatten)]
    token: TokenView,
    secret: String,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    request: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), Failure> {
    let Json(request) = request?;
    panda_core::validate_name("token", &request.name)
        .map_err(|err| Failure::invalid(err.to_string()))?;
    let (token, secret) = state
        .store
        .token_create(&request.name, request.scope, state.clock.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: token.into(),
            secret,
        }),
    ))
}

pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<TokenView>>, Failure> {
    let tokens = state.store.token_list().await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    state.store.token_revoke(&name, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
