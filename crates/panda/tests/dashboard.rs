//! The dashboard in a real browser: the real `panda server` on port 0 with a temp data dir,
//! Debian's `chromium` driven headless through `chromedriver` (WebDriver, with thirtyfour).
//!
//! Without chromium or chromedriver the test prints that it skipped, unless
//! `PANDA_REQUIRE_ALL_BACKENDS=1`, where that is a failure. Each run saves screenshots to
//! `target/dashboard-screenshots/` (under `CARGO_TARGET_DIR` when it is set).

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Start, succeeded};
use thirtyfour::prelude::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// `chromedriver` on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the browser is here; without it the test skips (or, when every backend is required,
/// fails).
fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("PANDA_REQUIRE_ALL_BACKENDS").as_deref() != Ok("1"),
        "the browser tests need {missing:?} (apt-get install chromium chromium-driver)"
    );
    eprintln!("skipped: {missing:?} not installed (apt-get install chromium chromium-driver)");
    false
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot dir");
    dir
}

async fn browser(driver: &Driver, profile: &Path) -> WebDriver {
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(CHROMIUM).expect("binary");
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1280,900",
    ] {
        caps.add_arg(arg).expect("arg");
    }
    caps.add_arg(&format!("--user-data-dir={}", profile.display()))
        .expect("arg");
    WebDriver::new(driver.url.clone(), caps)
        .await
        .expect("start chromium through chromedriver")
}

/// Waits (up to `limit`) until `check` gives a value.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The texts of the log lines on the page.
async fn log_lines(browser: &WebDriver) -> Vec<String> {
    let Ok(lines) = browser.find_all(By::Css("#log .line .t")).await else {
        return Vec::new();
    };
    // A line re-rendered while it is read (the log is redrawn when the run ends) is stale:
    // read them all again on the next poll rather than take an empty text for it.
    let mut texts = Vec::new();
    for line in lines {
        match line.text().await {
            Ok(text) => texts.push(text),
            Err(_) => return Vec::new(),
        }
    }
    texts
}

