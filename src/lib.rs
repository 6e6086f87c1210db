//! leadlink: qualified CRM leads in, LinkedIn connection requests out through ConnectSafely,
//! and the outcome written back. See README.md and ../shared/DESIGN.md.

pub mod account;
pub mod app;
pub mod cli;
pub mod config;
pub mod connectsafely;
pub mod crm;
pub mod demo;
pub mod import;
pub mod ingest;
pub mod job;
pub mod lead;
pub mod outbox;
pub mod queue;
pub mod retry;
pub mod secret;
pub mod signature;
pub mod sim;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod worker;
