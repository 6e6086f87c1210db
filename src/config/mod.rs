//! One typed configuration: defaults < TOML file < `LEADLINK_<SECTION>__<KEY>` env vars.
//!
//! Every secret may be written inline, set through the environment, or read from a file
//! named by the sibling `<key>_file` key. Loading merges the sources once, reads those
//! files, then reads each section on its own so that one bad key does not hide the
//! problems in the others; every problem found is reported at once.

mod check;
mod secret_files;
mod sections;

pub use sections::*;
// The sections that live beside the code using them, under their old paths too.
pub use crate::connectsafely::ConnectSafelyConfig;
pub use crate::crm::{CallbackConfig, CrmConfig, WritebackConfig, WritebackRetryConfig};
pub use crate::ingest::config::{EventsSourceConfig, FaultsConfig, ServerConfig, SourcesConfig};
pub use crate::lead::MessageConfig;
pub use crate::queue::BrokerConfig;
pub use crate::retry::RetryConfig;
pub use crate::store::DatabaseConfig;
pub use crate::telemetry::{MetricsConfig, TelemetryConfig};

use crate::account::policy::AccountsConfig;
use crate::ingest::IngestConfig;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Every problem found, one per line, so a user fixes a file in one pass.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Declares the sections once: the struct's fields, the names a file may use, and how
/// each is read.
macro_rules! sections {
    ($($name:ident: $type:ty,)*) => {
        #[derive(Debug, Clone, Default)]
        pub struct Config {
            $(pub $name: $type,)*
        }

        const SECTIONS: &[&str] = &[$(stringify!($name)),*];

        impl Config {
            /// Reads every section of `root`; one that cannot be read keeps its defaults
            /// and is named in `unreadable`.
            fn read_sections(
                root: &Dict,
                problems: &mut Vec<String>,
                unreadable: &mut Vec<&'static str>,
            ) -> Config {
                let mut config = Config::default();
                $(
                    if let Some(value) = root.get(stringify!($name)) {
                        match value.deserialize::<$type>() {
                            Ok(section) => config.$name = section,
                            Err(error) => {
                                unreadable.push(stringify!($name));
                                problems.extend(error.into_iter().map(|e| describe(stringify!($name), &e)));
                            }
                        }
                    }
                )*
                config
            }
        }
    };
}

sections! {
    server: ServerConfig,
    log: LogConfig,
    broker: BrokerConfig,
    database: DatabaseConfig,
    connectsafely: ConnectSafelyConfig,
    sources: SourcesConfig,
    crm: CrmConfig,
    accounts: AccountsConfig,
    writeback: WritebackConfig,
    message: MessageConfig,
    retry: RetryConfig,
    worker: WorkerConfig,
    metrics: MetricsConfig,
    telemetry: TelemetryConfig,
    faults: FaultsConfig,
}

impl Config {
    /// The sections ingest reads.
    pub fn ingest(&self) -> IngestConfig {
        IngestConfig {
            server: self.server.clone(),
            connectsafely: self.connectsafely.clone(),
            sources: self.sources.clone(),
            crm: self.crm.clone(),
            accounts: self.accounts.clone(),
            writeback: self.writeback.clone(),
            message: self.message.clone(),
            faults: self.faults.clone(),
        }
    }

    /// Loads defaults < `file` < environment, reads `*_file` secrets and checks the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(vec![format!(
                    "config file {} does not exist",
                    path.display()
                )]));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only `LEADLINK_<SECTION>__<KEY>` is configuration; a stray `LEADLINK_HOME` is not.
        figment = figment.merge(
            Env::prefixed("LEADLINK_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        Self::from_figment(figment)
    }

    /// Parses a TOML document (tests and `check-config` use this path too).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut root = match figment.find_value("") {
            Ok(Value::Dict(_, root)) => root,
            Ok(_) => Dict::new(),
            // A file that is not TOML: every section is unreadable, as each would say.
            Err(error) => {
                return Err(ConfigError::Invalid(
                    SECTIONS
                        .iter()
                        .flat_map(|section| {
                            error.clone().into_iter().map(|e| describe(section, &e))
                        })
                        .collect(),
                ));
            }
        };
        let mut problems: Vec<String> = root
            .keys()
            .filter(|key| !SECTIONS.contains(&key.as_str()))
            .map(|key| format!("unknown section `{key}`"))
            .collect();
        let mut more = Vec::new();
        let unread = secret_files::read_into(&mut root, &mut more);
        let mut unreadable = Vec::new();
        let config = Config::read_sections(&root, &mut problems, &mut unreadable);
        config.check(&mut more);
        // A section that could not be read holds defaults, so what is said about it would
        // mislead; a secret whose file could not be read is not "missing" as well.
        problems.extend(more.into_iter().filter(|problem| {
            !unreadable
                .iter()
                .any(|section| problem.starts_with(&format!("{section}.")))
                && !unread.iter().any(|key| {
                    problem.starts_with(&format!("{key} "))
                        || problem.starts_with(&format!("{key}:"))
                })
        }));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

