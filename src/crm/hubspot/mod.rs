//! HubSpot's CRM v3 contacts API with a private app token: read a contact (enrichment) and
//! patch its status properties (writeback), staying under the `X-HubSpot-RateLimit-*` budget
//! so that our own calls never cause the 429s they would then have to wait out.

mod classify;
mod client;
mod config;
#[cfg(test)]
mod tests;

pub use classify::BudgetSpent;
pub use client::HubSpotClient;
pub use config::{HubSpotCrmConfig, HubSpotProperties};

#[derive(Debug, thiserror::Error)]
pub enum HubSpotError {
    #[error("crm.hubspot: {0}")]
    Config(String),
}
