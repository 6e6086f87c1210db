//! The integration tests, one binary: each module covers one area against the real RabbitMQ
//! and PostgreSQL, and all of them share `harness`. Every test makes its own database,
//! queues, simulator and fake CRMs, so the tests run in parallel.

mod harness;

/// Runs each test body twice, as `<name>::postgres` and `<name>::sqlite`, so that
/// `cargo test --test it sqlite` runs where no server exists. The body gets the `Backend`.
macro_rules! both_backends {
    ($($(#[doc = $doc:literal])* async fn $name:ident($backend:ident) -> $ret:ty $body:block)+) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: $crate::harness::Backend) -> $ret $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> $ret {
                run($crate::harness::Backend::Postgres).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> $ret {
                run($crate::harness::Backend::Sqlite).await
            }
        }
    )+};
}

mod accounts;
mod call_off;
mod chaos;
mod copy;
mod crash;
mod demo;
mod embedded;
mod failures;
mod health;
mod healthcheck;
mod hubspot;
mod import;
mod metrics;
mod pipeline;
mod priority;
mod properties;
mod salesforce;
mod shadow;
mod status;
mod store;
mod telemetry;
mod workers;
