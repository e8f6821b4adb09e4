//! The dashboard's cronjobs list over HTTP against a real store (SQLite): a page at a time, with
//! a name filter, and the forms on it coming back to the page they were sent from. The browser
//! test in `crates/panda` covers the pages as a person uses them.

use serde_json::json;

mod support;

struct Dashboard {
    url: String,
    admin: String,
    http: reqwest::Client,
    _served: support::Served,
}

impl Dashboard {
    async fn start() -> Self {
        let served = support::serve().await;
        Self {
            url: served.url.clone(),
            admin: served.admin.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            _served: served,
        }
    }

    /// Creates a job from its spec through the API.
    async fn create(&self, spec: serde_json::Value) {
        let name = spec["name"].clone();
        let response = self
            .http
            .post(format!("{}/api/v1/jobs", self.url))
            .bearer_auth(&self.admin)
            .json(&spec)
            .send()
            .await
            .expect("create");
        assert_eq!(response.status().as_u16(), 201, "create {name}");
    }

    async fn create_cronjob(&self, name: &str) {
        self.create(json!({
            "name": name,
            "runtime": {"kind": "process", "argv": ["true"]},
            "retry": {"max_attempts": 1, "backoff_base_ms": 1000, "backoff_cap_ms": 1000},
            "schedule": {"cron": "0 5 * * *"},
        }))
        .await;
    }

    /// A dashboard page as a logged-in admin: its status and HTML.
    async fn page(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .header("cookie", format!("panda_session={}", self.admin))
            .send()
            .await
            .expect("get");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }
}

