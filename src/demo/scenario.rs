//! What the demo sends and what it expects: the sample leads, the simulator's accounts that
//! make each outcome happen, and the configuration of the embedded service. No I/O here.

use crate::job::Status;
use serde_json::{Value, json};
use std::path::Path;

/// The account whose week is spent when the demo starts, and how long its week lasts.
pub const SPENT_ACCOUNT: &str = "acc_spent";
pub const SPENT_WEEK_SECONDS: u64 = 12;
/// The account with pacing on: any hour, any day, one send every [`PACED_SPACING_SECONDS`].
pub const PACED_ACCOUNT: &str = "acc_paced";
pub const PACED_SPACING_SECONDS: u64 = 8;
pub const DEFAULT_ACCOUNT: &str = "acc_demo";

/// One sample lead: who it names, on which account, and the statuses it must reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub record_id: &'static str,
    pub linkedin_url: &'static str,
    pub account_id: &'static str,
    /// A status the lead must pass through before its last one, if any.
    pub via: Option<Status>,
    pub last: Status,
    /// Sent only once this other record has reached its last status: the second paced lead
    /// must meet the spacing after a send, not race the first one.
    pub after: Option<&'static str>,
}

impl Sample {
    /// Whether the statuses seen for this lead, in order of arrival, meet its expectation.
    pub fn met_by(&self, seen: &[Status]) -> bool {
        let reached_last = seen.last() == Some(&self.last);
        let passed_via = self.via.is_none_or(|via| seen.contains(&via));
        reached_last && passed_via
    }

    /// The expectation as the summary prints it.
    pub fn expected(&self) -> String {
        match self.via {
            Some(via) => format!("{via} -> {}", self.last),
            None => self.last.to_string(),
        }
    }

    /// The signed event that carries this lead to `POST /webhooks/events`.
    pub fn event(&self) -> Value {
        json!({
            "type": "lead.qualified",
            "data": {
                "recordId": self.record_id,
                "linkedinUrl": self.linkedin_url,
                "accountId": self.account_id,
                "firstName": "Demo",
                "lastName": "Lead",
                "company": "Acme",
            }
        })
    }
}

/// Between them the samples reach every status the issue names. The simulator picks a
/// profile's fate by its slug's prefix (`connected-`, `pending-`, `notfound-`).
pub fn samples() -> Vec<Sample> {
    let sample = |record_id, linkedin_url, account_id, last| Sample {
        record_id,
        linkedin_url,
        account_id,
        via: None,
        last,
        after: None,
    };
    vec![
        sample(
            "demo-jane",
            "https://www.linkedin.com/in/jane-demo/",
            DEFAULT_ACCOUNT,
            Status::Sent,
        ),
        sample(
            "demo-connected",
            "https://www.linkedin.com/in/connected-sam/",
            DEFAULT_ACCOUNT,
            Status::AlreadyConnected,
        ),
        sample(
            "demo-pending",
            "https://www.linkedin.com/in/pending-alex/",
            DEFAULT_ACCOUNT,
            Status::InvitationPending,
        ),
        sample(
            "demo-notfound",
            "https://www.linkedin.com/in/notfound-kim/",
            DEFAULT_ACCOUNT,
            Status::ProfileNotFound,
        ),
        sample(
            "demo-company",
            "https://www.linkedin.com/company/acme/",
            DEFAULT_ACCOUNT,
            Status::Invalid,
        ),
        Sample {
            via: Some(Status::Held),
            ..sample(
                "demo-held",
                "https://www.linkedin.com/in/robin-demo/",
                SPENT_ACCOUNT,
                Status::Sent,
            )
        },
        sample(
            "demo-paced-1",
            "https://www.linkedin.com/in/ana-demo/",
            PACED_ACCOUNT,
            Status::Sent,
        ),
        Sample {
            via: Some(Status::Scheduled),
            after: Some("demo-paced-1"),
            ..sample(
                "demo-paced-2",
                "https://www.linkedin.com/in/ben-demo/",
                PACED_ACCOUNT,
                Status::Sent,
            )
        },
    ]
}

