//! `leadlink demo`, run as the real binary with no configuration: every sample lead reaches
//! its status through the signed callback, and `--serve` keeps the admin API up.

use crate::harness::WAIT;
use std::process::{Command, Stdio};
use tokio::io::{AsyncBufReadExt, BufReader};

fn demo() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadlink"));
    // No config file and no LEADLINK_ variables: the demo needs neither.
    command.arg("demo").env_clear().env("PATH", "/usr/bin:/bin");
    command
}

/// The callback lines of one record, as `(status, rest of the line)`.
fn callbacks<'a>(output: &'a str, record: &str) -> Vec<(&'a str, &'a str)> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line
                .splitn(4, char::is_whitespace)
                .filter(|w| !w.is_empty());
            let _time = words.next()?;
            (words.next()? == record).then_some(())?;
            let rest = line.split_once(record)?.1.trim_start();
            let (status, details) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            (status != "posted").then_some((status, details.trim()))
        })
        .collect()
}

#[test]
fn the_demo_takes_every_sample_lead_to_its_status_and_exits_zero() {
    let output = demo().stderr(Stdio::inherit()).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}");
    let statuses =
        |record| -> Vec<&str> { callbacks(&stdout, record).iter().map(|c| c.0).collect() };
    assert_eq!(statuses("demo-jane"), ["queued", "sent"], "{stdout}");
    assert_eq!(
        statuses("demo-connected").last(),
        Some(&"already_connected")
    );
    assert_eq!(statuses("demo-pending").last(), Some(&"invitation_pending"));
    assert_eq!(statuses("demo-notfound").last(), Some(&"profile_not_found"));
    assert_eq!(statuses("demo-company"), ["invalid"], "{stdout}");
    assert_eq!(
        statuses("demo-held"),
        ["queued", "held", "sent"],
        "{stdout}"
    );
    assert_eq!(
        statuses("demo-paced-2"),
        ["queued", "scheduled", "sent"],
        "{stdout}"
    );
    // A waiting lead shows its ETA; a sent one whom it reached.
    let held = callbacks(&stdout, "demo-held");
    assert!(held[1].1.starts_with("ETA "), "{stdout}");
    assert!(held[2].1.starts_with("profileUrn urn:li:"), "{stdout}");
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("record "))
        .skip(2)
        .collect();
    assert_eq!(table.len(), 8, "{stdout}");
    assert!(table.iter().all(|row| row.ends_with(" ok")), "{stdout}");
    // The temporary store went with the run.
    let store = stdout
        .split_once(", store ")
        .and_then(|(_, rest)| rest.lines().next())
        .unwrap();
    assert!(
        !std::path::Path::new(store).exists(),
        "{store} is left behind"
    );
}

#[test]
fn a_data_directory_that_already_holds_a_store_is_refused() {
    let dir = std::env::temp_dir().join(format!("leadlink-demo-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("leadlink.db"), b"someone's store").unwrap();
    let output = demo().arg("--data").arg(&dir).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("already holds a leadlink store"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.join("leadlink.db")).unwrap(),
        b"someone's store"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_serve_it_keeps_its_store_and_admin_api_until_a_signal() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("leadlink-demo-test-{}", uuid::Uuid::new_v4()));
    let mut child = tokio::process::Command::from({
        let mut command = demo();
        command.arg("--serve").arg("--data").arg(&dir);
        command
    })
    .stdout(Stdio::piped())
    .kill_on_drop(true)
    .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut admin_url, mut token) = (None, None);
    tokio::time::timeout(WAIT * 2, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.trim().strip_prefix("admin API") {
                let (url, auth) = rest.trim().split_once(' ').unwrap();
                admin_url = Some(url.to_owned());
                token = auth
                    .strip_prefix("(Authorization: Bearer ")
                    .and_then(|t| t.strip_suffix(')'))
                    .map(str::to_owned);
            }
            if line.starts_with("  simulator") {
                break;
            }
        }
        anyhow::Ok(())
    })
    .await??;
    let (admin_url, token) = (admin_url.unwrap(), token.unwrap());
    let jobs: serde_json::Value = reqwest::Client::new()
        .get(&admin_url)
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let listed = jobs["jobs"].as_array().map_or(0, Vec::len);
    assert_eq!(listed, 8, "{jobs}");
    assert!(dir.join("leadlink.db").exists());

    Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()?;
    let status = tokio::time::timeout(WAIT, child.wait()).await??;
    assert!(status.success(), "{status}");
    // The user's directory keeps the store for a look afterwards.
    assert!(dir.join("leadlink.db").exists());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