/// The job names listed on a page, in order.
fn listed(html: &str) -> Vec<String> {
    html.split("<tr data-job=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_cronjobs_list_comes_a_page_at_a_time_and_filters_by_name() {
    let dash = Dashboard::start().await;
    let names: Vec<String> = (0..230).map(|i| format!("sync-{i:03}")).collect();
    for name in &names {
        dash.create_cronjob(name).await;
    }
    dash.create_cronjob("weekly-report").await;

    let (status, first) = dash.page("/").await;
    assert_eq!(status, 200);
    assert_eq!(listed(&first), names[..100], "the first 100 by name");
    assert!(first.contains("1–100 of 231"), "where the page is");
    assert!(first.contains("page 1 of 3"));
    assert!(first.contains(r#"href="/?page=2" rel="next""#));
    assert!(!first.contains(r#"rel="prev""#), "no page before the first");
    assert!(
        first.contains(r#"name="back" value="/""#),
        "the first page's buttons come back to it"
    );

    let (_, third) = dash.page("/?page=3").await;
    let mut rest: Vec<String> = names[200..].to_vec();
    rest.push("weekly-report".to_owned());
    rest.sort();
    assert_eq!(listed(&third), rest, "the last 31");
    assert!(third.contains("201–231 of 231"));
    assert!(third.contains(r#"href="/?page=2" rel="prev""#));
    assert!(!third.contains(r#"rel="next""#), "no page after the last");
    assert!(
        third.contains(r#"name="back" value="/?page=3""#),
        "the buttons come back to page 3"
    );

    let (_, beyond) = dash.page("/?page=9").await;
    assert_eq!(
        listed(&beyond),
        listed(&third),
        "a page past the end shows the last (the list may have shrunk since the link was made)"
    );

    let (_, filtered) = dash.page("/?q=SYNC-1").await;
    assert_eq!(
        listed(&filtered),
        names[100..200],
        "names containing the filter, whatever its case"
    );
    assert!(filtered.contains("100 matching"));
    assert!(
        filtered.contains(r#"value="SYNC-1""#),
        "the filter stays in its box"
    );
    assert!(!filtered.contains("rel=\"next\""), "one page of matches");

    let (_, two_pages) = dash.page("/?q=sync").await;
    assert!(
        two_pages.contains(r#"href="/?q=sync&#38;page=2" rel="next""#),
        "the next page keeps the filter: {}",
        two_pages
            .split("class=\"pager\"")
            .nth(1)
            .unwrap_or_default()
    );
    let (_, spaced) = dash.page("/?q=a+b%26c").await;
    assert!(spaced.contains("No cronjob name contains “a b&#38;c”."));
    assert!(listed(&spaced).is_empty());

    for bad in ["/?page=0", "/?page=two", "/?page=-1"] {
        let (status, html) = dash.page(bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(html.contains("is not a page number"), "{bad}: {html}");
    }
}

#[tokio::test]
async fn the_jobs_list_of_triggered_jobs_pages_the_same_way() {
    let dash = Dashboard::start().await;
    let (_, empty) = dash.page("/jobs").await;
    assert!(
        empty.contains("No triggered jobs yet"),
        "no filter box on an empty list, but the way to make one"
    );
    assert!(!empty.contains(r#"id="f-q""#));
    for i in 0..3 {
        dash.create(json!({
            "name": format!("resize-{i}"),
            "runtime": {"kind": "process", "argv": ["true"]},
            "retry": {"max_attempts": 1, "backoff_base_ms": 1000, "backoff_cap_ms": 1000},
        }))
        .await;
    }
    let (status, html) = dash.page("/jobs?q=resize-2").await;
    assert_eq!(status, 200);
    assert_eq!(listed(&html), ["resize-2"]);
    assert!(html.contains(r#"name="back" value="/jobs?q=resize-2""#));
    assert!(!html.contains("class=\"pager\""), "one page, no pager");
}

#[tokio::test]
async fn the_services_page_lists_each_service_and_its_page_shows_its_instances() {
    let dash = Dashboard::start().await;
    let (status, empty) = dash.page("/services").await;
    assert_eq!(status, 200);
    assert!(empty.contains("No services yet"), "{empty}");

    for (name, replicas) in [("event-processor", 2), ("log-shipper", 1)] {
        let response = dash
            .http
            .post(format!("{}/api/v1/services", dash.url))
            .bearer_auth(&dash.admin)
            .json(&json!({
                "name": name,
                "runtime": {"kind": "process", "argv": ["sleep", "1000"]},
                "secret_env": {"TOKEN": "s3cr3t"},
                "service": {"replicas": replicas},
            }))
            .send()
            .await
            .expect("create");
        assert_eq!(response.status().as_u16(), 201, "create {name}");
    }
    let (status, html) = dash.page("/services").await;
    assert_eq!(status, 200);
    let rows: Vec<&str> = html
        .split("<tr data-service=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or_default())
        .collect();
    assert_eq!(rows, ["event-processor", "log-shipper"]);
    assert!(
        html.contains("href=\"/services/event-processor\""),
        "{html}"
    );
    assert!(html.contains("aria-current=\"page\">Services"), "{html}");

    // The instances queued: each links to the execution that runs it.
    dash._served
        .test
        .store
        .service_reconcile(chrono::Utc::now())
        .await
        .expect("reconcile");
    let (status, page) = dash.page("/services/event-processor").await;
    assert_eq!(status, 200, "{page}");
    for instance in ["0", "1"] {
        assert!(
            page.contains(&format!("<tr data-instance=\"{instance}\">")),
            "instance {instance}: {page}"
        );
    }
    let execution = page
        .split("href=\"/executions/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to an instance's execution")
        .to_owned();
    let (status, run) = dash.page(&format!("/executions/{execution}")).await;
    assert_eq!(status, 200, "{run}");
    assert!(run.contains("<dt>Instance</dt>"), "{run}");
    assert!(
        run.contains("href=\"/services/event-processor\""),
        "the crumb leads back to the service: {run}"
    );
    assert!(page.contains("2 desired"), "{page}");
    assert!(page.contains("Instances"), "{page}");
    assert!(page.contains("/services/event-processor/suspend"), "{page}");
    assert!(!page.contains("s3cr3t"), "secrets stay hidden: {page}");

    let (status, missing) = dash.page("/services/event-procesor").await;
    assert_eq!(status, 404);
    assert!(missing.contains("event-processor"), "a hint: {missing}");
}

#[tokio::test]
async fn a_jobs_page_links_its_chain_and_a_chained_executions_page_its_upstream_run() {
    let dash = Dashboard::start().await;
    let job = |name: &str, after: serde_json::Value| {
        json!({
            "name": name,
            "runtime": {"kind": "process", "argv": ["true"]},
            "queue": name,
            "after": after,
        })
    };
    dash.create(job("generate-reports", json!([]))).await;
    dash.create(job("send-report", json!(["generate-reports"])))
        .await;
    dash.create(job("page-oncall", json!(["generate-reports:failed"])))
        .await;

    let (status, upstream) = dash.page("/jobs/generate-reports").await;
    assert_eq!(status, 200);
    let followed = upstream
        .split("<dt>Followed by</dt>")
        .nth(1)
        .expect("a Followed by row");
    assert!(
        followed.contains(r#"<a href="/jobs/page-oncall">page-oncall</a>"#)
            && followed.contains(r#"<a href="/jobs/send-report">send-report</a>"#),
        "{followed}"
    );
    let (_, follower) = dash.page("/jobs/send-report").await;
    let after = follower
        .split("<dt>After</dt>")
        .nth(1)
        .expect("an After row");
    assert!(
        after.contains(r#"<a href="/jobs/generate-reports">generate-reports</a>"#),
        "{after}"
    );

    // A run of generate-reports that succeeds queues send-report, whose page links that run.
    let store = &dash._served.test.store;
    let now = chrono::Utc::now();
    let run = store
        .execution_enqueue(&panda_store::NewExecution::api("generate-reports"), now)
        .await
        .expect("enqueue")
        .execution;
    let claimed = store
        .execution_claim(
            &panda_store::ClaimRequest {
                worker_id: "w".into(),
                queues: vec!["generate-reports".into()],
                limit: 1,
                lease_ttl: std::time::Duration::from_secs(30),
            },
            now,
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    store
        .execution_finish(
            &panda_store::Finish {
                execution_id: run.id,
                token: claimed[0].lease.token,
                outcome: panda_store::Outcome::Succeeded,
                exit_code: Some(0),
                reason: None,
                image_digest: None,
            },
            now,
        )
        .await
        .expect("finish");
    let sent = store
        .execution_list(&panda_store::ExecutionFilter {
            job: Some("send-report".into()),
            ..panda_store::ExecutionFilter::default()
        })
        .await
        .expect("list")
        .executions;
    assert_eq!(sent.len(), 1);
    let (status, page) = dash.page(&format!("/executions/{}", sent[0].id)).await;
    assert_eq!(status, 200);
    let upstream_row = page
        .split("<dt>Upstream</dt>")
        .nth(1)
        .expect("an Upstream row");
    assert!(
        upstream_row.starts_with(&format!(
            r#"<dd><a href="/executions/{0}"><code>{0}</code></a> (generate-reports, succeeded)"#,
            run.id
        )),
        "{upstream_row}"
    );
}

#[tokio::test]
async fn monitors_have_a_page_of_their_own_and_their_ping_url_is_never_shown() {
    let dash = Dashboard::start().await;
    dash.create_cronjob("nightly-report").await;
    let response = dash
        .http
        .post(format!("{}/api/v1/jobs", dash.url))
        .bearer_auth(&dash.admin)
        .json(&json!({
            "name": "nightly-backup",
            "runtime": {"kind": "ping"},
            "schedule": {"cron": "0 3 * * *"},
            "monitor": {"grace_ms": 1_800_000},
        }))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status().as_u16(), 201);
    let created: serde_json::Value = response.json().await.expect("json");
    let path = created["ping"]["path"].as_str().expect("the URL, once");
    let token = path.trim_start_matches("/ping/").to_owned();
    assert!(token.starts_with("png_"), "{created}");

    let (status, home) = dash.page("/").await;
    assert_eq!(status, 200);
    assert_eq!(listed(&home), vec!["nightly-report"], "cronjobs only");
    let (status, monitors) = dash.page("/monitors").await;
    assert_eq!(status, 200);
    assert_eq!(listed(&monitors), vec!["nightly-backup"]);
    assert!(monitors.contains("Next ping due"), "{monitors}");
    assert!(monitors.contains("never pinged"), "{monitors}");
    assert!(
        !monitors.contains("/jobs/nightly-backup/trigger"),
        "nothing to trigger: {monitors}"
    );
    let (status, page) = dash.page("/jobs/nightly-backup").await;
    assert_eq!(status, 200);
    assert!(page.contains("/ping/********"), "{page}");
    assert!(page.contains("30m: a slot with no ping by then"), "{page}");
    assert!(!page.contains("/jobs/nightly-backup/trigger"), "{page}");
    for html in [&home, &monitors, &page] {
        assert!(!html.contains(&token), "the token is shown: {html}");
    }
}
