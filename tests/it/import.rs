//! `leadlink import` and `POST /admin/import` against the real PostgreSQL and RabbitMQ: a
//! file of good, duplicate and bad rows, all-or-nothing, `--skip-invalid`, re-import, dry
//! runs, and HubSpot rows sent and written back like webhooks.

use crate::harness::fake_hubspot::*;
use crate::harness::*;
use leadlink::config::Config;
use leadlink::job::Status;
use leadlink::store::{JobFilter, JobStore, SqlStore, Store};
use serde_json::{Value, json};

/// Good rows on lines 2 and 3, line 4 repeats line 3, lines 5 to 9 are bad (a bad URL, a
/// company page, no recordId, one field too many, invalid UTF-8).
fn mixed_file() -> Vec<u8> {
    let mut file = b"Record ID,LinkedIn URL,first name,Owner\n".to_vec();
    for row in [
        "r1,https://www.linkedin.com/in/imp-one,Ann,x",
        "r2,https://www.linkedin.com/in/imp-two,Bob,x",
        "r2,https://www.linkedin.com/in/imp-two,Bob,x",
        "r3,https://example.com/imp-three,Cy,x",
        "r4,https://www.linkedin.com/company/acme,Di,x",
        ",https://www.linkedin.com/in/imp-five,Ed,x",
        "r6,https://www.linkedin.com/in/imp-six,Fa,x,extra",
    ] {
        file.extend_from_slice(row.as_bytes());
        file.push(b'\n');
    }
    file.extend_from_slice(b"r7,https://www.linkedin.com/in/imp-\xff,Gi,x\n");
    file
}

const BAD_LINES: [u64; 5] = [5, 6, 7, 8, 9];

/// Runs `leadlink import` on `file`: its exit success, its summary, its stderr.
async fn import(env: &TestEnv, config: &str, file: &[u8], args: &[&str]) -> (bool, Value, String) {
    let path = env.write_config(config).with_extension("csv");
    std::fs::write(&path, file).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_leadlink"))
        .arg("import")
        .arg(&path)
        .args(args)
        .arg("--config")
        .arg(env.write_config(config))
        .output()
        .await
        .expect("leadlink import runs");
    let summary = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("no summary ({e}): {output:?}");
    });
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), summary, stderr)
}

fn bad_lines(summary: &Value) -> Vec<u64> {
    summary["invalid"]
        .as_array()
        .unwrap_or_else(|| panic!("no invalid rows listed: {summary}"))
        .iter()
        .map(|row| row["line"].as_u64().unwrap())
        .collect()
}

