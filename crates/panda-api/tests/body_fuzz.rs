//! Fuzzing the API's JSON bodies on stable Rust, under `cargo test`: near-valid job specs,
//! service specs, trigger requests and token requests (one field set to anything, a field left out, a field
//! that does not exist), random JSON and bytes that are not JSON, sent in-process to the real
//! router over a real SQLite store, to every route that takes a body.
//!
//! What must hold: never a 5xx; every 4xx is the one error shape,
//! `{"error": {"code", "message", "hint"?}}`, with a code and a message.
//!
//! `PANDA_PROPTEST_CASES` sets the number of cases (256 by default); a long session is
//! `PANDA_PROPTEST_CASES=100000 cargo test --release -p panda-api --test body_fuzz`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use panda_api::AppState;
use panda_core::SystemClock;
use panda_store::{NewExecution, TokenScope};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn cases() -> u32 {
    match std::env::var("PANDA_PROPTEST_CASES") {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("PANDA_PROPTEST_CASES={n:?} is not a number of cases")),
        Err(_) => 256,
    }
}

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            0i64,
            -1,
            1,
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::from(u32::MAX) + 1,
            i64::MAX,
            i64::MIN,
        ])
        .prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::String),
        prop::sample::select(vec![
            "",
            "0",
            "*",
            "default",
            "process",
            "docker",
            "allow",
            "forbid",
            "replace",
            "admin",
            "read_only",
            "2026-11-28T05:00:00Z",
            "10000-01-01T00:00:00Z",
            "0 5 * * *",
            "0 0 30 2 *",
            "Europe/Berlin",
            "fuzz",
            "\u{0}",
            "a\u{0}b",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object key: a field some body has, a near miss, or anything.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS).prop_map(str::to_owned),
        1 => prop::sample::select(FIELDS).prop_map(|f| format!("{f}x")),
        1 => ".{0,8}",
    ]
}

const FIELDS: &[&str] = &[
    "name",
    "runtime",
    "kind",
    "argv",
    "image",
    "command",
    "env",
    "secret_env",
    "workdir",
    "limits",
    "memory_bytes",
    "cpus",
    "timeout_ms",
    "retry",
    "max_attempts",
    "backoff_base_ms",
    "backoff_cap_ms",
    "queue",
    "priority",
    "concurrency",
    "max_running",
    "labels",
    "keep",
    "max_age_ms",
    "schedule",
    "cron",
    "timezone",
    "catch_up",
    "starting_deadline_ms",
    "suspended",
    "service",
    "replicas",
    "restart",
    "restart_delay_ms",
    "stop_signal",
    "health",
    "probe",
    "interval_ms",
    "rollout",
    "max_parallel",
    "order",
    "log_keep_bytes",
    "alerts",
    "webhooks",
    "slack",
    "after_failures",
    "trigger",
    "payload",
    "idempotency_key",
    "run_at",
    "scheduled_for",
    "force",
    "scope",
];

fn job_spec(name: &str) -> Value {
    json!({
        "name": name,
        "runtime": {"kind": "process", "argv": ["true"]},
        "env": {"A": "1"},
        "limits": {"memory_bytes": 1048576, "cpus": 0.5},
        "timeout_ms": 60000,
        "retry": {"max_attempts": 3, "backoff_base_ms": 1000, "backoff_cap_ms": 60000},
        "queue": "default",
        "priority": 0,
        "concurrency": "allow",
        "max_running": 2,
        "keep": 10,
        "max_age_ms": 86400000,
        "schedule": {"cron": "0 5 * * *", "timezone": "UTC", "catch_up": "latest",
                     "starting_deadline_ms": 600000},
        "alerts": {"webhooks": ["http://127.0.0.1:9/hook"], "after_failures": 2},
    })
}

