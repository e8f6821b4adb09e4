//! Inbound webhooks: `POST /hooks/{token}` enqueues the job whose secret URL it is, without an
//! API token. The request body is the payload (JSON as is, any other text as a JSON string);
//! a job whose webhook has a signing key takes only deliveries signed with it, in GitHub's
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` form. An `Idempotency-Key` (or
//! GitHub's `X-GitHub-Delivery`) header is the execution's idempotency key, so a delivery the
//! sender repeats runs once.
//!
//! The URL is a credential: its token is shown once, when it is made or rotated
//! (`POST /api/v1/jobs/{name}/webhook`), and stored only as a hash.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use hmac::{Hmac, Mac};
use panda_core::Trigger;
use panda_core::api::{Delivered, ErrorBody, WebhookView};
use panda_store::{NewExecution, SigningKey, StoreError, Webhook};
use serde::{Deserialize, Deserializer};
use sha2::Sha256;
use utoipa::ToSchema;

use crate::jobs::no_job;
use crate::{AppState, Failure};

/// Where deliveries go, under the server's root.
const HOOKS: &str = "/hooks";

/// The header a signed delivery carries.
const SIGNATURE: &str = "x-hub-signature-256";

/// `POST /api/v1/jobs/{name}/webhook`: make or rotate the URL.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateRequest {
    /// The key deliveries must be signed with (HMAC-SHA256, GitHub's `X-Hub-Signature-256`);
    /// `null` to take unsigned deliveries; left out, the current key stays.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1)]
    secret: Option<Option<String>>,
}

/// A field that is present, even as `null`, is `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn view(webhook: &Webhook, token: Option<&str>, headers: &HeaderMap) -> WebhookView {
    let path = format!(
        "{HOOKS}/{}",
        token.unwrap_or(panda_core::api::SECRET_PLACEHOLDER)
    );
    let url = token.and_then(|_| {
        let host = headers.get(header::HOST)?.to_str().ok()?;
        Some(format!("http://{host}{path}"))
    });
    WebhookView {
        path,
        url,
        signed: webhook.signed,
        created_at: webhook.created_at,
    }
}

async fn store_failure(state: &AppState, name: &str, err: StoreError) -> Failure {
    match err {
        StoreError::NotFound { what } if what.starts_with("job") => no_job(state, name).await,
        StoreError::NotFound { .. } => Failure::not_found(format!("job {name} has no webhook"))
            .hint(format!(
                "give it one with `panda job webhook {name} --rotate`"
            )),
        err => err.into(),
    }
}

#[utoipa::path(
    post,
    path = "/jobs/{name}/webhook",
    tag = "webhooks",
    summary = "Give a job a new webhook URL (POST /hooks/<token>), replacing any earlier one",
    description = "The answer holds the URL's token: it is shown this once. The earlier URL stops working at once.",
    params(("name" = String, Path, description = "The job's name")),
    request_body(content = RotateRequest, description = "Optional"),
    responses(
        (status = 201, description = "The new URL", body = WebhookView),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn rotate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<WebhookView>), Failure> {
    let request: RotateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| {
            Failure::invalid(format!("the request body: {err}"))
                .hint("send {\"secret\": \"...\"}, {\"secret\": null} or nothing")
        })?
    };
    let key = match request.secret {
        None => SigningKey::Keep,
        Some(None) => SigningKey::None,
        Some(Some(secret)) => SigningKey::Set(secret),
    };
    match state
        .store
        .webhook_rotate(&name, key, state.clock.now())
        .await
    {
        Ok((token, webhook)) => Ok((
            StatusCode::CREATED,
            Json(view(&webhook, Some(&token), &headers)),
        )),
        Err(err) => Err(store_failure(&state, &name, err).await),
    }
}

#[utoipa::path(
    get,
    path = "/jobs/{name}/webhook",
    tag = "webhooks",
    summary = "A job's webhook, its token redacted",
    params(("name" = String, Path, description = "The job's name")),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<WebhookView>, Failure> {
    match state.store.webhook_get(&name).await {
        Ok(Some(webhook)) => Ok(Json(view(&webhook, None, &headers))),
        Ok(None) => Err(store_failure(&state, &name, StoreError::not_found("webhook")).await),
        Err(err) => Err(store_failure(&state, &name, err).await),
    }
}

