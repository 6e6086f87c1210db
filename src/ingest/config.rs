//! The sections the HTTP side owns: `[server]`, `[sources]` and `[faults]`, and the
//! slice of the configuration ingest reads.

use crate::account::policy::AccountsConfig;
use crate::connectsafely::ConnectSafelyConfig;
use crate::crm::{CrmConfig, WritebackConfig};
use crate::job::Source;
use crate::lead::MessageConfig;
use crate::secret::Secret;
use bytesize::ByteSize;
use serde::Deserialize;
use std::net::SocketAddr;

use super::hubspot::config::HubSpotSourceConfig;
use super::salesforce::config::SalesforceSourceConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub body_limit: ByteSize,
    /// `POST /admin/import` takes a whole CSV export: larger than any webhook.
    pub import_body_limit: ByteSize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            admin_token: None,
            body_limit: ByteSize::mib(1),
            import_body_limit: ByteSize::mib(64),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    pub events: Option<EventsSourceConfig>,
    pub hubspot: Option<HubSpotSourceConfig>,
    pub salesforce: Option<SalesforceSourceConfig>,
}

impl SourcesConfig {
    /// Where the CRM sources keep a lead's priority.
    pub fn priority_fields(&self) -> crate::crm::enrich::PriorityFields {
        let name = |field: Option<&String>| field.map(|f| f.trim().to_owned());
        crate::crm::enrich::PriorityFields {
            hubspot: name(
                self.hubspot
                    .as_ref()
                    .and_then(|h| h.priority_property.as_ref()),
            ),
            salesforce: name(
                self.salesforce
                    .as_ref()
                    .and_then(|s| s.priority_field.as_ref()),
            ),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSourceConfig {
    pub secrets: Vec<Secret>,
}

/// Crash points for the fault-injection tests. Never set these in production.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsConfig {
    /// Exit the process right after a job is committed, before it is published.
    pub exit_after_commit: bool,
    /// Exit right after a job's message is published and its outbox row forgotten: with
    /// the in-process queue, the message dies with the process.
    pub exit_after_publish: bool,
}

/// What ingest reads of the configuration: whole sections, under the names the file gives
/// them, so that ingest needs nothing of `config`.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub server: ServerConfig,
    pub connectsafely: ConnectSafelyConfig,
    pub sources: SourcesConfig,
    pub crm: CrmConfig,
    pub accounts: AccountsConfig,
    pub writeback: WritebackConfig,
    pub message: MessageConfig,
    pub faults: FaultsConfig,
}

impl IngestConfig {
    /// The account for `source`'s records whose owner is not mapped: the source's
    /// `account_id`, else `connectsafely.default_account_id`.
    pub fn fallback_account(&self, source: Source) -> Option<String> {
        let own = match source {
            Source::HubSpot => self
                .sources
                .hubspot
                .as_ref()
                .and_then(|s| s.account_id.clone()),
            Source::Salesforce => self
                .sources
                .salesforce
                .as_ref()
                .and_then(|s| s.account_id.clone()),
            Source::Events => None,
        };
        own.or_else(|| self.connectsafely.default_account_id.clone())
    }
}
