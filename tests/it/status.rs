//! The status page (`/status`): sign-in, CSRF and escaping over plain HTTP, and an
//! operator's round in a real headless Chromium (`harness::browser`).

use crate::harness::browser::Browser;
use crate::harness::*;
use chrono::Utc;
use leadlink::account::policy::AccountOverride;
use leadlink::job::Status;
use serde_json::json;
use std::path::PathBuf;

/// A client that shows redirects instead of following them: the tests check them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The `name=value` pair of the cookie `name` the response sets.
fn cookie_pair(response: &reqwest::Response, name: &str) -> Option<String> {
    set_cookies(response)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_string())
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

/// The CSRF token of the first form on a page.
fn csrf_in(page: &str) -> String {
    let start = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + 19;
    page[start..][..page[start..].find('"').unwrap()].to_string()
}

/// A signed-in operator over plain HTTP.
struct Operator {
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Operator {
    async fn sign_in(app: &TestApp) -> Operator {
        let http = client();
        let response = http
            .post(app.url("/status/login"))
            .form(&[("token", ADMIN_TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        let cookie = cookie_pair(&response, "leadlink_session").expect("a session cookie");
        let mut operator = Operator {
            http,
            cookie,
            csrf: String::new(),
        };
        let (status, page) = operator.get(app, "/status", None).await;
        assert_eq!(status, 200, "{page}");
        operator.csrf = csrf_in(&page);
        operator
    }

    /// GET `path` with the session (and a flash cookie, if given): status and body.
    async fn get(&self, app: &TestApp, path: &str, flash: Option<&str>) -> (u16, String) {
        let cookies = [Some(self.cookie.as_str()), flash].into_iter().flatten();
        let response = self
            .http
            .get(app.url(path))
            .header("cookie", cookies.collect::<Vec<_>>().join("; "))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn post(&self, app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(app.url(path))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// The page an action redirected to, with the flash it left.
    async fn follow(&self, app: &TestApp, response: reqwest::Response) -> String {
        assert_eq!(response.status(), 303);
        let flash = cookie_pair(&response, "leadlink_flash").expect("a flash message");
        let (status, page) = self.get(app, &location(&response), Some(&flash)).await;
        assert_eq!(status, 200, "{page}");
        page
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_every_status_path_answers_403() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let mut config = env.config();
    config.server.admin_token = None;
    let mut app = env.start(config).await;
    let http = client();
    for path in [
        "/status",
        "/status/login",
        "/status/status.css",
        "/status/jobs",
        "/status/jobs/0193a5b0-0000-7000-8000-000000000000",
        "/status/no-such-page",
    ] {
        let response = http.get(app.url(path)).send().await?;
        assert_eq!(response.status(), 403, "GET {path}");
    }
    // Refused before the body is read: no form at all gets 403 too, not 415.
    for path in ["/status/login", "/status/logout", "/status/jobs/x/cancel"] {
        let response = http.post(app.url(path)).body("{}").send().await?;
        assert_eq!(response.status(), 403, "POST {path} without a form");
    }
    for path in ["/status/login", "/status/writebacks/1/retry"] {
        let response = http
            .post(app.url(path))
            .form(&[("token", ADMIN_TOKEN), ("csrf", "x")])
            .send()
            .await?;
        assert_eq!(response.status(), 403, "POST {path}");
        assert!(cookie_pair(&response, "leadlink_session").is_none());
    }
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_takes_the_admin_token_and_keeps_a_strict_http_only_cookie() -> anyhow::Result<()>
{
    let env = TestEnv::new().await;
    let mut app = env.start(env.config()).await;
    let http = client();
    // Without a session the pages send the browser to the form.
    for path in ["/status", "/status/jobs"] {
        let response = http.get(app.url(path)).send().await?;
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(location(&response), "/status/login");
    }
    let forged = http
        .get(app.url("/status"))
        .header("cookie", "leadlink_session=1700000000.AAAA.BBBB")
        .send()
        .await?;
    assert_eq!(location(&forged), "/status/login");

    // A wrong token: 401, the form again with a message, and no cookie.
    let wrong = http
        .post(app.url("/status/login"))
        .form(&[("token", "not-the-token")])
        .send()
        .await?;
    assert_eq!(wrong.status(), 401);
    assert!(set_cookies(&wrong).is_empty(), "{:?}", set_cookies(&wrong));
    let page = wrong.text().await?;
    assert!(page.contains("That is not the admin token."), "{page}");
    assert!(page.contains(r#"name="token""#), "{page}");

    // The right one: a session cookie only scripts and other sites cannot use, for 12 h.
    let right = http
        .post(app.url("/status/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await?;
    assert_eq!(right.status(), 303);
    assert_eq!(location(&right), "/status");
    let cookie = set_cookies(&right)
        .into_iter()
        .find(|c| c.starts_with("leadlink_session="))
        .unwrap();
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/status",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(part), "{part} missing from {cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    // Behind a TLS proxy it only travels over https.
    let proxied = http
        .post(app.url("/status/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await?;
    assert!(cookie_pair(&proxied, "leadlink_session").is_some());
    assert!(
        set_cookies(&proxied).iter().any(|c| c.contains("Secure")),
        "{:?}",
        set_cookies(&proxied)
    );

    let operator = Operator::sign_in(&app).await;
    let (status, page) = operator.get(&app, "/status", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("<h2>Accounts</h2>"), "{page}");
    // Signing out needs the CSRF token too, and ends the cookie.
    let out = operator
        .post(&app, "/status/logout", &[("csrf", &operator.csrf)])
        .await;
    assert_eq!(location(&out), "/status/login");
    assert!(
        set_cookies(&out)
            .iter()
            .any(|c| c.starts_with("leadlink_session=;") && c.contains("Max-Age=0")),
        "{:?}",
        set_cookies(&out)
    );
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_sessions_csrf_token_and_a_refusal_changes_nothing() -> anyhow::Result<()>
{
    let env = TestEnv::new().await;
    let mut app = env.start(env.config()).await;
    let reset = Utc::now() + chrono::Duration::seconds(600);
    env.sim_put(
        "accounts/acc_wait",
        json!({"limit": 0, "weeklyReset": reset.to_rfc3339()}),
    )
    .await;
    let (_, body) = app
        .send(&webhook_id(), &lead("crm-csrf", "csrf-one", "acc_wait"))
        .await;
    let id = job_id(&body);
    app.wait_for(id, Status::Held).await;
    let cancel = format!("/status/jobs/{id}/cancel");

    let operator = Operator::sign_in(&app).await;
    let other = Operator::sign_in(&app).await;
    assert_ne!(operator.csrf, other.csrf);
    for form in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", "bm90IGl0")],
        vec![("csrf", other.csrf.as_str())],
    ] {
        let response = operator.post(&app, &cancel, &form).await;
        assert_eq!(response.status(), 403, "{form:?}");
    }
    // Without a session, even with a token from a page: back to the form.
    let signed_out = client()
        .post(app.url(&cancel))
        .form(&[("csrf", operator.csrf.as_str())])
        .send()
        .await?;
    assert_eq!(location(&signed_out), "/status/login");
    assert_eq!(app.job(id).await.status, Status::Held);

    // With it, the CLI's cancel, and the page says so.
    let back = format!("/status/jobs/{id}");
    let done = operator
        .post(&app, &cancel, &[("csrf", &operator.csrf), ("back", &back)])
        .await;
    assert_eq!(location(&done), back);
    let page = operator.follow(&app, done).await;
    assert!(
        page.contains("is cancelled (cancelled by operator)"),
        "{page}"
    );
    let job = app.job(id).await;
    assert_eq!(
        (job.status, job.error.as_deref()),
        (Status::Cancelled, Some("cancelled by operator"))
    );
    // A second cancel is refused with the store's reason; the job stays as it was.
    let again = operator
        .post(&app, &cancel, &[("csrf", &operator.csrf), ("back", &back)])
        .await;
    let page = operator.follow(&app, again).await;
    assert!(
        page.contains(&format!("job {id} is cancelled now; nothing was changed")),
        "{page}"
    );
    assert!(page.contains(r#"class="flash refused""#), "{page}");
    assert_eq!(app.job(id).await.changed_at, job.changed_at);
    // An action cannot send the browser to another site.
    let elsewhere = operator
        .post(
            &app,
            &cancel,
            &[("csrf", &operator.csrf), ("back", "https://evil.example/")],
        )
        .await;
    assert_eq!(location(&elsewhere), back);
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_record_ids_and_names_are_shown_escaped() -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let mut app = env.start(env.config()).await;
    let record = r#"<script>alert("record")</script>"#;
    let mut event = lead(record, "hostile-one", "acc_1");
    event["data"]["firstName"] = json!("<img src=x onerror=alert(1)>");
    event["data"]["company"] = json!("Tom & Jerry's");
    let (status, body) = app.send(&webhook_id(), &event).await;
    assert_eq!(status, 202, "{body}");
    let id = job_id(&body);
    app.wait_for(id, Status::Sent).await;

    let operator = Operator::sign_in(&app).await;
    let list = operator
        .http
        .get(app.url("/status/jobs"))
        .query(&[("record", record)])
        .header("cookie", &operator.cookie)
        .send()
        .await?;
    let policy = list.headers()["content-security-policy"]
        .to_str()?
        .to_string();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    let list = list.text().await?;
    assert!(list.contains(&format!("/status/jobs/{id}")), "{list}");
    let (_, page) = operator
        .get(&app, &format!("/status/jobs/{id}"), None)
        .await;
    for shown in [&list, &page] {
        assert!(
            shown.contains("&lt;script&gt;alert(&quot;record&quot;)&lt;/script&gt;"),
            "{shown}"
        );
        assert!(
            shown.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{shown}"
        );
        assert!(
            !shown.contains("<script") && !shown.contains("<img"),
            "{shown}"
        );
    }
    assert!(page.contains("Tom &amp; Jerry's"), "{page}");
    // The list is searchable: another record or status does not show the job.
    let (_, none) = operator
        .get(&app, "/status/jobs?status=failed&record=", None)
        .await;
    assert!(!none.contains(&format!("/status/jobs/{id}")), "{none}");
    let (bad, _) = operator.get(&app, "/status/jobs?status=bogus", None).await;
    assert_eq!(bad, 400);
    app.stop().await;
    env.cleanup().await;
    Ok(())
}

/// The issue's scenario in a real browser: a wrong token is refused; the operator signs
/// in, sees the account's week after a send, opens the job and its history, and retries a
/// parked writeback. With `LEADLINK_SCREENSHOTS=<dir>` it saves the main views there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_in_a_browser_sees_the_week_and_retries_a_parked_writeback()
-> anyhow::Result<()> {
    let shots = std::env::var_os("LEADLINK_SCREENSHOTS").map(PathBuf::from);
    let browser = Browser::start(&uuid::Uuid::new_v4().simple().to_string()).await;
    let env = TestEnv::new().await;
    let mut config = env.config();
    config.accounts.overrides.insert(
        "acc_1".into(),
        AccountOverride {
            timezone: Some("Europe/Berlin".parse().unwrap()),
            reserve: Some(5),
            ..AccountOverride::default()
        },
    );
    let mut app = env.start(config).await;
    // Other tools used 12 of the week; both of the job's callbacks are refused for good.
    env.sim_put("accounts/acc_1", json!({"used": 12})).await;
    env.callback.answers.lock().unwrap().extend([410, 410]);
    let (_, body) = app
        .send(&webhook_id(), &lead("crm-browser", "browser-one", "acc_1"))
        .await;
    let id = job_id(&body);
    app.wait_for(id, Status::Sent).await;
    eventually(WAIT, "both writebacks parked", || async {
        let job = app.job(id).await;
        job.writebacks.len() == 2 && job.writebacks.iter().all(|w| w.state == "parked")
    })
    .await;
    let job = app.job(id).await;
    let (queued_wb, sent_wb) = (job.writebacks[0].id, job.writebacks[1].id);
    // Around it, for the pictures: an account whose week others spent, and a company page.
    env.sim_put("accounts/acc_2", json!({"limit": 5, "used": 5}))
        .await;
    let (_, body) = app
        .send(&webhook_id(), &lead("crm-spent", "spent-one", "acc_2"))
        .await;
    app.wait_for(job_id(&body), Status::Held).await;
    let mut company = lead("crm-company", "x", "acc_1");
    company["data"]["linkedinUrl"] = json!("https://www.linkedin.com/company/acme");
    let (_, body) = app.send(&webhook_id(), &company).await;
    app.wait_for(job_id(&body), Status::Invalid).await;

    let page = |path: &str| app.url(path);
    let b = &browser;
    b.client.set_window_size(1280, 1000).await?;
    b.client.goto(&page("/status")).await?;
    assert!(
        b.client
            .current_url()
            .await?
            .path()
            .ends_with("/status/login")
    );
    // A wrong token is refused, and no cookie is set.
    b.type_into("#token", "wrong-token").await;
    b.click("form.login button").await;
    let refused = b.text("form.login p.flash.refused").await;
    assert_eq!(refused, "That is not the admin token.");
    assert!(b.client.get_all_cookies().await?.is_empty());
    b.type_into("#token", ADMIN_TOKEN).await;
    b.click("form.login button").await;
    b.text("section.accounts").await;
    assert_eq!(b.client.current_url().await?.path(), "/status");
    let session = b.client.get_named_cookie("leadlink_session").await?;
    assert_eq!(session.http_only(), Some(true));

    // The week after one send: 1 ours, 12 others', the reserve of 5, the rest remaining.
    let card = "#account-acc_1";
    let part = |name: &str| format!(r#"{card} strong[data-part="{name}"]"#);
    assert_eq!(b.text(&part("ours")).await, "1");
    assert_eq!(b.text(&part("others")).await, "12");
    assert_eq!(b.text(&part("reserve")).await, "5");
    assert_eq!(b.text(&part("free")).await, "72");
    let text = b.text(card).await;
    assert!(text.contains("times in Europe/Berlin"), "{text}");
    assert!(text.contains("1 of 18 sends"), "{text}");
    assert!(b.page_text().await.contains("Parked writebacks (2)"));
    let spent = b.text("#account-acc_2").await;
    assert!(spent.contains("weekly quota is spent"), "{spent}");
    assert!(
        spent.contains("1 waiting; the last would go Mon"),
        "{spent}"
    );
    b.screenshot(shots.as_deref(), "status-accounts", 1280)
        .await;
    b.screenshot(shots.as_deref(), "status-accounts-phone", 375)
        .await;
    b.client.set_window_size(1280, 1000).await?;

    // The job list, then the job's page with its history.
    b.click(r#"nav a[href="/status/jobs"]"#).await;
    b.text("form.filters").await;
    assert!(b.text("table.jobs").await.contains("crm-browser"));
    b.screenshot(shots.as_deref(), "status-jobs", 1280).await;
    b.click(&format!(r#"table.jobs a[href="/status/jobs/{id}"]"#))
        .await;
    let history = b.text("ol.timeline").await;
    for line in ["accepted", "POST /connect", "sent", "parked"] {
        assert!(history.contains(line), "{line} not in {history}");
    }

    // Retry the parked "sent": it is delivered. The older "queued" may not follow it.
    b.click(&format!("#writeback-{sent_wb} form.action button"))
        .await;
    assert!(
        b.text("p.flash")
            .await
            .contains(&format!("Writeback {sent_wb} re-armed")),
        "{}",
        b.page_text().await
    );
    eventually(WAIT, "the retried writeback delivered", || async {
        b.client.refresh().await.unwrap();
        b.text(&format!("#writeback-{sent_wb} .state")).await == "delivered"
    })
    .await;
    assert_eq!(env.callback_statuses(id), ["sent"]);
    // The older "queued" may never follow it: it is superseded, with no retry button.
    assert_eq!(
        b.text(&format!("#writeback-{queued_wb} .state")).await,
        "superseded"
    );
    assert!(
        b.client
            .find_all(fantoccini::Locator::Css(&format!(
                "#writeback-{queued_wb} form.action button"
            )))
            .await?
            .is_empty(),
        "{}",
        b.page_text().await
    );
    b.screenshot(shots.as_deref(), "status-job", 1280).await;

    browser.close().await;
    app.stop().await;
    env.cleanup().await;
    Ok(())
}