/// A service's body: a job without a schedule, with a service part of every kind of field.
fn service_spec(name: &str) -> Value {
    json!({
        "name": name,
        "runtime": {"kind": "process", "argv": ["sleep", "1000"]},
        "env": {"A": "1"},
        "queue": "default",
        "service": {
            "replicas": 2,
            "restart": "on_failure",
            "restart_delay_ms": 1000,
            "restart_delay_max_ms": 60000,
            "stop_signal": "SIGINT",
            "stop_timeout_ms": 5000,
            "health": {"probe": {"kind": "command", "command": "true"}, "interval_ms": 2000},
            "rollout": {"max_parallel": 1, "min_healthy_ms": 1000, "healthy_deadline_ms": 60000,
                        "order": "stop_first"},
            "log_keep_bytes": 1048576,
        },
    })
}

fn trigger_request() -> Value {
    json!({
        "payload": {"x": 1},
        "env": {"B": "2"},
        "idempotency_key": "k",
        "run_at": "2026-11-28T05:00:00Z",
        "priority": 1,
        "force": false,
    })
}

fn token_request() -> Value {
    json!({"name": "t", "scope": "read_only"})
}

/// A path into a JSON object: the fields below the top level that the templates have.
fn paths(value: &Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    if let Value::Object(map) = value {
        for (k, v) in map {
            out.push(vec![k.clone()]);
            for mut below in paths(v) {
                below.insert(0, k.clone());
                out.push(below);
            }
        }
    }
    out
}

/// How a valid body is spoilt.
#[derive(Debug, Clone)]
enum Spoil {
    Set(prop::sample::Index, Value),
    Remove(prop::sample::Index),
    Unknown(String, Value),
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), any_json()).prop_map(|(i, v)| Spoil::Set(i, v)),
        1 => any::<prop::sample::Index>().prop_map(Spoil::Remove),
        1 => (key(), any_json()).prop_map(|(k, v)| Spoil::Unknown(k, v)),
    ]
}