#[utoipa::path(
    delete,
    path = "/jobs/{name}/webhook",
    tag = "webhooks",
    summary = "Remove a job's webhook; its URL stops working",
    params(("name" = String, Path, description = "The job's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    match state.store.webhook_delete(&name).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(err) => Err(store_failure(&state, &name, err).await),
    }
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `key`, compared in
/// constant time.
fn signature_matches(key: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_digest) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(digest) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&digest).is_ok()
}

/// The payload a delivery's body makes: JSON as is, other UTF-8 text as a JSON string,
/// nothing for an empty body.
fn payload_of(body: &[u8]) -> Result<Option<serde_json::Value>, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if let Ok(json) = serde_json::from_slice(body) {
        return Ok(Some(json));
    }
    match std::str::from_utf8(body) {
        Ok(text) => Ok(Some(serde_json::Value::String(text.to_owned()))),
        Err(_) => Err(Failure::invalid("the body is neither JSON nor UTF-8 text")
            .hint("send JSON, a form, or other text; binary bodies are not taken")),
    }
}

/// `POST /hooks/{token}`: a delivery. 202 with the execution's id; 404 for a token that opens
/// nothing; 401 for a missing or wrong signature, and nothing is queued.
#[utoipa::path(
    post,
    path = "/hooks/{token}",
    tag = "webhooks",
    summary = "Deliver to a job's webhook: queue one execution with the body as its payload",
    description = "Outside `/api/v1`, with no API token: the URL's token is the credential (`panda job webhook NAME` shows it). A JSON body is the payload as it is; other text is a JSON string. An `Idempotency-Key` or `X-GitHub-Delivery` header makes a redelivery return the first execution. A webhook with a key takes only bodies signed with it (`X-Hub-Signature-256: sha256=<hex>`).",
    params(("token" = String, Path, description = "The webhook URL's token")),
    request_body(content = String, description = "The payload: JSON, a form, or other text", content_type = "application/json"),
    responses(
        (status = 202, description = "Queued (or, for a repeated idempotency key, the first execution)", body = Delivered),
        (status = 401, description = "A signature is missing or does not match; nothing is queued", body = ErrorBody),
        (status = 404, description = "No webhook has this URL", body = ErrorBody),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    ),
    security()
)]
pub(crate) async fn deliver(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Delivered>), Failure> {
    let body = body.map_err(|err| Failure::invalid(format!("the request body: {err}")))?;
    let Some(target) = state.store.webhook_find(&token).await? else {
        return Err(Failure::not_found("no webhook has this URL").hint(
            "the URL may have been rotated or removed; its job's owner can show the new one with `panda job webhook NAME --rotate`",
        ));
    };
    if let Some(key) = &target.secret {
        let Some(signature) = headers.get(SIGNATURE).and_then(|v| v.to_str().ok()) else {
            return Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                "signature_required",
                "this webhook takes signed deliveries only; the X-Hub-Signature-256 header is missing",
            )
            .hint("sign the body with HMAC-SHA256 under the webhook's key and send X-Hub-Signature-256: sha256=<hex>"));
        };
        if !signature_matches(key, &body, signature) {
            return Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                "the X-Hub-Signature-256 header does not match the body under the webhook's key",
            )
            .hint("sign the exact body bytes with the key given to `--webhook-secret`; nothing was enqueued"));
        }
    }
    let idempotency_key = ["idempotency-key", "x-github-delivery"]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let new = NewExecution {
        job: target.job.clone(),
        trigger: Trigger::Api,
        payload: payload_of(&body)?,
        env: std::collections::BTreeMap::new(),
        idempotency_key,
        run_at: None,
        priority: None,
        scheduled_at: None,
        force: false,
    };
    let enqueued = state
        .store
        .execution_enqueue(&new, state.clock.now())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Delivered {
            execution_id: enqueued.execution.id,
            created: enqueued.created,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_matches_only_its_body_and_key() {
        // GitHub's documented example: key "It's a Secret to Everybody", body "Hello, World!".
        let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World!",
            signature
        ));
        assert!(!signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World?",
            signature
        ));
        assert!(!signature_matches(
            "another key",
            b"Hello, World!",
            signature
        ));
        assert!(!signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World!",
            "sha1=00"
        ));
        assert!(!signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World!",
            "sha256=zz"
        ));
    }

    #[test]
    fn a_body_becomes_the_payload() {
        assert_eq!(payload_of(b"").expect("empty"), None);
        assert_eq!(
            payload_of(br#"{"a": 1}"#).expect("json"),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(
            payload_of(b"a=1&b=2").expect("a form"),
            Some(serde_json::json!("a=1&b=2"))
        );
        assert!(payload_of(&[0xff, 0xfe]).is_err());
    }
}
