//! Hostile HTTP clients against the real binary: connections that send half a request header,
//! or a shorter body than they announce, are closed by the server within its timeouts, do not
//! keep anyone else from being served, and do not hold up a SIGTERM past the grace. Bodies too
//! large are 413, unknown fields 400 with a did-you-mean, values over their bound 400 naming
//! it. And two servers on one PostgreSQL each keep their own admin token across restarts.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use panda_store::testing::{DATABASE_URL_ENV, REQUIRE_ALL_ENV};
use panda_store::{PgStore, TokenStore};
use support::{Server, Start, http_get};

/// The longest any one wait here may take before the test fails: far above every timeout the
/// servers are given, far below the minutes a stalled client used to hold a server.
const PATIENCE: Duration = Duration::from_secs(30);

fn address(server: &Server) -> String {
    server.url().trim_start_matches("http://").to_owned()
}

/// A connection that sends part of a request's header and then nothing.
fn half_header(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .write_all(b"GET /api/v1/jobs HTTP/1.1\r\nHost: panda\r\nX-Half: ")
        .expect("send half a header");
    stream
}

/// A connection that announces a 1,000-byte body and sends four bytes of it.
fn short_body(address: &str, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect");
    let head = format!(
        "POST /api/v1/jobs HTTP/1.1\r\nHost: panda\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"na"
    );
    stream
        .write_all(head.as_bytes())
        .expect("send a short body");
    stream
}

/// Reads until the server closes the connection (or resets it); what it sent before that.
/// Fails the test if the connection is still open after [`PATIENCE`].
fn read_until_closed(mut stream: TcpStream) -> String {
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("a read timeout");
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
        Err(err) => panic!(
            "the server kept a stalled connection open ({err}); it had sent {:?}",
            String::from_utf8_lossy(&answer)
        ),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// One HTTP/1.1 request with a body; the status and the body of the answer.
fn send(server: &Server, method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let address = address(server);
    let mut stream = TcpStream::connect(&address).expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.admin_token(),
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send the head");
    // The server may answer (413) before the body is all sent, and stop reading it.
    let _ = stream.write_all(body);
    let answer = read_until_closed(stream);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn jobs_answer_200(server: &Server) {
    let answer = http_get(
        server.url(),
        "/api/v1/jobs",
        &[&format!("Authorization: Bearer {}", server.admin_token())],
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn stalled_clients_are_cut_off_and_do_not_keep_others_from_being_served() {
    // 60 stalled clients against room for 40: the ones past the cap wait in the backlog, and
    // the header and body timeouts free the room again.
    let server = Server::start_with(&[
        "--runtime",
        "process",
        "--http-header-timeout",
        "1s",
        "--http-body-timeout",
        "1s",
        "--http-max-connections",
        "40",
    ]);
    let address = address(&server);
    let token = server.admin_token();
    let halves: Vec<TcpStream> = (0..30).map(|_| half_header(&address)).collect();
    let shorts: Vec<TcpStream> = (0..30).map(|_| short_body(&address, &token)).collect();
    jobs_answer_200(&server);
    for stream in halves {
        let answer = read_until_closed(stream);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "a half header gets nothing, or 408: {answer:?}"
        );
    }
    for stream in shorts {
        let answer = read_until_closed(stream);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(answer.contains("\"request_timeout\""), "{answer:?}");
    }
    jobs_answer_200(&server);

    // A body of 10 MB is refused as too large, not read.
    let (status, body) = send(&server, "POST", "/api/v1/jobs", &vec![b' '; 10 << 20]);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert!(body["error"]["hint"].is_string(), "{body}");

    // A misspelt field is named, with the field it most likely means.
    let job = serde_json::json!({
        "name": "typo",
        "runtime": {"kind": "process", "argv": ["true"]},
        "retry": {"max_attempts": 1, "backoff_base_ms": 10, "backoff_cap_ms": 10},
        "concurrency": "allow",
        "max_runing": 2,
    });
    let (status, body) = send(&server, "POST", "/api/v1/jobs", job.to_string().as_bytes());
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid", "{body}");
    assert_eq!(
        body["error"]["message"], "unknown field `max_runing`; did you mean `max_running`?",
        "{body}"
    );
    let mut nested = job.clone();
    nested
        .as_object_mut()
        .expect("an object")
        .remove("max_runing");
    nested["retry"]["max_atempts"] = serde_json::json!(3);
    let (status, body) = send(
        &server,
        "POST",
        "/api/v1/jobs",
        nested.to_string().as_bytes(),
    );
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("unknown field `max_atempts`; did you mean `max_attempts`?"),
        "{body}"
    );

    // A backoff past its bound is refused with the bound named, not retried at once.
    let mut huge = nested.clone();
    huge["retry"] = serde_json::json!({
        "max_attempts": 3,
        "backoff_base_ms": i64::MAX,
        "backoff_cap_ms": i64::MAX,
    });
    let (status, body) = send(&server, "POST", "/api/v1/jobs", huge.to_string().as_bytes());
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("over the maximum of 7days"), "{body}");

    // Nothing of it was stored, and the server still serves.
    let (status, body) = send(&server, "GET", "/api/v1/jobs", b"");
    assert_eq!((status, body), (200, serde_json::json!([])));
    server.stop();
}

#[test]
fn sigterm_does_not_wait_for_stalled_clients() {
    // Timeouts far longer than the grace: only the shutdown can close these connections.
    let server = Server::start_with(&[
        "--runtime",
        "process",
        "--http-header-timeout",
        "120s",
        "--http-body-timeout",
        "120s",
        "--shutdown-grace",
        "2s",
    ]);
    let address = address(&server);
    let token = server.admin_token();
    let halves: Vec<TcpStream> = (0..50).map(|_| half_header(&address)).collect();
    let shorts: Vec<TcpStream> = (0..50).map(|_| short_body(&address, &token)).collect();
    jobs_answer_200(&server);
    let stopping = Instant::now();
    let log = server.stop();
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(2) + Duration::from_secs(8),
        "SIGTERM took {took:?} with a 2s grace: {log:#?}"
    );
    for stream in halves.into_iter().chain(shorts) {
        let answer = read_until_closed(stream);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
            "closed, or told the server is stopping: {answer:?}"
        );
    }
}

