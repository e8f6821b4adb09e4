//! Real responses of every kind validate against their operation's schema in the served
//! OpenAPI document, made strict for the test (an object may hold only the properties its
//! schema names), so the document cannot drift from what the server answers.

use serde_json::{Map, Value, json};

mod support;

/// The served document, and the calls checked against it.
struct Checked {
    url: String,
    admin: String,
    http: reqwest::Client,
    doc: Value,
    _served: support::Served,
}

impl Checked {
    async fn start() -> Self {
        let served = support::serve().await;
        let http = reqwest::Client::new();
        let doc: Value = http
            .get(format!("{}/api/v1/openapi.json", served.url))
            .send()
            .await
            .expect("the document")
            .json()
            .await
            .expect("JSON");
        Self {
            url: served.url.clone(),
            admin: served.admin.clone(),
            http,
            doc,
            _served: served,
        }
    }

    /// Calls `method path` (`template` is its documented path) and checks the answer against
    /// the document; returns the status and body.
    async fn call(
        &self,
        method: &str,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let verb = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        // The URLs jobs and monitors hand out are served at the root, as their path items say.
        let outside = ["/hooks/", "/ping/"]
            .iter()
            .any(|p| template.starts_with(p));
        let base = if outside {
            assert_eq!(
                self.doc["paths"][template]["servers"],
                json!([{"url": "/"}]),
                "{template} says it is served at the root"
            );
            self.url.clone()
        } else {
            format!("{}/api/v1", self.url)
        };
        let mut request = self.http.request(verb, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let operation = &self.doc["paths"][template][method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {template} is not documented"
        );
        let responses = &operation["responses"];
        let documented = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .unwrap_or_else(|| panic!("{method} {path}: status {status} is not documented"));
        match documented["content"]["application/json"].get("schema") {
            Some(schema) => {
                let value: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("{method} {path} ({status}): not JSON: {text}"));
                self.validate(schema, &value, &format!("{method} {path} ({status})"));
                (status, value)
            }
            None => {
                assert!(
                    text.is_empty(),
                    "{method} {path} ({status}) documents no JSON body but sent {text}"
                );
                (status, Value::Null)
            }
        }
    }

    #[track_caller]
    fn validate(&self, schema: &Value, value: &Value, what: &str) {
        let strict = strict(schema, &self.doc["components"]["schemas"]);
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&strict)
            .unwrap_or_else(|err| panic!("{what}: the schema does not compile: {err}"));
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|err| format!("{} at {}", err, err.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what} does not match the document:\n{}\nanswer: {value:#}",
            errors.join("\n")
        );
    }
}

/// `schema` with every `$ref` inlined and every `allOf` of objects merged into one, each object
/// closed to properties it does not name: a response field the document lacks (renamed, added)
/// fails, not only a missing required one.
fn strict(schema: &Value, components: &Value) -> Value {
    let Some(map) = schema.as_object() else {
        return schema.clone();
    };
    if let Some(Value::String(reference)) = map.get("$ref") {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("an unexpected reference {reference}"));
        return strict(&components[name], components);
    }
    let mut out: Map<String, Value> = map
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Value::Array(items) => {
                    Value::Array(items.iter().map(|item| strict(item, components)).collect())
                }
                Value::Object(_) if key != "properties" => strict(value, components),
                Value::Object(properties) => Value::Object(
                    properties
                        .iter()
                        .map(|(name, s)| (name.clone(), strict(s, components)))
                        .collect(),
                ),
                other => other.clone(),
            };
            (key.clone(), value)
        })
        .collect();
    if let Some(Value::Array(parts)) = out.get("allOf").cloned()
        && parts.iter().all(|part| part.get("properties").is_some())
    {
        out.remove("allOf");
        let mut properties = Map::new();
        let mut required = Vec::new();
        for part in parts {
            properties.extend(part["properties"].as_object().cloned().unwrap_or_default());
            required.extend(part["required"].as_array().cloned().unwrap_or_default());
        }
        out.insert("type".into(), json!("object"));
        out.insert("properties".into(), Value::Object(properties));
        out.insert("required".into(), Value::Array(required));
    }
    if out.contains_key("properties") && !out.contains_key("additionalProperties") {
        out.insert("additionalProperties".into(), json!(false));
    }
    Value::Object(out)
}

