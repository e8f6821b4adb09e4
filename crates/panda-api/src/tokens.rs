//! API tokens: the secret is shown once, at creation; the store keeps only its hash.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use panda_core::api::ErrorBody;
use panda_store::{ApiToken, TokenScope};
use serde::{Deserialize, Serialize};

use crate::{AppState, Failure};

/// A token as the API shows it (never its secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Token)]
pub(crate) struct TokenView {
    /// Its name.
    name: String,
    /// What it may do: `admin` everything, `read_only` reads only.
    #[schema(schema_with = scope_schema)]
    scope: TokenScope,
    /// When it was created.
    created_at: DateTime<Utc>,
    /// When it was last used, if ever.
    last_used_at: Option<DateTime<Utc>>,
}

fn scope_schema() -> utoipa::openapi::schema::Schema {
    panda_core::api::schema::one_of(
        &[TokenScope::Admin.as_str(), TokenScope::ReadOnly.as_str()],
        "`admin` may do everything, `read_only` may only GET",
    )
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

/// A token to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    /// Its name, unique among live tokens: named like a job.
    #[schema(schema_with = token_name_schema)]
    name: String,
    /// What it may do; `admin` when absent.
    #[serde(default = "admin")]
    #[schema(schema_with = scope_schema)]
    scope: TokenScope,
}

fn token_name_schema() -> utoipa::openapi::schema::Schema {
    panda_core::api::schema::name("Its name, unique among live tokens: named like a job")
}

fn admin() -> TokenScope {
    TokenScope::Admin
}

/// The one time a token's secret is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedToken {
    #[serde(flatten)]
    token: TokenView,
    /// The secret to send as `Authorization: Bearer <secret>`; shown this once.
    secret: String,
}

#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tokens",
    summary = "Create a token; its secret is in this answer only",
    request_body = NewToken,
    responses(
        (status = 201, description = "Created", body = CreatedToken),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
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

#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tokens",
    summary = "API tokens (never their secrets)",
    responses(
        (status = 200, description = "Tokens", body = Vec<TokenView>),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<TokenView>>, Failure> {
    let tokens = state.store.token_list().await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

#[utoipa::path(
    delete,
    path = "/tokens/{name}",
    tag = "tokens",
    summary = "Revoke a token; it stops working at once",
    params(("name" = String, Path, description = "The token's name")),
    responses(
        (status = 204, description = "Revoked"),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    state.store.token_revoke(&name, state.clock.now()).await?;
    state.verified.forget();
    Ok(StatusCode::NO_CONTENT)
}