fn apply(mut body: Value, spoils: &[Spoil]) -> Value {
    for s in spoils {
        let all = paths(&body);
        let target =
            |i: &prop::sample::Index| (!all.is_empty()).then(|| all[i.index(all.len())].clone());
        match s {
            Spoil::Set(i, v) => {
                if let Some(path) = target(i) {
                    set(&mut body, &path, Some(v.clone()));
                }
            }
            Spoil::Remove(i) => {
                if let Some(path) = target(i) {
                    set(&mut body, &path, None);
                }
            }
            Spoil::Unknown(k, v) => {
                if let Value::Object(map) = &mut body {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
    }
    body
}

fn set(body: &mut Value, path: &[String], value: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = body;
    for p in parents {
        match at.get_mut(p) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Value::Object(map) = at {
        match value {
            Some(v) => {
                map.insert(last.clone(), v);
            }
            None => {
                map.remove(last);
            }
        }
    }
}

/// One request's body: a template spoilt, any JSON, or bytes that may not be JSON.
#[derive(Debug, Clone)]
enum Sent {
    Template(Vec<Spoil>),
    Json(Value),
    Bytes(Vec<u8>),
}

/// The routes that take a body, with the template a near-valid body is made from.
fn routes(state: &Fixture) -> Vec<(&'static str, String, Value)> {
    let e = state.execution.to_string();
    vec![
        ("POST", "/api/v1/jobs".into(), job_spec("made")),
        ("PUT", "/api/v1/jobs/fuzz".into(), job_spec("fuzz")),
        ("POST", "/api/v1/jobs/fuzz/suspend".into(), json!({})),
        ("POST", "/api/v1/jobs/fuzz/resume".into(), json!({})),
        (
            "POST",
            "/api/v1/jobs/fuzz/executions".into(),
            trigger_request(),
        ),
        ("POST", format!("/api/v1/executions/{e}/cancel"), json!({})),
        ("POST", format!("/api/v1/dlq/{e}/retry"), json!({})),
        ("POST", format!("/api/v1/dlq/{e}/discard"), json!({})),
        ("POST", "/api/v1/tokens".into(), token_request()),
        ("PATCH", "/api/v1/jobs/fuzz".into(), job_spec("fuzz")),
        (
            "POST",
            "/api/v1/services".into(),
            service_spec("made-service"),
        ),
        ("PUT", "/api/v1/services/svc".into(), service_spec("svc")),
        (
            "POST",
            "/api/v1/services/svc/scale".into(),
            json!({"replicas": 3}),
        ),
        ("POST", "/api/v1/services/svc/rollback".into(), json!({})),
    ]
}

const ROUTES: usize = 14;

/// A request: which route (an index into [`routes`]), and what body.
fn case() -> impl Strategy<Value = (usize, Sent)> {
    let body = prop_oneof![
        6 => prop::collection::vec(spoil(), 0..4).prop_map(Sent::Template),
        2 => any_json().prop_map(Sent::Json),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Sent::Bytes),
    ];
    (0..ROUTES, body)
}

struct Fixture {
    router: Router,
    admin: String,
    execution: panda_core::ExecutionId,
    _test: panda_store::testing::TestStore,
    _stop: tokio_util::sync::DropGuard,
}

async fn fixture() -> Fixture {
    let test = panda_store::testing::sqlite().await;
    let now = chrono::Utc::now();
    let (_, admin) = test
        .store
        .token_create("admin", TokenScope::Admin, now)
        .await
        .expect("admin token");
    let spec: panda_core::JobSpec =
        serde_json::from_value(job_spec("fuzz")).expect("the template is a valid job");
    test.store.job_create(&spec, now).await.expect("create job");
    let service: panda_core::JobSpec = serde_json::from_value(json!({
        "retry": {"max_attempts": 1, "backoff_base_ms": 1000, "backoff_cap_ms": 1000},
        "name": "svc",
        "runtime": {"kind": "process", "argv": ["sleep", "1000"]},
        "service": {"replicas": 1},
    }))
    .expect("a valid service");
    test.store
        .job_create(&service, now)
        .await
        .expect("create service");
    let execution = test
        .store
        .execution_enqueue(&NewExecution::api("fuzz"), now)
        .await
        .expect("enqueue")
        .execution
        .id;
    let shutdown = CancellationToken::new();
    let state = AppState::new(
        Arc::clone(&test.store),
        Arc::new(SystemClock),
        None,
        shutdown.clone(),
    );
    Fixture {
        router: panda_api::router(state),
        admin,
        execution,
        _test: test,
        _stop: shutdown.drop_guard(),
    }
}

/// Sends one request and checks the answer.
async fn send(
    fixture: &Fixture,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(), TestCaseError> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {}", fixture.admin))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.clone()))
        .expect("a request");
    let response = fixture
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("the body");
    let sent = String::from_utf8_lossy(&body);
    let text = String::from_utf8_lossy(&bytes);
    prop_assert!(
        !status.is_server_error(),
        "{method} {path} with {sent} answered {status}: {text}"
    );
    if status.is_client_error() {
        let answer: Value = serde_json::from_slice(&bytes).map_err(|err| {
            TestCaseError::fail(format!(
                "{method} {path} with {sent} answered {status} with a body that is not JSON \
                 ({err}): {text}"
            ))
        })?;
        let error = &answer["error"];
        prop_assert!(
            error["code"].as_str().is_some_and(|c| !c.is_empty())
                && error["message"].as_str().is_some_and(|m| !m.is_empty())
                && (error.get("hint").is_none()
                    || error["hint"].is_null()
                    || error["hint"].is_string()),
            "{method} {path} with {sent} answered {status} without the error shape: {text}"
        );
    }
    Ok(())
}

#[test]
fn no_json_body_gets_a_5xx_and_every_4xx_has_the_error_shape() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let fixture = rt.block_on(fixture());
    let table = routes(&fixture);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |(route, sent)| {
        let (method, path, template) = &table[route];
        let body = match &sent {
            Sent::Template(spoils) => {
                serde_json::to_vec(&apply(template.clone(), spoils)).expect("JSON")
            }
            Sent::Json(v) => serde_json::to_vec(v).expect("JSON"),
            Sent::Bytes(b) => b.clone(),
        };
        rt.block_on(send(&fixture, method, path, body))
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => panic!("{reason}\nshrunk input: {input:#?}"),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}