async fn store_jobs(env: &TestEnv) -> Vec<String> {
    let store = SqlStore::connect(&env.config().database, std::time::Duration::from_secs(2))
        .await
        .unwrap();
    let filter = JobFilter {
        record_id: None,
        status: None,
        account_id: None,
        limit: 1000,
    };
    let mut records: Vec<String> = store
        .jobs(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.record_id)
        .collect();
    records.sort();
    store.close().await;
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_bad_rows_imports_nothing_and_a_dry_run_changes_nothing() {
    let env = TestEnv::new().await;
    let paced = format!(
        "{}\n[accounts.\"acc_default\"]\npacing = true\ndaily_cap = 10\nmin_spacing = \"1m\"\n",
        env.config_text()
    );
    let (ok, summary, stderr) = import(&env, &paced, &mixed_file(), &[]).await;
    assert!(!ok, "bad rows must fail the import: {summary}");
    assert!(stderr.contains("5 bad rows"), "{stderr}");
    assert_eq!(bad_lines(&summary), BAD_LINES, "{summary}");
    let reasons: Vec<&str> = summary["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    for (reason, expected) in reasons.iter().zip([
        "URL",
        "not a person's profile",
        "recordId",
        "5 fields, the header has 4",
        "UTF-8",
    ]) {
        assert!(
            reason.contains(expected),
            "{reason:?} should say {expected:?}"
        );
    }
    assert_eq!(summary["imported"], false);
    assert_eq!(summary["ignoredColumns"], json!(["Owner"]));
    assert_eq!(
        store_jobs(&env).await,
        Vec::<String>::new(),
        "nothing imported"
    );

    let (ok, summary, _) = import(
        &env,
        &paced,
        &mixed_file(),
        &["--dry-run", "--skip-invalid"],
    )
    .await;
    assert!(ok, "{summary}");
    assert_eq!(
        (summary["new"].clone(), summary["duplicate"].clone()),
        (json!(2), json!(1)),
        "{summary}"
    );
    assert_eq!(bad_lines(&summary), BAD_LINES);
    // Ten a day on five working days: the two new jobs fit in one week.
    assert_eq!(
        summary["accounts"]["acc_default"],
        json!({"new": 2, "sendsPerWeek": 50, "weeks": 1}),
        "{summary}"
    );
    assert!(summary["projection"].as_str().unwrap().contains("ceil"));
    assert_eq!(
        store_jobs(&env).await,
        Vec::<String>::new(),
        "a dry run writes nothing"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_invalid_imports_the_good_rows_and_a_reimport_creates_nothing() {
    let env = TestEnv::new().await;
    let config = env.config_text();
    let (ok, summary, _) = import(&env, &config, &mixed_file(), &["--skip-invalid"]).await;
    assert!(ok, "{summary}");
    assert_eq!(summary["imported"], true);
    assert_eq!(
        (summary["new"].clone(), summary["duplicate"].clone()),
        (json!(2), json!(1)),
        "{summary}"
    );
    assert_eq!(bad_lines(&summary), BAD_LINES);
    assert_eq!(store_jobs(&env).await, ["r1", "r2"]);

    let (ok, again, _) = import(&env, &config, &mixed_file(), &["--skip-invalid"]).await;
    assert!(ok, "{again}");
    assert_eq!(
        (again["new"].clone(), again["duplicate"].clone()),
        (json!(0), json!(3)),
        "{again}"
    );
    assert_eq!(
        store_jobs(&env).await,
        ["r1", "r2"],
        "a re-import creates no job"
    );
    let (_, dry, _) = import(
        &env,
        &config,
        &mixed_file(),
        &["--skip-invalid", "--dry-run"],
    )
    .await;
    assert_eq!(
        (dry["new"].clone(), dry["duplicate"].clone()),
        (json!(0), json!(3)),
        "{dry}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_rows_are_sent_and_their_contacts_written_back() {
    let env = TestEnv::new().await;
    let hubspot = wiremock::MockServer::start().await;
    accept_patches(&hubspot).await;
    let text = format!(
        "{}\n[crm.hubspot]\nbase_url = \"{}\"\naccess_token = \"pat-import\"\ntimeout = \"2s\"\n",
        env.config_text(),
        hubspot.uri()
    );
    let app = env.start(Config::from_toml(&text).unwrap()).await;
    let file = format!(
        "recordId,linkedinUrl,priority\n701,{},2\n",
        profile_url("imp-hubspot")
    );
    let (ok, summary, _) = import(&env, &text, file.as_bytes(), &["--crm", "hubspot"]).await;
    assert!(ok, "{summary}");
    assert_eq!(summary["new"], 1, "{summary}");
    let job = app.only_job_of("701").await;
    assert_eq!(job.source, "hubspot");
    assert_eq!(job.priority, 2, "the file's priority column: {job:#?}");
    app.wait_for(job.id, Status::Sent).await;
    assert_eq!(env.invitations("acc_default", "imp-hubspot").await, 1);
    eventually(WAIT, "the contact is patched queued, then sent", || async {
        patched_statuses(&hubspot, 701, "linkedin_connection_status").await == ["queued", "sent"]
    })
    .await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_imports_a_posted_file_with_the_same_summary() {
    let env = TestEnv::new().await;
    let mut config = env.config();
    config.server.import_body_limit = bytesize::ByteSize::kib(64);
    let app = env.start(config).await;
    let post = |query: &'static str, body: Vec<u8>, token: &'static str| {
        let request = app
            .http
            .post(app.url(&format!("/admin/import{query}")))
            .bearer_auth(token)
            .body(body);
        async move { answer(request.send().await.unwrap()).await }
    };
    let (status, _) = post("", mixed_file(), "wrong-token").await;
    assert_eq!(status, 401);
    // Over the import limit: refused, before the body is read when the token is wrong. The
    // server may answer and close while the client still sends; a connection cut then is
    // a refusal too (an import reads its whole body before it answers).
    for (token, refused) in [("wrong-token", 401), (ADMIN_TOKEN, 413)] {
        let sent = app
            .http
            .post(app.url("/admin/import"))
            .bearer_auth(token)
            .body(vec![b'x'; 65 * 1024])
            .send()
            .await;
        if let Ok(response) = sent {
            assert_eq!(response.status(), refused, "token {token}");
        }
    }
    let (status, refused) = post("", mixed_file(), ADMIN_TOKEN).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(bad_lines(&refused), BAD_LINES);
    let (status, dry) = post("?dryRun=true&skipInvalid=true", mixed_file(), ADMIN_TOKEN).await;
    assert_eq!((status, dry["new"].clone()), (200, json!(2)), "{dry}");
    assert!(
        app.jobs_of("r1").await.is_empty(),
        "a dry run writes nothing"
    );
    let (status, done) = post(
        "?skipInvalid=true&account=acc_admin",
        mixed_file(),
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!((status, done["new"].clone()), (200, json!(2)), "{done}");
    let job = app.only_job_of("r1").await;
    assert_eq!(job.account_id, "acc_admin");
    app.wait_for(job.id, Status::Sent).await;
    env.cleanup().await;
}
