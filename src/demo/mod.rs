//! `leadlink demo`: the simulator, the embedded service and a signature-checking callback
//! receiver in one process, driven through the sample leads of [`scenario`]. Everything
//! goes over HTTP as it would in production: signed webhooks in, signed callbacks out.

mod receiver;
mod report;
mod scenario;

use crate::app::{self, AppError, Role, Running};
use crate::config::{Config, ConfigError};
use crate::job::Status;
use crate::signature::standard_webhooks::{Signer, Verifier};
use crate::sim::{self, Sim, SimOptions};
use base64::Engine;
use chrono::Utc;
use receiver::Delivery;
use scenario::{Sample, Wiring};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;

/// Every lead must have met its expectation by then; the bar is a minute in all.
const DEADLINE: Duration = Duration::from_secs(50);
const API_KEY: &str = "demo-api-key";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("{what}: {source}")]
    Http {
        what: String,
        source: reqwest::Error,
    },
}

pub struct Options {
    /// Where the store goes; a temporary directory, removed at the end, when `None`.
    pub data: Option<PathBuf>,
    /// Keep running after the summary, until `stop` completes.
    pub serve: bool,
}

/// Runs the demo; `Ok(true)` when every lead met its expectation. With `serve`, keeps
/// printing status changes after the summary until `stop` completes.
pub async fn run(options: Options, stop: impl Future<Output = ()>) -> Result<bool, DemoError> {
    let data = DataDir::prepare(options.data)?;
    let http = reqwest::Client::new();
    let sim_addr = serve(sim::router(Sim::new(SimOptions {
        api_keys: vec![API_KEY.to_owned()],
        per_minute_limits: false,
        ..SimOptions::default()
    })))
    .await?;
    let sim_url = format!("http://{sim_addr}");
    for (account, settings) in scenario::sim_accounts() {
        let url = format!("{sim_url}/_sim/accounts/{account}");
        let answer = http.put(url).json(&settings).send().await;
        answer
            .and_then(reqwest::Response::error_for_status)
            .map_err(|source| DemoError::Http {
                what: format!("setting up the simulator's account {account}"),
                source,
            })?;
    }
    let events_secret = generated_secret();
    let callback_secret = generated_secret();
    let verifier = Verifier::new(&[&callback_secret]).expect("a generated secret is valid");
    let (callback_router, arrivals) = receiver::router(verifier);
    let callback_addr = serve(callback_router).await?;
    let admin_token = uuid::Uuid::new_v4().simple().to_string();
    let text = scenario::config_text(&Wiring {
        data_dir: &data.path,
        sim_url: &sim_url,
        callback_url: &format!("http://{callback_addr}/callback"),
        api_key: API_KEY,
        admin_token: &admin_token,
        events_secret: &events_secret,
        callback_secret: &callback_secret,
    });
    let running = app::start(Config::from_toml(&text)?, Role::All).await?;
    let service = running.ingest_addr.expect("serve runs the ingest side");
    println!(
        "leadlink demo: ConnectSafely simulator at {sim_url}, embedded service at http://{service}, store {}",
        data.path.join("leadlink.db").display()
    );
    println!("times are UTC; every line below is a callback the receiver got, signature checked");
    let mut drive = Drive {
        http,
        signer: Signer::new(&events_secret).expect("a generated secret is valid"),
        url: format!("http://{service}/webhooks/events"),
        samples: scenario::samples(),
        seen: HashMap::new(),
        refused: 0,
    };
    let mut arrivals = arrivals;
    let all_met = drive.until_met(&mut arrivals).await;
    println!();
    println!("{}", report::table(&drive.samples, &drive.seen));
    if drive.refused > 0 {
        println!("{} callback deliveries were refused", drive.refused);
    }
    if options.serve {
        keep_serving(
            &running,
            &sim_url,
            &admin_token,
            &events_secret,
            &mut arrivals,
            stop,
        )
        .await;
    }
    running.stop().await;
    Ok(all_met && drive.refused == 0)
}

struct Drive {
    http: reqwest::Client,
    signer: Signer,
    url: String,
    samples: Vec<Sample>,
    seen: HashMap<String, Vec<Status>>,
    refused: u32,
}

impl Drive {
    /// Posts the leads, each once what it waits for is done, and prints the callbacks
    /// until every lead has met its expectation or the deadline passes.
    async fn until_met(&mut self, arrivals: &mut UnboundedReceiver<Delivery>) -> bool {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut posted = vec![false; self.samples.len()];
        loop {
            let ready: Vec<usize> = (0..self.samples.len())
                .filter(|&i| !posted[i])
                .filter(|&i| self.samples[i].after.is_none_or(|after| self.met(after)))
                .collect();
            for i in ready {
                posted[i] = true;
                self.post(&self.samples[i]).await;
            }
            if self.samples.iter().all(|s| s.met_by(self.statuses(s))) {
                return true;
            }
            tokio::select! {
                delivery = arrivals.recv() => match delivery {
                    Some(delivery) => self.record(delivery),
                    None => return false,
                },
                () = tokio::time::sleep_until(deadline) => {
                    println!("deadline of {}s passed", DEADLINE.as_secs());
                    return false;
                }
            }
        }
    }

