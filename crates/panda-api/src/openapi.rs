//! The OpenAPI 3.1 document of `/api/v1`, generated from the handlers' `#[utoipa::path]`
//! attributes and the request and response types' `ToSchema` derives, so it cannot drift from
//! the code that serves it.

use std::sync::LazyLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi};

use crate::{alerts, executions, jobs, monitors, queues, services, tokens, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Panda API",
        version = "1",
        description = "Background jobs, cron and long-running services. Every path needs `Authorization: Bearer <token>`; a read-only token may only GET."
    ),
    servers((url = "/api/v1")),
    security(("bearer" = [])),
    modifiers(&Bearer, &JobSpecOpen, &OutsideApi),
    paths(
        jobs::list,
        jobs::create,
        jobs::get,
        jobs::update,
        jobs::delete,
        jobs::suspend,
        jobs::resume,
        executions::list_of_job,
        executions::trigger,
        executions::batch,
        executions::latest,
        jobs::slots,
        jobs::followers,
        webhooks::rotate,
        webhooks::get,
        webhooks::delete,
        monitors::rotate,
        monitors::get,
        monitors::success,
        monitors::signal,
        webhooks::deliver,
        executions::get,
        executions::cancel,
        executions::logs,
        executions::stream,
        services::list,
        services::create,
        services::get,
        services::update,
        services::delete,
        services::scale,
        services::suspend,
        services::resume,
        services::restart,
        services::rollback,
        services::revisions,
        executions::dead_letters,
        executions::dlq_retry,
        executions::dlq_discard,
        tokens::list,
        tokens::create,
        tokens::revoke,
        queues::list,
        queues::pause,
        queues::resume,
        alerts::list,
    )
)]
struct ApiDoc;

/// The `bearer` security scheme every operation refers to.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `JobSpec` refuses unknown fields, but a `Job` is a `JobSpec` flattened with its id and times
/// (the job routes answer one, and take one back), so the spec's schema must not forbid other
/// properties: the server's own check names an unknown field.
struct JobSpecOpen;

impl Modify for JobSpecOpen {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut()
            && let Some(RefOr::T(Schema::Object(spec))) = components.schemas.get_mut("JobSpec")
        {
            spec.additional_properties = None;
        }
    }
}

/// The URLs a job or a monitor hands out (`/hooks/{token}`, `/ping/{token}`) live at the
/// server's root, outside `/api/v1`, and take no API token: their own token is the credential.
/// Their path items say so with a server of their own and an empty security requirement.
struct OutsideApi;

/// The paths served outside `/api/v1`.
pub const OUTSIDE_API: [&str; 2] = ["/hooks/", "/ping/"];

impl Modify for OutsideApi {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            if OUTSIDE_API.iter().any(|prefix| path.starts_with(prefix)) {
                item.servers = Some(vec![utoipa::openapi::server::Server::new("/")]);
            }
        }
    }
}

/// The OpenAPI 3.1 document of `/api/v1`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as served, made once.
pub(crate) static JSON: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"the OpenAPI document: {err}\"}}"))
});