async fn status_text(browser: &WebDriver) -> String {
    match browser.find(By::Css("#status")).await {
        Ok(status) => status.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn log_in(browser: &WebDriver, base: &str, token: &str) {
    browser
        .goto(format!("{base}/"))
        .await
        .expect("open the dashboard");
    let field = browser
        .find(By::Id("token"))
        .await
        .expect("the login page asks for a token");
    field.send_keys(token).await.expect("type the token");
    browser
        .find(By::Id("login"))
        .await
        .expect("the login button")
        .click()
        .await
        .expect("log in");
}

/// Buttons that change something, inside the page's content (the top bar's logout aside).
async fn mutating_buttons(browser: &WebDriver) -> usize {
    browser
        .find_all(By::Css("main form[method=post] button"))
        .await
        .map(|buttons| buttons.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_triggers_a_cronjob_and_watches_its_log_live() {
    if !browser_available() {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shots = screenshot_dir();
    let server = Start::server().args(["--runtime", "process"]).start();
    succeeded(&server.panda(&[
        "cronjob",
        "create",
        "--name",
        "slow-lines",
        "--schedule",
        "0 5 * * *",
        "--exec",
        "sh -c 'for i in 1 2 3; do echo line $i; sleep 2; done; echo done >&2'",
        "--rate-limit",
        "100/1m",
    ]));
    succeeded(&server.panda(&[
        "service",
        "create",
        "--name",
        "worker",
        "--exec",
        "sleep 1000",
        "--queue",
        "nobody-serves-this",
    ]));
    let viewer = succeeded(&server.panda(&["token", "create", "viewer", "--read-only"]))
        .trim()
        .to_owned();
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("a browser profile dir");
    let browser = browser(&driver, profile.path()).await;
    let base = server.url().trim_end_matches('/').to_owned();

    // Log in; the cronjob is listed.
    browser.goto(format!("{base}/")).await.expect("open");
    wait_for("the login page", Duration::from_secs(10), || async {
        browser.find(By::Id("token")).await.ok()
    })
    .await;
    browser
        .screenshot(&shots.join("01-login.png"))
        .await
        .expect("screenshot");
    log_in(&browser, &base, &server.admin_token()).await;
    let row = wait_for("the cronjob's row", Duration::from_secs(10), || async {
        browser
            .find(By::Css("tr[data-job='slow-lines']"))
            .await
            .ok()
    })
    .await;
    let row_text = row.text().await.expect("row text");
    assert!(
        row_text.contains("every day at 05:00"),
        "schedule in words: {row_text}"
    );
    browser
        .screenshot(&shots.join("02-cronjobs.png"))
        .await
        .expect("screenshot");

    // Trigger it: the execution page opens and its lines appear while it runs.
    row.find(By::Css("form[action$='/trigger'] button"))
        .await
        .expect("a trigger button")
        .click()
        .await
        .expect("trigger");
    let seen = std::sync::Mutex::new(String::new());
    let partial = wait_for(
        "a first log line while the execution runs",
        Duration::from_secs(20),
        || async {
            let lines = log_lines(&browser).await;
            let status = status_text(&browser).await;
            let url = browser.current_url().await.map(|u| u.to_string());
            let now = format!("{url:?} status {status:?} lines {lines:?}");
            if *seen.lock().expect("lock") != now {
                eprintln!("live page: {now}");
                *seen.lock().expect("lock") = now;
            }
            (!lines.is_empty() && status.contains("running")).then_some(lines)
        },
    )
    .await;
    eprintln!("live: {}", seen.lock().expect("lock"));
    assert!(
        !partial.iter().any(|line| line == "done"),
        "some lines arrive before the run ends: {partial:?}"
    );
    browser
        .screenshot(&shots.join("03-execution-live.png"))
        .await
        .expect("screenshot");
    let lines = wait_for(
        "every line and success",
        Duration::from_secs(30),
        || async {
            let lines = log_lines(&browser).await;
            let status = status_text(&browser).await;
            (status.contains("succeeded") && lines.len() >= 4).then_some(lines)
        },
    )
    .await;
    assert_eq!(lines, ["line 1", "line 2", "line 3", "done"]);
    let stderr = browser
        .find_all(By::Css("#log .line.stderr"))
        .await
        .expect("stderr lines");
    assert_eq!(stderr.len(), 1, "the stderr line is marked as such");
    let execution_url = browser.current_url().await.expect("url").to_string();
    browser
        .screenshot(&shots.join("04-execution-succeeded.png"))
        .await
        .expect("screenshot");

    // The history shows it, succeeded and manual.
    browser
        .goto(format!("{base}/jobs/slow-lines"))
        .await
        .expect("open the job page");
    let history = browser
        .find(By::Css("table.history tbody tr"))
        .await
        .expect("a history row")
        .text()
        .await
        .expect("text");
    assert!(history.contains("succeeded"), "{history}");
    assert!(history.contains("manual"), "{history}");
    let page = browser
        .find(By::Tag("body"))
        .await
        .expect("the page")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("Rate limit") && page.contains("100 starts per 1m"),
        "the job page shows its rate limit: {page}"
    );
    browser
        .screenshot(&shots.join("05-job.png"))
        .await
        .expect("screenshot");

    // The Queues page pauses and resumes a queue on every node.
    let paused = |server: &support::Server| {
        let out = succeeded(&server.panda(&["queue", "list", "-o", "json"]));
        let list: serde_json::Value = serde_json::from_str(&out).expect("json");
        list.as_array()
            .expect("a list")
            .iter()
            .find(|q| q["name"] == "nobody-serves-this")
            .and_then(|q| q["paused"].as_bool())
    };
    for (button, state) in [("Pause", true), ("Resume", false)] {
        browser
            .goto(format!("{base}/queues"))
            .await
            .expect("open the queues page");
        browser
            .find(By::XPath(format!(
                "//tr[@data-queue='nobody-serves-this']//button[normalize-space()='{button}']"
            )))
            .await
            .unwrap_or_else(|err| panic!("a {button} button: {err}"))
            .click()
            .await
            .expect("click");
        wait_for("the queue's new state", Duration::from_secs(10), || async {
            (paused(&server) == Some(state)).then_some(())
        })
        .await;
        let row = browser
            .find(By::Css("tr[data-queue='nobody-serves-this']"))
            .await
            .expect("the queue's row")
            .text()
            .await
            .expect("text");
        assert_eq!(row.contains("Paused"), state, "{row}");
        if state {
            browser
                .screenshot(&shots.join("05b-queue-paused.png"))
                .await
                .expect("screenshot");
        }
    }

    // At phone width.
    browser
        .set_window_rect(0, 0, 360, 800)
        .await
        .expect("resize");
    browser.goto(format!("{base}/")).await.expect("open");
    browser
        .screenshot(&shots.join("06-cronjobs-phone.png"))
        .await
        .expect("screenshot");
    browser
        .goto(execution_url.clone())
        .await
        .expect("open the execution");
    browser
        .screenshot(&shots.join("07-execution-phone.png"))
        .await
        .expect("screenshot");
    browser
        .set_window_rect(0, 0, 1280, 900)
        .await
        .expect("resize");

    // Log out; a read-only token sees the same pages without a single mutating button.
    browser
        .find(By::Css("header form[action='/logout'] button"))
        .await
        .expect("a logout button")
        .click()
        .await
        .expect("log out");
    wait_for("the login page", Duration::from_secs(10), || async {
        browser.find(By::Id("token")).await.ok()
    })
    .await;
    log_in(&browser, &base, &viewer).await;
    wait_for("the cronjob's row", Duration::from_secs(10), || async {
        browser
            .find(By::Css("tr[data-job='slow-lines']"))
            .await
            .ok()
    })
    .await;
    assert_eq!(mutating_buttons(&browser).await, 0, "cronjobs page");
    browser
        .screenshot(&shots.join("08-read-only.png"))
        .await
        .expect("screenshot");
    for page in [
        format!("{base}/jobs/slow-lines"),
        execution_url,
        format!("{base}/queues"),
        format!("{base}/services"),
        format!("{base}/services/worker"),
    ] {
        browser.goto(page.clone()).await.expect("open");
        assert_eq!(mutating_buttons(&browser).await, 0, "{page}");
        if page.ends_with("/services") {
            browser
                .find(By::Css(
                    "tr[data-service='worker'] a[href='/services/worker']",
                ))
                .await
                .expect("the services page lists the service, linked to its page");
        }
    }
    browser.quit().await.expect("quit chromium");

    // And a read-only session that posts anyway is refused.
    let page = reqwest::Client::new()
        .get(format!("{base}/"))
        .header("cookie", format!("panda_session={viewer}"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the logout form's CSRF token")
        .to_owned();
    let refused = reqwest::Client::new()
        .post(format!("{base}/jobs/slow-lines/trigger"))
        .header("cookie", format!("panda_session={viewer}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    eprintln!("screenshots in {}", shots.display());
}