fn describe(section: &str, error: &figment::Error) -> String {
    // figment reports the path relative to the extracted section, in no reliable order.
    let inner: Vec<&str> = error
        .path
        .iter()
        .map(String::as_str)
        .filter(|part| *part != section)
        .collect();
    if inner.is_empty() {
        format!("{section}: {}", error.kind)
    } else {
        format!("{section}.{}: {}", inner.join("."), error.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::Overflow;
    use bytesize::ByteSize;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn minimal() -> String {
        format!(
            r#"
            [connectsafely]
            api_key = "k"
            [sources.events]
            secrets = ["{SECRET}"]
            "#
        )
    }

    #[test]
    fn defaults_fill_everything_not_given() {
        let config = Config::from_toml(&minimal()).unwrap();
        assert_eq!(config.server.body_limit, ByteSize::mib(1));
        assert_eq!(config.server.import_body_limit, ByteSize::mib(64));
        assert_eq!(config.broker.prefix, "leadlink");
        assert_eq!(config.retry.max_attempts, 5);
        assert_eq!(config.message.overflow, Overflow::Invalid);
    }

    // Found by review while writing the config fuzz targets: `connectsafely.timeout =
    // "300000000000y"` made the lease check overflow `timeout * 2` and panic.
    #[test]
    fn absurd_durations_are_refused_without_panicking() {
        for (key, value) in [
            ("connectsafely.timeout", "300000000000y"),
            ("worker.lease", "1000000years"),
            ("retry.max_delay", "31days"),
        ] {
            let text = format!("{}\n{key} = \"{value}\"\n", minimal_dotted());
            let Err(ConfigError::Invalid(problems)) = Config::from_toml(&text) else {
                panic!("accepted {key} = {value}");
            };
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(key) && p.ends_with("must be at most 30 days")),
                "{problems:?}"
            );
        }
        let text = format!("{}\nretry.max_delay = \"30days\"\n", minimal_dotted());
        assert!(Config::from_toml(&text).is_ok());
    }

    #[test]
    fn an_in_memory_sqlite_store_is_refused() {
        for url in ["sqlite::memory:", "sqlite://file.db?mode=memory"] {
            let text = format!("{}\ndatabase.url = \"{url}\"\n", minimal_dotted());
            let Err(ConfigError::Invalid(problems)) = Config::from_toml(&text) else {
                panic!("accepted {url}");
            };
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("database.url: an in-memory SQLite store")),
                "{problems:?}"
            );
        }
        let text = format!(
            "{}\ndatabase.url = \"sqlite://leadlink.db\"\n",
            minimal_dotted()
        );
        assert!(Config::from_toml(&text).is_ok());
    }

    fn minimal_dotted() -> String {
        format!("connectsafely.api_key = \"k\"\nsources.events.secrets = [\"{SECRET}\"]")
    }

    #[test]
    fn every_problem_is_named_not_just_the_first() {
        let text = r#"
            [server]
            listen = "not an address"
            [broker]
            prefetch = 0
            [connectsafely]
            timeout = "soon"
            [sources.events]
            secrets = ["plain"]
            [retry]
            jitter = 3.0
            [bogus]
            x = 1
        "#;
        let Err(ConfigError::Invalid(problems)) = Config::from_toml(text) else {
            panic!("accepted a broken file");
        };
        let all = problems.join("\n");
        for needle in ["server.listen", "connectsafely.timeout", "bogus"] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let text = r#"
            [broker]
            prefetch = 0
            [sources.events]
            secrets = ["plain"]
            [retry]
            jitter = 3.0
            [worker]
            lease = "5s"
        "#;
        let Err(ConfigError::Invalid(problems)) = Config::from_toml(text) else {
            panic!("accepted a broken file");
        };
        let all = problems.join("\n");
        for needle in [
            "broker.prefetch",
            "api_key is missing",
            "sources.events.secrets[0]",
            "retry.jitter",
            "worker.lease",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
    }

    #[test]
    fn an_empty_admin_token_is_refused_rather_than_matching_anyone() {
        let text = format!("{}\n[server]\nadmin_token = \"  \"\n", minimal());
        let Err(ConfigError::Invalid(problems)) = Config::from_toml(&text) else {
            panic!("accepted an empty admin token");
        };
        assert!(
            problems.join("\n").contains("server.admin_token"),
            "{problems:?}"
        );
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = std::env::temp_dir().join(format!("leadlink-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key");
        std::fs::write(&key, "from-file\n").unwrap();
        let text = format!(
            "{}\n[server]\nadmin_token_file = \"{}\"\n",
            minimal(),
            key.display()
        );
        let config = Config::from_toml(&text).unwrap();
        assert_eq!(config.server.admin_token.unwrap().expose(), "from-file");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn metrics_and_telemetry_are_read_and_checked_with_the_rest() {
        let dir = std::env::temp_dir().join(format!("leadlink-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("metrics-token");
        std::fs::write(&token, "scrape-me\n").unwrap();
        let text = format!(
            "{}\n[metrics]\nlisten = \"127.0.0.1:9464\"\ntoken_file = \"{}\"\nstore_gauges = false\n\
             [telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsampling_ratio = 0.25\n",
            minimal(),
            token.display()
        );
        let config = Config::from_toml(&text).unwrap();
        assert_eq!(config.metrics.token.unwrap().expose(), "scrape-me");
        assert!(!config.metrics.store_gauges);
        assert_eq!(config.telemetry.sampling_ratio, 0.25);
        assert_eq!(config.telemetry.service_name, "leadlink");
        std::fs::remove_dir_all(dir).unwrap();

        let defaults = Config::from_toml(&minimal()).unwrap();
        assert!(defaults.metrics.store_gauges && defaults.metrics.listen.is_none());
        assert!(
            defaults.telemetry.otlp_endpoint.is_none(),
            "traces are off by default"
        );

        let text = format!(
            "{}\n[metrics]\ntoken = \"\"\n[telemetry]\nsampling_ratio = 2.0\n",
            minimal()
        );
        let Err(ConfigError::Invalid(problems)) = Config::from_toml(&text) else {
            panic!("accepted a ratio of 2");
        };
        let all = problems.join("\n");
        for needle in ["metrics.token is empty", "telemetry.sampling_ratio (2)"] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let config = Config::from_toml(&minimal()).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("MfKQ9r8"), "{shown}");
        assert!(!shown.contains("guest:guest"), "{shown}");
    }

    // A secret named by a `_file` key counts as given: an unreadable file is the one
    // problem said about it, not also "missing".
    #[test]
    fn an_unreadable_secret_file_is_the_only_problem_about_it() {
        let text = format!(
            r#"{}
            [sources.hubspot]
            client_secret_file = "/nonexistent/a"
            public_url = "https://hooks.example.com"
            on_creation = true
            [sources.salesforce]
            organization_id = "00D5g000004SNFhEAO"
            token_file = "/nonexistent/b"
            [sources.salesforce.callout.hmac]
            secret_file = "/nonexistent/c"
            [crm.hubspot]
            access_token_file = "/nonexistent/d"
            "#,
            minimal()
        );
        let Err(ConfigError::Invalid(problems)) = Config::from_toml(&text) else {
            panic!("accepted unreadable files");
        };
        for key in [
            "sources.hubspot.client_secret",
            "sources.salesforce.token",
            "sources.salesforce.callout.hmac.secret",
            "crm.hubspot.access_token",
        ] {
            let about: Vec<&String> = problems.iter().filter(|p| p.starts_with(key)).collect();
            assert_eq!(about.len(), 1, "{key}: {problems:#?}");
            assert!(
                about[0].starts_with(&format!("{key}_file /nonexistent/")),
                "{about:?}"
            );
        }
    }
}
