//! The service routes over HTTP, on SQLite and on PostgreSQL: create, list, show, change in
//! place, roll out, roll back, delete, and the refusals that create nothing.

use serde_json::{Value, json};

mod support;

struct Api {
    url: String,
    admin: String,
    viewer: String,
    http: reqwest::Client,
    _served: support::Served,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.admin, method, path, body).await
    }

    async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(token);
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

/// Stamps each case once per backend; the PostgreSQL one skips without a database.
macro_rules! backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::start(panda_store::testing::sqlite().await).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(test) = panda_store::testing::postgres().await else { return };
                    super::$case(super::start(test).await).await;
                }
            )*
        }
    };
}

async fn start(test: panda_store::testing::TestStore) -> Api {
    let served = support::serve_on(test).await;
    Api {
        url: served.url.clone(),
        admin: served.admin.clone(),
        viewer: served.viewer.clone(),
        http: reqwest::Client::new(),
        _served: served,
    }
}

/// The smallest service body: a name and what to run.
fn service(name: &str) -> Value {
    json!({
        "name": name,
        "runtime": {"kind": "process", "argv": ["sleep", "1000"]},
        "secret_env": {"API_KEY": "s3cr3t"},
    })
}

#[track_caller]
fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(answer.1["error"]["code"], code, "{answer:?}");
    assert!(answer.1["error"]["message"].is_string(), "{answer:?}");
}

backends! {
    a_created_service_is_listed_shown_with_secrets_hidden_and_deleted,
    bad_service_input_is_refused_and_creates_nothing,
    scale_suspend_and_resume_change_a_service_in_place,
    a_change_of_what_runs_is_a_rollout_and_a_second_change_waits_for_it,
    a_job_is_not_a_service_and_a_read_only_token_cannot_change_one,
}

async fn a_created_service_is_listed_shown_with_secrets_hidden_and_deleted(api: Api) {
    let (status, created) = api
        .call("POST", "/services", Some(service("event-processor")))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["job"]["name"], "event-processor");
    assert_eq!(created["job"]["service"]["replicas"], 1, "{created}");
    assert_eq!(created["job"]["service"]["restart"], "always");
    assert_eq!(created["job"]["secret_env"]["API_KEY"], "********");
    assert_eq!(created["revision"], 1);
    assert_eq!(created["desired"], 1);

    let (status, list) = api.call("GET", "/services", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["job"]["name"].as_str())
        .collect();
    assert_eq!(names, ["event-processor"]);
    assert!(!list.to_string().contains("s3cr3t"), "{list}");

    // Its instance queued: shown with its execution, and still no secret.
    api._served
        .test
        .store
        .service_reconcile(chrono::Utc::now())
        .await
        .expect("reconcile");
    let (status, shown) = api.call("GET", "/services/event-processor", None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["instances"][0]["index"], 0, "{shown}");
    assert_eq!(shown["instances"][0]["state"], "pending", "{shown}");
    assert!(
        shown["instances"][0]["execution"]["id"].is_string(),
        "{shown}"
    );
    assert!(!shown.to_string().contains("s3cr3t"), "{shown}");

    // A service is not a triggered job, but it is a job.
    let (_, triggered) = api.call("GET", "/jobs?kind=triggered", None).await;
    assert_eq!(triggered, json!([]));

    let (status, _) = api.call("DELETE", "/services/event-processor", None).await;
    assert_eq!(status, 204);
    let gone = api.call("GET", "/services/event-processor", None).await;
    assert_error(&gone, 404, "not_found");
    let (_, list) = api.call("GET", "/services", None).await;
    assert_eq!(list, json!([]));
}

async fn bad_service_input_is_refused_and_creates_nothing(api: Api) {
    let mut too_many = service("too-many");
    too_many["service"] = json!({"replicas": 1001});
    let mut scheduled = service("scheduled");
    scheduled["schedule"] = json!({"cron": "0 5 * * *"});
    let mut empty_check = service("empty-check");
    empty_check["service"] = json!({"health": {"probe": {"kind": "command", "command": " "}}});
    let mut bad_signal = service("bad-signal");
    bad_signal["service"] = json!({"stop_signal": "SIGFOO"});
    let mut bad_restart = service("bad-restart");
    bad_restart["service"] = json!({"restart": "sometimes"});
    for (body, says) in [
        (too_many, "replicas"),
        (scheduled, "schedule"),
        (empty_check, "health_cmd"),
        (bad_signal, "SIGFOO"),
        (bad_restart, "sometimes"),
    ] {
        let answer = api.call("POST", "/services", Some(body)).await;
        assert_error(&answer, 400, "invalid");
        let message = answer.1["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{says}: {message}");
    }
    let (_, list) = api.call("GET", "/services", None).await;
    assert_eq!(list, json!([]));
    let (_, jobs) = api.call("GET", "/jobs", None).await;
    assert_eq!(jobs, json!([]));
}

