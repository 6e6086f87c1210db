//! The integration tests, one binary: each module covers one area against the real RabbitMQ
//! and PostgreSQL, and all of them share `harness`. Every test makes its own database,
//! queues, simulator and fake CRMs, so the tests run in parallel.

mod harness;

mod accounts;
mod chaos;
mod crash;
mod failures;
mod health;
mod healthcheck;
mod hubspot;
mod import;
mod metrics;
mod pipeline;
mod properties;
mod salesforce;
mod status;
mod store;
mod telemetry;
mod workers;
