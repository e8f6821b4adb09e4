//! The API over HTTP against a real store (SQLite): auth, the error shape, and the routes a
//! client relies on, on both backends' behalf (the store's own suite covers the backends).

use serde_json::{Value, json};

mod support;

struct Api {
    url: String,
    admin: String,
    viewer: String,
    http: reqwest::Client,
    served: support::Served,
}

impl Api {
    async fn start() -> Self {
        let served = support::serve().await;
        Self {
            url: served.url.clone(),
            admin: served.admin.clone(),
            viewer: served.viewer.clone(),
            http: reqwest::Client::new(),
            served,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }
}

fn job(name: &str) -> Value {
    json!({
        "name": name,
        "runtime": {"kind": "process", "argv": ["true"]},
        "retry": {"max_attempts": 1, "backoff_base_ms": 1000, "backoff_cap_ms": 1000},
        "secret_env": {"API_KEY": "s3cr3t"},
        "schedule": {"cron": "0 5 * * *"},
    })
}

#[track_caller]
fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(answer.1["error"]["code"], code, "{answer:?}");
    assert!(answer.1["error"]["message"].is_string(), "{answer:?}");
}

#[tokio::test]
async fn every_failure_has_one_json_shape() {
    let api = Api::start().await;
    let admin = Some(api.admin.as_str());
    assert_error(
        &api.call("GET", "/api/v1/jobs", None, None).await,
        401,
        "unauthorized",
    );
    assert_error(
        &api.call("GET", "/api/v1/jobs", Some("panda_nope"), None)
            .await,
        401,
        "unauthorized",
    );
    assert_error(
        &api.call("GET", "/api/v1/nope", admin, None).await,
        404,
        "not_found",
    );
    assert_error(
        &api.call("PATCH", "/api/v1/jobs", admin, None).await,
        405,
        "method_not_allowed",
    );
    assert_error(
        &api.call("POST", "/api/v1/jobs", admin, Some(json!({"name": "x"})))
            .await,
        400,
        "invalid",
    );
    assert_error(
        &api.call("GET", "/api/v1/executions/xyz", admin, None).await,
        400,
        "invalid",
    );
    let bad_schedule = json!({
        "name": "nightly",
        "runtime": {"kind": "process", "argv": ["true"]},
        "retry": {"max_attempts": 1, "backoff_base_ms": 1000, "backoff_cap_ms": 1000},
        "schedule": {"cron": "61 * * * *"},
    });
    let answer = api
        .call("POST", "/api/v1/jobs", admin, Some(bad_schedule))
        .await;
    assert_error(&answer, 400, "invalid");
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("minute"),
        "{answer:?}"
    );

    assert_eq!(
        api.call("POST", "/api/v1/jobs", admin, Some(job("generate-reports")))
            .await
            .0,
        201
    );
    assert_error(
        &api.call("POST", "/api/v1/jobs", admin, Some(job("generate-reports")))
            .await,
        409,
        "conflict",
    );
    let missing = api
        .call("GET", "/api/v1/jobs/genrate-reports", admin, None)
        .await;
    assert_error(&missing, 404, "not_found");
    assert_eq!(
        missing.1["error"]["hint"],
        "did you mean \"generate-reports\"?"
    );
    // Health needs no token.
    let (status, _) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    let (status, _) = api.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_read_only_token_reads_and_may_not_write() {
    let api = Api::start().await;
    let admin = Some(api.admin.as_str());
    let viewer = Some(api.viewer.as_str());
    api.call("POST", "/api/v1/jobs", admin, Some(job("generate-reports")))
        .await;
    let (status, jobs) = api.call("GET", "/api/v1/jobs", viewer, None).await;
    assert_eq!(status, 200);
    assert_eq!(jobs[0]["name"], "generate-reports");
    assert!(jobs[0]["next_run_at"].is_string(), "{jobs}");
    assert_error(
        &api.call(
            "POST",
            "/api/v1/jobs/generate-reports/executions",
            viewer,
            Some(json!({})),
        )
        .await,
        403,
        "forbidden",
    );
    assert_error(
        &api.call("DELETE", "/api/v1/jobs/generate-reports", viewer, None)
            .await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn a_revoked_token_stops_at_once_on_its_server_and_within_a_second_on_another() {
    let api = Api::start().await;
    let (other_url, _other) = support::another_server(&api.served.test).await;
    let other = |token: &str| {
        api.http
            .get(format!("{other_url}/api/v1/jobs"))
            .bearer_auth(token.to_owned())
            .send()
    };
    let viewer = Some(api.viewer.as_str());
    // Both servers verify the token, and so remember it.
    assert_eq!(api.call("GET", "/api/v1/jobs", viewer, None).await.0, 200);
    let seen = other(&api.viewer).await.expect("send");
    assert_eq!(seen.status().as_u16(), 200);

    let (status, _) = api
        .call("DELETE", "/api/v1/tokens/viewer", Some(&api.admin), None)
        .await;
    assert_eq!(status, 204);
    assert_error(
        &api.call("GET", "/api/v1/jobs", viewer, None).await,
        401,
        "unauthorized",
    );
    // The other server asks the store again once its second is up (5 s of slack for a busy
    // machine), and is then refused for good.
    let revoked_at = std::time::Instant::now();
    loop {
        let status = other(&api.viewer).await.expect("send").status().as_u16();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked_at.elapsed() < std::time::Duration::from_secs(6),
            "the other server still takes a token revoked 6 s ago"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        other(&api.viewer).await.expect("send").status().as_u16(),
        401
    );
    // A live token is still taken by both.
    assert_eq!(
        other(&api.admin).await.expect("send").status().as_u16(),
        200
    );
}

#[tokio::test]
async fn secret_values_are_never_returned_and_a_placeholder_keeps_them() {
    let api = Api::start().await;
    let admin = Some(api.admin.as_str());
    let (_, created) = api
        .call("POST", "/api/v1/jobs", admin, Some(job("generate-reports")))
        .await;
    assert_eq!(created["secret_env"]["API_KEY"], "********");
    let (_, listed) = api.call("GET", "/api/v1/jobs", admin, None).await;
    assert!(!listed.to_string().contains("s3cr3t"), "{listed}");
    // Put back what was read: the secret stays as it was, which the store shows.
    let mut changed = created.clone();
    changed["schedule"]["cron"] = json!("0 6 * * *");
    let (status, _) = api
        .call("PUT", "/api/v1/jobs/generate-reports", admin, Some(changed))
        .await;
    assert_eq!(status, 200);
    let stored = api
        .served
        .test
        .store
        .job_get("generate-reports")
        .await
        .expect("job");
    assert_eq!(stored.spec.secret_env["API_KEY"], "s3cr3t");
    assert_eq!(stored.spec.schedule.expect("schedule").cron, "0 6 * * *");
}

#[tokio::test]
async fn a_trigger_with_an_idempotency_key_returns_the_first_execution() {
    let api = Api::start().await;
    let admin = Some(api.admin.as_str());
    api.call("POST", "/api/v1/jobs", admin, Some(job("generate-reports")))
        .await;
    let body = json!({"idempotency_key": "k-1", "payload": {"id": 42}});
    let (first_status, first) = api
        .call(
            "POST",
            "/api/v1/jobs/generate-reports/executions",
            admin,
            Some(body.clone()),
        )
        .await;
    let (second_status, second) = api
        .call(
            "POST",
            "/api/v1/jobs/generate-reports/executions",
            admin,
            Some(body),
        )
        .await;
    assert_eq!((first_status, second_status), (201, 200));
    assert_eq!(first["execution"]["id"], second["execution"]["id"]);
    assert_eq!(second["created"], false);
    let too_big = json!({"payload": "x".repeat(70 * 1024)});
    let answer = api
        .call(
            "POST",
            "/api/v1/jobs/generate-reports/executions",
            admin,
            Some(too_big),
        )
        .await;
    assert_error(&answer, 400, "invalid");
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("payload"),
        "{answer:?}"
    );
}

/// The OpenAPI document describes exactly the routes the router serves, and every one of them
/// is served (not the router's "no such route", not "method not allowed").
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let api = Api::start().await;
    let (status, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200, "public: {doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("operations").keys() {
            // A path item's own `servers` (the URLs served at the root) is not an operation.
            if method != "servers" {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: std::collections::BTreeSet<(String, String)> = panda_api::api_route_list()
        .into_iter()
        .chain(panda_api::outside_route_list())
        .map(|(method, path)| (method.to_owned(), path.to_owned()))
        .collect();
    assert_eq!(documented, routed, "the document and the router disagree");

    // Every schema a path refers to exists.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in text.split("#/components/schemas/").skip(1) {
        let name = name.split('"').next().unwrap_or_default();
        assert!(schemas.contains_key(name), "missing schema {name}");
    }

    // Each listed route answers as a route (whatever it says about this made-up input).
    let admin = Some(api.admin.as_str());
    let outside: std::collections::BTreeSet<(String, String)> = panda_api::outside_route_list()
        .into_iter()
        .map(|(method, path)| (method.to_owned(), path.to_owned()))
        .collect();
    for (method, path) in &routed {
        let concrete = path
            .replace("{name}", "no-such-job")
            .replace("{id}", "01a20000-0000-7000-8000-000000000000")
            .replace("{token}", "no-such-token")
            .replace("{what}", "start");
        let body = matches!(method.as_str(), "POST" | "PUT").then(|| json!({}));
        let is_outside = outside.contains(&(method.clone(), path.clone()));
        let url = if is_outside {
            concrete
        } else {
            format!("/api/v1{concrete}")
        };
        let (status, answer) = api.call(method, &url, admin, body).await;
        if is_outside {
            // Not the dashboard's page for an unknown path: the handler's own answer.
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(
                status == 404 && message.ends_with("has this URL"),
                "{method} {path}: {status} {answer}"
            );
        }
        assert_ne!(status, 405, "{method} {path}: {answer}");
        assert_ne!(
            answer["error"]["message"], "no such API route",
            "{method} {path} is not routed"
        );
    }
}

#[tokio::test]
async fn alert_endpoints_are_shown_redacted_and_a_redacted_one_put_back_keeps_its_url() {
    let api = Api::start().await;
    let admin = Some(api.admin.as_str());
    let viewer = Some(api.viewer.as_str());
    const SLACK: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
    const HOOK: &str = "https://user:pw@alerts.example:8443/panda?token=SECRET2";
    let mut spec = job("nightly");
    spec["alerts"] = json!({"slack": [SLACK], "webhooks": [HOOK]});
    let (status, created) = api
        .call("POST", "/api/v1/jobs", admin, Some(spec.clone()))
        .await;
    assert_eq!(status, 201, "{created}");
    for answer in [
        created,
        api.call("GET", "/api/v1/jobs/nightly", viewer, None)
            .await
            .1,
        api.call("GET", "/api/v1/jobs", viewer, None).await.1,
    ] {
        let text = answer.to_string();
        assert!(!text.contains("SECRET"), "a credential shown: {text}");
        assert!(
            text.contains("https://hooks.slack.com/********"),
            "which endpoint it is stays visible: {text}"
        );
    }

    // Put back what was read, with another change: the endpoints keep their stored URLs.
    let (_, mut read) = api.call("GET", "/api/v1/jobs/nightly", admin, None).await;
    read["priority"] = json!(5);
    let (status, answer) = api
        .call("PUT", "/api/v1/jobs/nightly", admin, Some(read))
        .await;
    assert_eq!(status, 200, "{answer}");
    let stored = api.served.test.store.job_get("nightly").await.expect("job");
    assert_eq!(stored.spec.alerts.slack, [SLACK]);
    assert_eq!(stored.spec.alerts.webhooks, [HOOK]);
    assert_eq!(stored.spec.priority, 5);

    // A redacted URL where nothing was stored (a new job, say, from another server's export)
    // is refused, not stored as a broken endpoint.
    let mut copied = job("copied");
    copied["alerts"] = json!({"slack": ["https://hooks.slack.com/********"]});
    let (status, answer) = api.call("POST", "/api/v1/jobs", admin, Some(copied)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("redacted")),
        "{answer}"
    );

    // Where an alert's deliveries went: the same redaction.
    let alert = panda_store::NewAlert {
        incident: "nightly:1".into(),
        job_id: stored.id,
        job: "nightly".into(),
        kind: panda_core::AlertKind::Failed,
        execution_id: None,
        message: "nightly failed".into(),
        body: json!({}),
        notifiers: vec![(panda_core::NotifierKind::Slack, SLACK.into())],
    };
    api.served
        .test
        .store
        .alert_raise(&alert, chrono::Utc::now())
        .await
        .expect("raise")
        .expect("a new alert");
    let (status, alerts) = api.call("GET", "/api/v1/alerts", viewer, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        alerts["alerts"][0]["deliveries"][0]["url"],
        "https://hooks.slack.com/********"
    );
    assert!(!alerts.to_string().contains("SECRET"), "{alerts}");
}

#[tokio::test]
async fn a_log_stream_says_the_status_of_an_execution_that_has_not_ended() {
    let api = Api::start().await;
    let admin = Some(api.admin.as_str());
    let (status, _) = api
        .call("POST", "/api/v1/jobs", admin, Some(job("generate-reports")))
        .await;
    assert_eq!(status, 201);
    // No worker runs here: the execution stays queued.
    let (status, queued) = api
        .call(
            "POST",
            "/api/v1/jobs/generate-reports/executions",
            admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "{queued}");
    let id = queued["execution"]["id"].as_str().expect("an id");
    let mut stream = api
        .http
        .get(format!("{}/api/v1/executions/{id}/logs/stream", api.url))
        .bearer_auth(&api.admin)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status().as_u16(), 200);
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), stream.chunk())
        .await
        .expect("an event soon")
        .expect("read")
        .expect("a chunk");
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.starts_with("event: status\ndata: {\"status\":\"queued\"}"),
        "{first}"
    );
}
