//! `leadlink store copy`: a store moved from SQLite to PostgreSQL and back keeps every row,
//! and a store in use is left alone.

use crate::harness::process::lose_the_published_message;
use crate::harness::*;
use leadlink::job::Status;
use leadlink::store::SqlStore;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

fn copy(from: &str, to: &str) -> (bool, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_leadlink"))
        .args(["store", "copy", "--from", from, "--to", to])
        .output()
        .expect("leadlink runs");
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let said = String::from_utf8_lossy(&output.stderr).to_string();
    (output.status.success(), report, said)
}

fn job_as_the_cli_shows_it(config: &std::path::Path, id: &str) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_leadlink"))
        .args(["jobs", "show", id, "--config"])
        .arg(config)
        .output()
        .expect("leadlink runs");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Times as PostgreSQL keeps them: SQLite keeps the clock's nanoseconds, PostgreSQL whole
/// microseconds, so a copy through PostgreSQL drops the rest.
fn to_microseconds(value: Value) -> Value {
    match value {
        Value::String(text) => match chrono::DateTime::parse_from_rfc3339(&text) {
            Ok(at) if text.contains('T') => {
                let at = at.with_timezone(&chrono::Utc);
                let nanos = at.timestamp_subsec_nanos() % 1000;
                let at = at - chrono::Duration::nanoseconds(i64::from(nanos));
                serde_json::to_value(at).unwrap()
            }
            _ => Value::String(text),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(to_microseconds).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, to_microseconds(v)))
                .collect(),
        ),
        other => other,
    }
}

async fn create_database(name: &str) -> String {
    let admin = sqlx::PgPool::connect(&format!("{PG}/postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    format!("{PG}/{name}")
}

async fn drop_database(name: &str) {
    let admin = sqlx::PgPool::connect(&format!("{PG}/postgres"))
        .await
        .unwrap();
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await;
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_copied_to_postgres_and_back_keeps_every_row() -> anyhow::Result<()> {
    let env = TestEnv::embedded().await;
    let mut app = env.start(env.config()).await;
    let mut ids = Vec::new();
    for (record, profile) in [("crm-a", "copy-a"), ("crm-b", "copy-b")] {
        let (_, body) = app
            .send(&webhook_id(), &lead(record, profile, "acc_1"))
            .await;
        ids.push(job_id(&body));
    }
    for id in &ids {
        app.wait_for(*id, Status::Sent).await;
    }
    eventually(WAIT, "both callbacks are delivered", || async {
        env.scalar(
            "SELECT count(*) FROM writebacks WHERE state <> 'delivered'",
            &[],
        )
        .await
            == 0
    })
    .await;
    app.stop().await;

    let database = format!("leadlink_t_{}_copy", env.id);
    let postgres = create_database(&database).await;
    let (ok, report, said) = copy(&env.database_url, &postgres);
    assert!(ok, "{said} {report:#}");
    assert_eq!(report["verified"], true, "{report:#}");
    let tables = report["tables"].as_array().unwrap();
    let jobs = tables.iter().find(|t| t["table"] == "jobs").unwrap();
    assert_eq!(
        (jobs["source"].as_i64(), jobs["target"].as_i64()),
        (Some(2), Some(2))
    );
    let events = tables.iter().find(|t| t["table"] == "job_events").unwrap();
    assert!(events["target"].as_i64().unwrap() >= 4, "{report:#}");

    // Into a store that has jobs already, nothing is copied.
    let (ok, _, said) = copy(&env.database_url, &postgres);
    assert!(!ok && said.contains("empty store"), "{said}");

    let back = format!("sqlite://{}/back.db", env.dir.display());
    let (ok, report, said) = copy(&postgres, &back);
    assert!(ok && report["verified"] == true, "{said} {report:#}");
    let original = env.write_config(&env.config_text());
    let returned = env.write_config(&env.config_text().replace(&env.database_url, &back));
    for id in &ids {
        let id = id.to_string();
        assert_eq!(
            to_microseconds(job_as_the_cli_shows_it(&original, &id)),
            job_as_the_cli_shows_it(&returned, &id),
            "job {id} changed on the way"
        );
    }
    drop_database(&database).await;
    env.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_a_process_serves_is_not_copied() -> anyhow::Result<()> {
    let env = TestEnv::embedded().await;
    let mut app = env.start(env.config()).await;
    let target = format!("sqlite://{}/copy.db", env.dir.display());
    let (ok, _, said) = copy(&env.database_url, &target);
    assert!(!ok, "copied a store in use");
    assert!(said.contains("another leadlink process"), "{said}");
    app.stop().await;
    let (ok, report, said) = copy(&env.database_url, &target);
    assert!(ok, "once it stopped, the copy runs: {said} {report:#}");
    env.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn the_copy_moves_every_column_of_both_schemas() -> anyhow::Result<()> {
    let copied: BTreeSet<(String, String)> = leadlink::store::copy::copied_columns()
        .into_iter()
        .flat_map(|(table, columns)| {
            columns
                .into_iter()
                .map(move |column| (table.to_string(), column.to_string()))
        })
        .collect();
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let env = TestEnv::on(backend).await;
        let config = env.config();
        let store = SqlStore::connect(&config.database, std::time::Duration::ZERO).await?;
        leadlink::store::Store::close(&store).await;
        let columns: Vec<(String, String)> = match backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&env.database_url).await?;
                let rows = sqlx::query_as(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
                )
                .fetch_all(&pool)
                .await?;
                pool.close().await;
                rows
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&env.database_url).await?;
                let rows = sqlx::query_as(
                    "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\' \
                     AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                )
                .fetch_all(&pool)
                .await?;
                pool.close().await;
                rows
            }
        };
        let schema: BTreeSet<(String, String)> = columns.into_iter().collect();
        assert_eq!(
            schema, copied,
            "{backend:?}: the copy and the schema differ"
        );
        env.cleanup().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_embedded_queue_held_in_memory_is_sent_after_a_copy_to_server_mode()
-> anyhow::Result<()> {
    let embedded = TestEnv::embedded().await;
    let delivery = webhook_id();
    let event = lead("crm-moved", "moved-in-memory", "acc_1");
    lose_the_published_message(&embedded, &delivery, &event).await;

    // The server-mode store starts empty; its relay publishes only what its outbox holds.
    let server = TestEnv::new().await;
    let (ok, report, said) = copy(&embedded.database_url, &server.database_url);
    assert!(ok && report["verified"] == true, "{said} {report:#}");
    let mut app = server.start(server.config()).await;
    let (status, again) = app.send(&delivery, &event).await;
    assert_eq!(status, 200, "the copied idempotency key answers: {again}");
    app.wait_for(job_id(&again), Status::Sent).await;
    assert_eq!(server.invitations("acc_1", "moved-in-memory").await, 1);
    assert_eq!(embedded.total_invitations().await, 0);
    app.stop().await;
    server.cleanup().await;
    embedded.cleanup().await;
    Ok(())
}