fn job(name: &str) -> Value {
    json!({
        "name": name,
        "runtime": {"kind": "image", "image": "busybox:latest", "command": ["true"]},
        "retry": {"max_attempts": 2, "backoff_base_ms": 1000, "backoff_cap_ms": 5000},
        "env": {"MODE": "full"},
        "secret_env": {"API_KEY": "s3cr3t"},
        "limits": {"memory_bytes": 1_000_000, "cpus": 0.5},
        "labels": {"team": "data"},
        "keep": 10,
        "max_age_ms": 86_400_000,
        "schedule": {"cron": "0 5 * * *", "timezone": "Europe/Paris", "catch_up": "all"},
        "alerts": {
            "webhooks": ["https://alerts.example/hook?token=x"],
            "slack": ["https://hooks.slack.com/services/T/B/X"],
            "after_failures": 2,
            "running_longer_than_ms": 60_000,
            "late_after_ms": 5_000,
        },
    })
}

#[tokio::test]
async fn every_kind_of_response_matches_the_document() {
    let api = Checked::start().await;
    let admin = Some(api.admin.as_str());

    // Jobs: a cronjob with every field, and a triggered job with the fewest.
    let (status, _) = api
        .call("POST", "/jobs", "/jobs", admin, Some(job("nightly")))
        .await;
    assert_eq!(status, 201);
    let plain = json!({
        "name": "sync",
        "runtime": {"kind": "process", "argv": ["true"]},
        "retry": {"max_attempts": 1, "backoff_base_ms": 10, "backoff_cap_ms": 10},
        "concurrency": "allow",
        "max_running": 2,
    });
    let (status, _) = api
        .call("POST", "/jobs", "/jobs", admin, Some(plain.clone()))
        .await;
    assert_eq!(status, 201);
    for kind in ["", "?kind=scheduled", "?kind=triggered"] {
        api.call("GET", "/jobs", &format!("/jobs{kind}"), admin, None)
            .await;
    }
    api.call("GET", "/jobs/{name}", "/jobs/nightly", admin, None)
        .await;
    let mut changed = job("nightly");
    changed["schedule"]["cron"] = json!("0 6 * * *");
    let (status, _) = api
        .call("PUT", "/jobs/{name}", "/jobs/nightly", admin, Some(changed))
        .await;
    assert_eq!(status, 200);
    for action in ["suspend", "resume"] {
        let (status, _) = api
            .call(
                "POST",
                &format!("/jobs/{{name}}/{action}"),
                &format!("/jobs/nightly/{action}"),
                admin,
                None,
            )
            .await;
        assert_eq!(status, 200);
    }
    api.call(
        "GET",
        "/jobs/{name}/slots",
        "/jobs/nightly/slots",
        admin,
        None,
    )
    .await;

    // A chain: a job that follows two others, its followers listed, a link refused.
    let mut chained = plain.clone();
    chained["name"] = json!("report");
    chained["after"] = json!(["sync", "nightly:any"]);
    let (status, created) = api
        .call("POST", "/jobs", "/jobs", admin, Some(chained))
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["after"], json!(["sync", "nightly:any"]));
    api.call("GET", "/jobs/{name}", "/jobs/report", admin, None)
        .await;
    let (status, followers) = api
        .call(
            "GET",
            "/jobs/{name}/followers",
            "/jobs/nightly/followers",
            admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(followers, json!([{"job": "report", "on": "any"}]));
    let mut unknown = plain.clone();
    unknown["name"] = json!("orphan");
    unknown["after"] = json!(["nowhere"]);
    let (status, refused) = api
        .call("POST", "/jobs", "/jobs", admin, Some(unknown))
        .await;
    assert_eq!(status, 400);
    assert!(
        refused["error"]["hint"].as_str().is_some(),
        "a hint: {refused}"
    );
    let (status, _) = api
        .call("DELETE", "/jobs/{name}", "/jobs/sync", admin, None)
        .await;
    assert_eq!(status, 409, "sync is followed");

    // Monitors: created with their ping URL (shown once), listed, the URL read (redacted)
    // and rotated; a job that is not a monitor has none.
    let monitor = json!({
        "name": "nightly-backup",
        "runtime": {"kind": "ping"},
        "schedule": {"cron": "0 3 * * *"},
        "monitor": {"grace_ms": 1_800_000},
    });
    let (status, created) = api
        .call("POST", "/jobs", "/jobs", admin, Some(monitor))
        .await;
    assert_eq!(status, 201);
    let path = created["ping"]["path"].as_str().expect("a ping path");
    assert!(path.starts_with("/ping/png_"), "{created}");
    api.call("GET", "/jobs", "/jobs?kind=monitor", admin, None)
        .await;
    let (status, shown) = api
        .call(
            "GET",
            "/jobs/{name}/ping-url",
            "/jobs/nightly-backup/ping-url",
            admin,
            None,
        )
        .await;
    assert_eq!(
        (status, shown["path"].as_str()),
        (200, Some("/ping/********"))
    );
    let (status, rotated) = api
        .call(
            "POST",
            "/jobs/{name}/ping-url",
            "/jobs/nightly-backup/ping-url",
            admin,
            None,
        )
        .await;
    assert_eq!(status, 201);
    assert_ne!(rotated["path"], created["ping"]["path"]);
    // Its pings, with no API token: a start, then a success; an old or unknown URL, or an
    // unknown ping, is a documented 404.
    let ping = rotated["path"].as_str().expect("a ping path");
    let (status, started) = api
        .call(
            "POST",
            "/ping/{token}/{what}",
            &format!("{ping}/start"),
            None,
            None,
        )
        .await;
    assert_eq!((status, started["status"].as_str()), (200, Some("running")));
    let (status, ended) = api.call("GET", "/ping/{token}", ping, None, None).await;
    assert_eq!((status, ended["status"].as_str()), (200, Some("succeeded")));
    let old = created["ping"]["path"].as_str().expect("the old path");
    let (status, _) = api.call("POST", "/ping/{token}", old, None, None).await;
    assert_eq!(status, 404, "a rotated URL opens nothing");
    let (status, _) = api
        .call(
            "POST",
            "/ping/{token}/{what}",
            &format!("{ping}/finish"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .call("POST", "/hooks/{token}", "/hooks/whk_nothing", None, None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .call(
            "POST",
            "/jobs/{name}/ping-url",
            "/jobs/sync/ping-url",
            admin,
            None,
        )
        .await;
    assert_eq!(status, 400);

    // Executions: triggered (new, then the same key again), listed, read, cancelled.
    let trigger = json!({
        "trigger": "manual",
        "payload": {"id": 42},
        "env": {"EXTRA": "1"},
        "idempotency_key": "k-1",
        "priority": 5,
        "run_at": "2030-01-01T00:00:00Z",
    });
    let (status, first) = api
        .call(
            "POST",
            "/jobs/{name}/executions",
            "/jobs/sync/executions",
            admin,
            Some(trigger.clone()),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = api
        .call(
            "POST",
            "/jobs/{name}/executions",
            "/jobs/sync/executions",
            admin,
            Some(trigger),
        )
        .await;
    assert_eq!(status, 200);
    let (status, backfill) = api
        .call(
            "POST",
            "/jobs/{name}/executions",
            "/jobs/nightly/executions",
            admin,
            Some(json!({"scheduled_for": "2020-01-01T05:00:00Z", "force": true})),
        )
        .await;
    assert_eq!(status, 201);
    let id = first["execution"]["id"].as_str().expect("an id").to_owned();
    for query in ["", "?status=queued,%20running&trigger=manual&limit=1"] {
        api.call(
            "GET",
            "/jobs/{name}/executions",
            &format!("/jobs/sync/executions{query}"),
            admin,
            None,
        )
        .await;
    }
    api.call(
        "GET",
        "/jobs/{name}/executions/latest",
        "/jobs/nightly/executions/latest",
        admin,
        None,
    )
    .await;
    api.call(
        "GET",
        "/executions/{id}",
        &format!("/executions/{id}"),
        admin,
        None,
    )
    .await;
    for query in ["", "?tail=5", "?after=0&limit=10"] {
        api.call(
            "GET",
            "/executions/{id}/logs",
            &format!("/executions/{id}/logs{query}"),
            admin,
            None,
        )
        .await;
    }
    let (status, cancelled) = api
        .call(
            "POST",
            "/executions/{id}/cancel",
            &format!("/executions/{id}/cancel"),
            admin,
            None,
        )
        .await;
    assert_eq!((status, &cancelled["status"]), (200, &json!("cancelled")));
    let backfill_id = backfill["execution"]["id"].as_str().expect("an id");
    api.call(
        "GET",
        "/executions/{id}",
        &format!("/executions/{backfill_id}"),
        admin,
        None,
    )
    .await;
    api.call("GET", "/dlq", "/dlq?job=sync&limit=5", admin, None)
        .await;
    let (status, _) = api
        .call(
            "POST",
            "/dlq/{id}/retry",
            &format!("/dlq/{id}/retry"),
            admin,
            None,
        )
        .await;
    assert!(
        (400..500).contains(&status),
        "a cancelled run is not dead: {status}"
    );

    // Tokens and alerts.
    let (status, _) = api
        .call(
            "POST",
            "/tokens",
            "/tokens",
            admin,
            Some(json!({"name": "ci", "scope": "read_only"})),
        )
        .await;
    assert_eq!(status, 201);
    api.call("GET", "/tokens", "/tokens", admin, None).await;
    let (status, _) = api
        .call("DELETE", "/tokens/{name}", "/tokens/ci", admin, None)
        .await;
    assert_eq!(status, 204);
    api.call("GET", "/alerts", "/alerts?job=nightly&limit=5", admin, None)
        .await;

    // Errors: 400, 401, 404, 409, each in the one documented shape.
    let errors = [
        (
            "POST",
            "/jobs",
            "/jobs".to_owned(),
            json!({"name": "Bad"}),
            400,
        ),
        ("POST", "/jobs", "/jobs".to_owned(), plain.clone(), 409),
        (
            "GET",
            "/executions/{id}",
            "/executions/not-an-id".to_owned(),
            Value::Null,
            400,
        ),
        (
            "GET",
            "/jobs/{name}",
            "/jobs/nightlly".to_owned(),
            Value::Null,
            404,
        ),
        (
            "POST",
            "/jobs/{name}/suspend",
            "/jobs/sync/suspend".to_owned(),
            Value::Null,
            409,
        ),
        (
            "GET",
            "/jobs",
            "/jobs?kind=nope".to_owned(),
            Value::Null,
            400,
        ),
    ];
    for (method, template, path, body, expected) in errors {
        let body = (!body.is_null()).then_some(body);
        let (status, answer) = api.call(method, template, &path, admin, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
    }
    let (status, _) = api.call("GET", "/jobs", "/jobs", None, None).await;
    assert_eq!(status, 401);

    // Deletes answer no body: the follower first, then what it followed.
    for name in ["report", "sync"] {
        let (status, _) = api
            .call(
                "DELETE",
                "/jobs/{name}",
                &format!("/jobs/{name}"),
                admin,
                None,
            )
            .await;
        assert_eq!(status, 204, "{name}");
    }
}

/// A response that breaks the schema is caught: the strict check is not vacuous.
#[tokio::test]
async fn a_response_the_document_does_not_describe_fails_the_check() {
    let api = Checked::start().await;
    let token = json!({"$ref": "#/components/schemas/Token"});
    let good = json!({
        "name": "ci",
        "scope": "admin",
        "created_at": "2026-01-01T00:00:00Z",
        "last_used_at": null,
    });
    api.validate(&token, &good, "a token");
    for bad in [
        json!({"name": "ci", "scope": "admin", "created_at": "2026-01-01T00:00:00Z", "last_use": null}),
        json!({"name": "ci", "scope": "owner", "created_at": "2026-01-01T00:00:00Z"}),
        json!({"name": "ci", "scope": "admin", "created_at": "yesterday"}),
    ] {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            api.validate(&token, &bad, "a bad token");
        }));
        assert!(caught.is_err(), "{bad} passed");
    }
}

#[tokio::test]
async fn every_service_response_matches_the_document() {
    let api = Checked::start().await;
    let admin = Some(api.admin.as_str());
    let full = json!({
        "name": "events",
        "runtime": {"kind": "image", "image": "busybox:latest", "command": ["sleep", "1000"]},
        "env": {"MODE": "full"},
        "secret_env": {"API_KEY": "s3cr3t"},
        "labels": {"team": "data"},
        "alerts": {"webhooks": ["https://alerts.example/hook?token=x"]},
        "service": {
            "replicas": 2,
            "restart": "on_failure",
            "restart_delay_ms": 500,
            "restart_delay_max_ms": 60_000,
            "healthy_after_ms": 60_000,
            "stop_signal": "SIGINT",
            "stop_timeout_ms": 5_000,
            "health": {
                "probe": {"kind": "command", "command": "test -f /tmp/healthy"},
                "interval_ms": 2_000,
                "timeout_ms": 1_000,
                "retries": 2,
                "start_period_ms": 1_000,
            },
            "rollout": {
                "max_parallel": 1,
                "min_healthy_ms": 1_000,
                "healthy_deadline_ms": 60_000,
                "order": "stop_first",
            },
            "log_keep_bytes": 1_048_576,
        },
    });
    let (status, _) = api
        .call("POST", "/services", "/services", admin, Some(full.clone()))
        .await;
    assert_eq!(status, 201);
    let smallest = json!({"name": "tiny", "runtime": {"kind": "process", "argv": ["sleep", "9"]}});
    let (status, _) = api
        .call("POST", "/services", "/services", admin, Some(smallest))
        .await;
    assert_eq!(status, 201);
    // The instances queued, so that they are shown with their executions.
    api._served
        .test
        .store
        .service_reconcile(chrono::Utc::now())
        .await
        .expect("reconcile");
    let (_, listed) = api.call("GET", "/services", "/services", admin, None).await;
    assert!(
        listed[0]["instances"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "{listed}"
    );
    api.call("GET", "/services/{name}", "/services/events", admin, None)
        .await;
    let (status, _) = api
        .call(
            "POST",
            "/services/{name}/scale",
            "/services/events/scale",
            admin,
            Some(json!({"replicas": 3})),
        )
        .await;
    assert_eq!(status, 200);
    for action in ["suspend", "resume", "restart"] {
        api.call(
            "POST",
            &format!("/services/{{name}}/{action}"),
            &format!("/services/tiny/{action}"),
            admin,
            None,
        )
        .await;
    }
    let mut changed = full;
    changed["runtime"]["image"] = json!("busybox:1.37");
    let (status, _) = api
        .call(
            "PUT",
            "/services/{name}",
            "/services/events",
            admin,
            Some(changed),
        )
        .await;
    assert_eq!(status, 200);
    api.call(
        "GET",
        "/services/{name}/revisions",
        "/services/events/revisions",
        admin,
        None,
    )
    .await;
    // A rollout progresses: a rollback waits (409), in the one error shape.
    let (status, _) = api
        .call(
            "POST",
            "/services/{name}/rollback",
            "/services/events/rollback",
            admin,
            None,
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = api
        .call(
            "POST",
            "/services/{name}/scale",
            "/services/events/scale",
            admin,
            Some(json!({"replicas": 1001})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .call("GET", "/services/{name}", "/services/evnets", admin, None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .call("DELETE", "/services/{name}", "/services/tiny", admin, None)
        .await;
    assert_eq!(status, 204);
}