    fn statuses(&self, sample: &Sample) -> &[Status] {
        self.seen.get(sample.record_id).map_or(&[], Vec::as_slice)
    }

    fn met(&self, record_id: &str) -> bool {
        self.samples
            .iter()
            .find(|s| s.record_id == record_id)
            .is_some_and(|s| s.met_by(self.statuses(s)))
    }

    fn record(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Change(change) => {
                println!("{}", report::change(Utc::now(), &change));
                self.seen
                    .entry(change.record_id.clone())
                    .or_default()
                    .push(change.status);
            }
            Delivery::Refused(reason) => {
                self.refused += 1;
                println!(
                    "{}  callback refused: {reason}",
                    Utc::now().format("%H:%M:%S")
                );
            }
        }
    }

    /// Posts one lead as a signed webhook; a refused or failed post is printed, and the
    /// lead then misses its expectation in the summary.
    async fn post(&self, sample: &Sample) {
        let body = sample.event().to_string().into_bytes();
        let webhook_id = format!("demo-{}", uuid::Uuid::new_v4());
        let now = Utc::now();
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json");
        for (name, value) in self
            .signer
            .headers(&webhook_id, now, &body)
            .expect("a generated id is a valid header")
        {
            request = request.header(name, value);
        }
        match request.body(body).send().await {
            Ok(response) => println!(
                "{}",
                report::posted(now, sample, response.status().as_u16())
            ),
            Err(e) => println!(
                "{}  {}: the post failed: {e}",
                now.format("%H:%M:%S"),
                sample.record_id
            ),
        }
    }
}

async fn keep_serving(
    running: &Running,
    sim_url: &str,
    admin_token: &str,
    events_secret: &str,
    arrivals: &mut UnboundedReceiver<Delivery>,
    stop: impl Future<Output = ()>,
) {
    let service = running.ingest_addr.expect("serve runs the ingest side");
    println!();
    println!("still running; Ctrl-C stops it");
    println!("  status page  http://{service}/status (log in with the admin token)");
    println!("  admin API    http://{service}/admin/jobs (Authorization: Bearer {admin_token})");
    println!(
        "  webhooks     POST http://{service}/webhooks/events (Standard Webhooks secret {events_secret})"
    );
    println!("  simulator    {sim_url} (control API under {sim_url}/_sim/)");
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            delivery = arrivals.recv() => match delivery {
                Some(Delivery::Change(change)) => println!("{}", report::change(Utc::now(), &change)),
                Some(Delivery::Refused(reason)) => println!("callback refused: {reason}"),
                None => return,
            },
        }
    }
}

/// A Standard Webhooks secret for this run only.
fn generated_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

async fn serve(router: axum::Router) -> Result<SocketAddr, DemoError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DemoError::Listen)?;
    let addr = listener.local_addr().map_err(DemoError::Listen)?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}

/// The directory of the demo's store: the user's, which must not hold a store yet (the
/// samples would meet the last run's jobs), or a temporary one removed on drop.
struct DataDir {
    path: PathBuf,
    temporary: bool,
}

impl DataDir {
    fn prepare(given: Option<PathBuf>) -> Result<DataDir, DemoError> {
        let (path, temporary) = match given {
            Some(path) => (path, false),
            None => {
                let name = format!("leadlink-demo-{}", uuid::Uuid::new_v4().simple());
                (std::env::temp_dir().join(name), true)
            }
        };
        let store = path.join("leadlink.db");
        if store.exists() {
            return Err(DemoError::Refused(format!(
                "{} already holds a leadlink store; give --data an empty directory",
                path.display()
            )));
        }
        std::fs::create_dir_all(&path).map_err(|source| DemoError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(DataDir { path, temporary })
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_that_holds_a_store_is_refused_and_left_alone() {
        let dir = std::env::temp_dir().join(format!("demo-data-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("leadlink.db"), b"a store").unwrap();
        let error = DataDir::prepare(Some(dir.clone())).err().unwrap();
        assert!(error.to_string().contains("already holds a leadlink store"));
        assert_eq!(std::fs::read(dir.join("leadlink.db")).unwrap(), b"a store");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_generated_secret_signs_and_verifies() {
        let secret = generated_secret();
        assert!(Verifier::new(&[&secret]).is_ok());
        assert_ne!(secret, generated_secret());
    }
}