async fn scale_suspend_and_resume_change_a_service_in_place(api: Api) {
    let (status, _) = api.call("POST", "/services", Some(service("worker"))).await;
    assert_eq!(status, 201);
    let (status, scaled) = api
        .call(
            "POST",
            "/services/worker/scale",
            Some(json!({"replicas": 3})),
        )
        .await;
    assert_eq!(status, 200, "{scaled}");
    assert_eq!(scaled["desired"], 3);
    assert_eq!(scaled["job"]["service"]["replicas"], 3);
    assert_eq!(scaled["revision"], 1, "a scale is not a new revision");

    let refused = api
        .call(
            "POST",
            "/services/worker/scale",
            Some(json!({"replicas": 1001})),
        )
        .await;
    assert_error(&refused, 400, "invalid");
    let refused = api
        .call(
            "POST",
            "/services/worker/scale",
            Some(json!({"replicas": -1})),
        )
        .await;
    assert_error(&refused, 400, "invalid");

    let (status, suspended) = api.call("POST", "/services/worker/suspend", None).await;
    assert_eq!(status, 200, "{suspended}");
    assert_eq!(suspended["desired"], 0);
    assert_eq!(suspended["job"]["suspended"], true);
    let (status, resumed) = api.call("POST", "/services/worker/resume", None).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["desired"], 3);

    let missing = api
        .call(
            "POST",
            "/services/wroker/scale",
            Some(json!({"replicas": 1})),
        )
        .await;
    assert_error(&missing, 404, "not_found");
    assert_eq!(missing.1["error"]["hint"], "did you mean \"worker\"?");
}

async fn a_change_of_what_runs_is_a_rollout_and_a_second_change_waits_for_it(api: Api) {
    let (status, _) = api.call("POST", "/services", Some(service("events"))).await;
    assert_eq!(status, 201);
    let rollback = api.call("POST", "/services/events/rollback", None).await;
    assert_error(&rollback, 409, "conflict");
    let hint = rollback.1["error"]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("panda service revisions events"), "{hint}");

    // What the API showed, changed and put back: the secret placeholder keeps its value.
    let (_, shown) = api.call("GET", "/services/events", None).await;
    let mut spec = shown["job"].clone();
    spec["runtime"]["argv"] = json!(["sleep", "2000"]);
    let (status, updated) = api
        .call("PUT", "/services/events", Some(spec.clone()))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["revision"], 2, "{updated}");
    assert_eq!(updated["rollout"]["from_revision"], 1, "{updated}");
    assert_eq!(updated["rollout"]["to_revision"], 2);
    assert_eq!(updated["rollout"]["state"], "progressing");

    spec["runtime"]["argv"] = json!(["sleep", "3000"]);
    let second = api.call("PUT", "/services/events", Some(spec)).await;
    assert_error(&second, 409, "conflict");
    let message = second.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("rollout"), "{message}");
    let restart = api.call("POST", "/services/events/restart", None).await;
    assert_error(&restart, 409, "conflict");

    let (status, revisions) = api.call("GET", "/services/events/revisions", None).await;
    assert_eq!(status, 200, "{revisions}");
    let numbers: Vec<u64> = revisions
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["revision"].as_u64())
        .collect();
    assert_eq!(numbers, [2, 1], "newest first");
    assert_eq!(
        revisions[1]["job"]["runtime"]["argv"],
        json!(["sleep", "1000"])
    );
    assert!(!revisions.to_string().contains("s3cr3t"), "{revisions}");

    // A renamed body is refused.
    let mut renamed = service("other");
    renamed["runtime"]["argv"] = json!(["true"]);
    let refused = api.call("PUT", "/services/events", Some(renamed)).await;
    assert_error(&refused, 400, "invalid");
}

async fn a_job_is_not_a_service_and_a_read_only_token_cannot_change_one(api: Api) {
    let job = json!({
        "name": "send-email",
        "runtime": {"kind": "process", "argv": ["true"]},
        "retry": {"max_attempts": 1, "backoff_base_ms": 1000, "backoff_cap_ms": 1000},
    });
    let (status, _) = api.call("POST", "/jobs", Some(job)).await;
    assert_eq!(status, 201);
    let answer = api.call("GET", "/services/send-email", None).await;
    assert_error(&answer, 404, "not_found");
    let hint = answer.1["error"]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("panda job get send-email"), "{hint}");
    let answer = api
        .call(
            "POST",
            "/services/send-email/scale",
            Some(json!({"replicas": 2})),
        )
        .await;
    assert_error(&answer, 404, "not_found");

    let (status, _) = api.call_as(&api.viewer, "GET", "/services", None).await;
    assert_eq!(status, 200);
    let answer = api
        .call_as(&api.viewer, "POST", "/services", Some(service("nope")))
        .await;
    assert_error(&answer, 403, "forbidden");
}