/// Points a node at a schema of its own in the test database; `None` (a skip) without one.
async fn postgres_schema() -> Option<(PgStore, String)> {
    let Some(url) = std::env::var(DATABASE_URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var(REQUIRE_ALL_ENV).as_deref() != Ok("1"),
            "{REQUIRE_ALL_ENV}=1 but {DATABASE_URL_ENV} is not set"
        );
        eprintln!("skipped: {DATABASE_URL_ENV} is not set");
        return None;
    };
    let schema = format!("panda_tokens_{}", uuid::Uuid::now_v7().simple());
    let pg = PgStore::connect_in_schema(&url, &schema, 2)
        .await
        .expect("connect to PostgreSQL");
    let separator = if url.contains('?') { '&' } else { '?' };
    Some((
        pg,
        format!("{url}{separator}options=-c%20search_path%3D{schema}"),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_database_keep_their_own_admin_tokens() {
    let Some((pg, url)) = postgres_schema().await else {
        return;
    };
    let nodes = tempfile::tempdir().expect("a temp dir");
    let start = |node: &str| {
        Start::server()
            .data_dir(nodes.path().join(node))
            .database_url(Some(&url))
            .args(["--runtime", "process"])
            .start()
    };
    let a = start("a");
    let b = start("b");
    let (token_a, token_b) = (a.admin_token(), b.admin_token());
    assert_ne!(token_a, token_b, "each node has a token of its own");
    // Each is restarted in turn; the other's token keeps working through it.
    let log_a = a.stop();
    let a = start("a");
    let log_b = b.stop();
    let b = start("b");
    for server in [&a, &b] {
        for token in [&token_a, &token_b] {
            let answer = http_get(
                server.url(),
                "/api/v1/jobs",
                &[&format!("Authorization: Bearer {token}")],
            );
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
    }
    assert_eq!(a.admin_token(), token_a, "a restart keeps the token");
    assert_eq!(b.admin_token(), token_b, "a restart keeps the token");
    let names: Vec<String> = pg
        .token_list()
        .await
        .expect("the tokens")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("admin-")),
        "named after their nodes: {names:?}"
    );
    let said = |log: &[String], what: &str| log.iter().any(|line| line.contains(what));
    assert!(said(&log_a, "admin token created"), "{log_a:#?}");
    assert!(said(&log_b, "admin token created"), "{log_b:#?}");
    assert!(said(&a.stop(), "admin token reused"));

    // A data dir whose token the store no longer knows (revoked here) gets a new one: its own,
    // replaced; the other node's stays.
    pg.token_revoke(&names[0], chrono::Utc::now())
        .await
        .expect("revoke");
    let b_log = b.stop();
    assert!(said(&b_log, "admin token reused"), "{b_log:#?}");
    let a = start("a");
    let b = start("b");
    let live: Vec<String> = pg
        .token_list()
        .await
        .expect("the tokens")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(
        live.len(),
        2,
        "one per node, none revoked by the other: {live:?}"
    );
    for server in [&a, &b] {
        let answer = http_get(
            server.url(),
            "/api/v1/jobs",
            &[&format!("Authorization: Bearer {}", server.admin_token())],
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    a.stop();
    b.stop();
    pg.drop_schema().await.expect("drop the test schema");
}
