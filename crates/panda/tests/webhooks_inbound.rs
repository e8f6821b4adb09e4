//! Inbound webhooks end to end: a job made with `--webhook`, called by another service with
//! no API token (curl here), signed deliveries, rotation, and what is refused. What ran is read
//! from what the job itself wrote.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use support::{Server, stderr, stdout, succeeded};

/// `curl -X POST` of `body` to `url` with `headers`: (status, body).
fn post(url: &str, body: &[u8], headers: &[String]) -> (u16, String) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("body");
    std::fs::write(&file, body).expect("write the body");
    let mut command = std::process::Command::new("curl");
    command.args(["-s", "-w", "\n%{http_code}", "-X", "POST"]);
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(url)
        .output()
        .expect("run curl");
    let text = stdout(&output);
    let (answer, status) = text.rsplit_once('\n').expect("a status line");
    (status.trim().parse().expect("a status"), answer.to_owned())
}

fn sign(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("a key");
    mac.update(body);
    format!(
        "X-Hub-Signature-256: sha256={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The lines the job wrote, once `n` are there.
fn wait_for_lines(file: &Path, n: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let lines: Vec<String> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never {n} runs: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The URL a `--webhook` or `--rotate` printed.
fn url_in(out: &str) -> String {
    out.lines()
        .find_map(|line| line.strip_prefix("webhook "))
        .expect("a webhook line")
        .trim()
        .to_owned()
}

#[test]
fn a_webhook_enqueues_its_job_without_a_token_and_only_signed_when_it_has_a_key() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let runs = dir.path().join("runs");
    let exec = format!("sh -c 'echo \"$PANDA_PAYLOAD\" >> {}'", runs.display());
    let created = succeeded(&server.panda(&[
        "job",
        "create",
        "--name",
        "deploy-site",
        "--exec",
        &exec,
        "--webhook",
    ]));
    let url = url_in(&created);
    assert!(
        url.starts_with(&format!("{}/hooks/whk_", server.url())),
        "{url}"
    );

    // No token: the URL is the credential. The body is the payload.
    let (status, answer) = post(&url, br#"{"ref": "main"}"#, &[]);
    assert_eq!(status, 202, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("json");
    assert_eq!(answer["created"], true);
    assert_eq!(wait_for_lines(&runs, 1), vec![r#"{"ref":"main"}"#]);

    // A delivery the sender repeats runs once.
    let delivery = "X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned();
    let (first, _) = post(&url, br#"{"n": 1}"#, std::slice::from_ref(&delivery));
    let (again, answer) = post(&url, br#"{"n": 1}"#, std::slice::from_ref(&delivery));
    assert_eq!((first, again), (202, 202));
    assert!(answer.contains("\"created\":false"), "{answer}");

    // Shown once: afterwards the token is redacted.
    let shown = succeeded(&server.panda(&["job", "webhook", "deploy-site"]));
    assert!(
        shown.contains("/hooks/********") && !shown.contains("whk_"),
        "{shown}"
    );

    // Rotated with a key: the old URL stops working, the new one takes signed bodies only.
    let rotated = succeeded(&server.panda(&[
        "job",
        "webhook",
        "deploy-site",
        "--rotate",
        "--secret",
        "It's a Secret to Everybody",
    ]));
    let signed_url = url_in(&rotated);
    assert_ne!(signed_url, url);
    let (old, _) = post(&url, b"{}", &[]);
    assert_eq!(old, 404, "a rotated URL opens nothing");
    let body = br#"{"n": 2}"#;
    let (unsigned, answer) = post(&signed_url, body, &[]);
    assert_eq!(unsigned, 401, "{answer}");
    assert!(answer.contains("signature_required"), "{answer}");
    let (forged, answer) = post(&signed_url, body, &[sign("another key", body)]);
    assert_eq!(forged, 401, "{answer}");
    assert!(answer.contains("bad_signature"), "{answer}");
    let (signed, answer) = post(
        &signed_url,
        body,
        &[sign("It's a Secret to Everybody", body)],
    );
    assert_eq!(signed, 202, "{answer}");
    let lines = wait_for_lines(&runs, 3);

    // Too big a payload is refused whole.
    let big = format!("{{\"blob\": \"{}\"}}", "x".repeat(70 * 1024));
    let (too_big, answer) = post(
        &signed_url,
        big.as_bytes(),
        &[sign("It's a Secret to Everybody", big.as_bytes())],
    );
    assert!((400..500).contains(&too_big), "{too_big} {answer}");

    // Removed: nothing opens.
    succeeded(&server.panda(&["job", "webhook", "deploy-site", "--remove"]));
    let (gone, _) = post(
        &signed_url,
        body,
        &[sign("It's a Secret to Everybody", body)],
    );
    assert_eq!(gone, 404);
    let missing = server.panda(&["job", "webhook", "deploy-site"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no webhook"),
        "{}",
        stderr(&missing)
    );

    // Whatever was refused ran nothing: one run per accepted delivery.
    std::thread::sleep(Duration::from_millis(1500));
    let after = wait_for_lines(&runs, 3);
    assert_eq!(after, lines);
    assert_eq!(
        after,
        vec![
            r#"{"ref":"main"}"#.to_owned(),
            r#"{"n":1}"#.to_owned(),
            r#"{"n":2}"#.to_owned()
        ]
    );
}
