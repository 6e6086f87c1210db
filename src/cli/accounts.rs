//! `leadlink accounts`: what the store knows about each account, or (`--remote`) the key's
//! accounts as ConnectSafely lists them.

use super::{load_quietly, open_store, print_json};
use crate::connectsafely;
use crate::store::Overview;
use serde_json::json;
use std::path::Path;

pub async fn local(config_path: Option<&Path>) -> anyhow::Result<()> {
    let (config, store) = open_store(config_path).await?;
    let overview = Overview::read(&store, &config.accounts, chrono::Utc::now()).await?;
    print_json(json!({
        "accounts": overview.accounts,
        "apiKeyPaused": overview.key_pause.map(|k| k.reason),
        "pausedCrms": overview.crm_pauses,
    }))
}

pub async fn remote(config_path: Option<&Path>) -> anyhow::Result<()> {
    let config = load_quietly(config_path)?;
    let api_key = config
        .connectsafely
        .api_key
        .clone()
        .ok_or_else(|| anyhow::anyhow!("connectsafely.api_key is missing"))?;
    let client = connectsafely::Client::new(
        &config.connectsafely.base_url,
        api_key,
        config.connectsafely.timeout,
    )?;
    let accounts = client.accounts().await?;
    print_json(json!({ "accounts": accounts }))
}