/// How the simulator's accounts start: [`SPENT_ACCOUNT`] has used its whole week, which
/// ends [`SPENT_WEEK_SECONDS`] from now.
pub fn sim_accounts() -> Vec<(&'static str, Value)> {
    vec![(
        SPENT_ACCOUNT,
        json!({"limit": 5, "used": 5, "weekSeconds": SPENT_WEEK_SECONDS}),
    )]
}

/// The secrets and addresses the demo generated for this run.
pub struct Wiring<'a> {
    pub data_dir: &'a Path,
    pub sim_url: &'a str,
    pub callback_url: &'a str,
    pub api_key: &'a str,
    pub admin_token: &'a str,
    pub events_secret: &'a str,
    pub callback_secret: &'a str,
}

/// The embedded service's configuration: the store in the data directory, no broker,
/// pacing only on [`PACED_ACCOUNT`] so that nothing else depends on the time of day.
pub fn config_text(wiring: &Wiring<'_>) -> String {
    let store = wiring.data_dir.join("leadlink.db");
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{admin_token}"

[database]
url = "sqlite://{store}"

[connectsafely]
base_url = "{sim_url}"
api_key = "{api_key}"
default_account_id = "{DEFAULT_ACCOUNT}"

[sources.events]
secrets = ["{events_secret}"]

[writeback.callback]
url = "{callback_url}"
secret = "{callback_secret}"

[accounts.defaults]
pacing = false
quota_refresh = "2s"

[accounts.{PACED_ACCOUNT}]
pacing = true
working_hours = "00:00-24:00"
working_days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
min_spacing = "{PACED_SPACING_SECONDS}s"
jitter = "0s"

[worker]
relay_interval = "200ms"
"#,
        store = store.display(),
        admin_token = wiring.admin_token,
        sim_url = wiring.sim_url,
        api_key = wiring.api_key,
        events_secret = wiring.events_secret,
        callback_url = wiring.callback_url,
        callback_secret = wiring.callback_secret,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_samples_reach_every_status_the_demo_promises() {
        let reached: Vec<Status> = samples()
            .iter()
            .flat_map(|s| s.via.into_iter().chain([s.last]))
            .collect();
        for status in [
            Status::Sent,
            Status::AlreadyConnected,
            Status::InvitationPending,
            Status::ProfileNotFound,
            Status::Invalid,
            Status::Held,
            Status::Scheduled,
        ] {
            assert!(reached.contains(&status), "no sample reaches {status}");
        }
    }

    #[test]
    fn a_lead_meets_its_expectation_only_by_its_last_status_after_the_one_it_must_pass() {
        let held = samples()
            .into_iter()
            .find(|s| s.record_id == "demo-held")
            .unwrap();
        assert!(held.met_by(&[Status::Queued, Status::Held, Status::Sent]));
        assert!(!held.met_by(&[Status::Queued, Status::Sent]), "never held");
        assert!(!held.met_by(&[Status::Held]), "not sent yet");
        assert!(!held.met_by(&[Status::Held, Status::Sent, Status::Failed]));
    }

    #[test]
    fn every_record_a_sample_waits_for_is_sent_before_it() {
        let samples = samples();
        for (i, sample) in samples.iter().enumerate() {
            if let Some(after) = sample.after {
                let earlier = samples[..i].iter().any(|s| s.record_id == after);
                assert!(earlier, "{} waits for {after}", sample.record_id);
            }
        }
    }

    #[test]
    fn the_demo_configuration_is_valid_and_embedded() {
        let dir = Path::new("/tmp/demo-check");
        let text = config_text(&Wiring {
            data_dir: dir,
            sim_url: "http://127.0.0.1:9100",
            callback_url: "http://127.0.0.1:9101/callback",
            api_key: "k",
            admin_token: "t",
            events_secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            callback_secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        });
        let config = Config::from_toml(&text).unwrap();
        assert!(config.broker.url.is_none());
        assert_eq!(
            config.database.url.expose(),
            "sqlite:///tmp/demo-check/leadlink.db"
        );
    }
}
