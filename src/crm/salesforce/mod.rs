//! Salesforce REST API: read a Lead or Contact, write the LinkedIn status back to it.
//!
//! Logs in with the OAuth 2.0 client-credentials flow of a connected app; Salesforce issues
//! no refresh token, so a 401 is answered by fetching a new access token once.

mod classify;
mod client;
mod config;
#[cfg(test)]
mod tests;

pub use client::SalesforceClient;
pub use config::{SalesforceCrmConfig, SalesforceFields};

#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    #[error("Salesforce client misconfigured: {0}")]
    Config(String),
}
