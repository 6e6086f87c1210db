//! The account reads that cost no quota: `GET /account/{id}/quota`, `GET /account/status`
//! and `GET /accounts`.
//!
//! Parsing is lenient on purpose: the vendor documents these bodies only in prose, so unknown
//! fields are ignored, optional fields may be absent or null, and only what a caller cannot do
//! without (a CONNECT quota's `used` and `limit`, an account's id) makes an answer unreadable.

use super::{ApiError, Client, RateLimit, encode_segment, parse_time};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What `GET /account/{accountId}/quota` says about connection requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaResponse {
    /// The CONNECT feature's weekly window, or its only window; `None` when the body has no
    /// CONNECT quota.
    pub connect: Option<QuotaWindow>,
    /// The `X-RateLimit-*` headers, if the answer carried them.
    pub rate_limit: Option<RateLimit>,
}

/// One feature's usage in one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaWindow {
    /// Every action on the account, not only ours.
    pub used: i64,
    /// The vendor's cap: the request past it gets the 429 hold.
    pub limit: i64,
    /// LinkedIn's own cap, above the vendor's.
    pub linkedin_limit: Option<i64>,
    pub remaining: i64,
    pub limit_reached: bool,
    pub reset_at: Option<DateTime<Utc>>,
    /// `weekly` or `daily` as the API says it; `unknown` when it says nothing.
    pub window: String,
}

/// What `GET /account/status` says about one LinkedIn account.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    /// `AVAILABLE`, `IN_USE`, `ERROR`, `WARMUP`, `UNKNOWN`, ... as sent; `UNKNOWN` if absent.
    pub status: String,
    /// Only an explicit `false` disables an account.
    pub enabled: bool,
    pub has_tokens: Option<bool>,
}

impl AccountStatus {
    /// Why sending from this account must pause, or `None` when it may go on. `IN_USE`,
    /// `WARMUP` and `UNKNOWN` do not block: the vendor still accepts requests then.
    pub fn blocks_sending(&self) -> Option<String> {
        if !self.enabled {
            Some("account is disabled".to_string())
        } else if self.status.trim().eq_ignore_ascii_case("ERROR") {
            Some("account is in error".to_string())
        } else {
            None
        }
    }
}

/// One of the key's accounts, as `GET /accounts` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteAccount {
    pub id: String,
    pub name: Option<String>,
    pub status: Option<String>,
    pub enabled: Option<bool>,
}

impl Client {
    /// `GET /account/{accountId}/quota`: database-only on the vendor's side, safe to poll.
    pub async fn quota(&self, account_id: &str) -> Result<QuotaResponse, ApiError> {
        const CALL: &str = "GET /account/{accountId}/quota";
        let url = format!(
            "{}/account/{}/quota",
            self.base_url,
            encode_segment(account_id)
        );
        let answer = self
            .get("account_quota", &url)
            .await?
            .success(Some(account_id))?;
        let body: QuotaBody = answer.parse(CALL)?;
        let connect = connect_window(body.quotas.as_deref().unwrap_or_default())
            .map_err(|reason| ApiError::Unreadable { call: CALL, reason })?;
        Ok(QuotaResponse {
            connect,
            rate_limit: RateLimit::from_headers(&answer.headers),
        })
    }

    /// `GET /account/status?accountId=...`.
    pub async fn account_status(&self, account_id: &str) -> Result<AccountStatus, ApiError> {
        let url = format!(
            "{}/account/status?accountId={}",
            self.base_url,
            encode_segment(account_id)
        );
        let body: StatusBody = self
            .get("account_status", &url)
            .await?
            .success(Some(account_id))?
            .parse("GET /account/status")?;
        Ok(AccountStatus {
            status: body.status.unwrap_or_else(|| "UNKNOWN".to_string()),
            enabled: body.enabled.unwrap_or(true),
            has_tokens: body.has_tokens,
        })
    }

    /// `GET /accounts`: every LinkedIn account the key may use.
    pub async fn accounts(&self) -> Result<Vec<RemoteAccount>, ApiError> {
        const CALL: &str = "GET /accounts";
        let body: Value = self.get_accounts().await?.parse(CALL)?;
        remote_accounts(body).map_err(|reason| ApiError::Unreadable { call: CALL, reason })
    }
}

#[derive(Deserialize)]
struct QuotaBody {
    #[serde(default)]
    quotas: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody {
    status: Option<String>,
    enabled: Option<bool>,
    has_tokens: Option<bool>,
}

/// The CONNECT window, weekly preferred. Entries are read as loose JSON so that another
/// feature's odd entry cannot make the CONNECT one unreadable.
fn connect_window(quotas: &[Value]) -> Result<Option<QuotaWindow>, String> {
    let is = |entry: &Value, key: &str, wanted: &str| {
        text(entry, key).is_some_and(|v| v.trim().eq_ignore_ascii_case(wanted))
    };
    let connect = || quotas.iter().filter(|q| is(q, "feature", "CONNECT"));
    let Some(entry) = connect()
        .find(|q| is(q, "window", "weekly"))
        .or_else(|| connect().next())
    else {
        return Ok(None);
    };
    let required = |key: &str| {
        count(entry, key).ok_or_else(|| format!("the CONNECT quota has no readable `{key}`"))
    };
    let used = required("used")?;
    let limit = required("limit")?;
    Ok(Some(QuotaWindow {
        used,
        limit,
        linkedin_limit: count(entry, "linkedinLimit"),
        remaining: count(entry, "remaining").unwrap_or_else(|| limit.saturating_sub(used).max(0)),
        limit_reached: entry
            .get("limitReached")
            .and_then(Value::as_bool)
            .unwrap_or(used >= limit),
        reset_at: text(entry, "resetAt").and_then(parse_time),
        window: text(entry, "window").unwrap_or("unknown").to_string(),
    }))
}

fn text<'a>(entry: &'a Value, key: &str) -> Option<&'a str> {
    entry.get(key).and_then(Value::as_str)
}

/// A count as a JSON API may write it: an integer, a whole float, or a numeric string.
fn count(entry: &Value, key: &str) -> Option<i64> {
    match entry.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAccount {
    id: Option<Value>,
    account_id: Option<Value>,
    name: Option<String>,
    full_name: Option<String>,
    display_name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    status: Option<String>,
    enabled: Option<bool>,
}

impl RawAccount {
    fn id(&self) -> Option<String> {
        [&self.id, &self.account_id]
            .into_iter()
            .flatten()
            .find_map(|id| match id {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    }

    /// A whole name if one is given, else the first and last names joined.
    fn name(&self) -> Option<String> {
        let given = |names: &[&Option<String>]| -> Vec<String> {
            names
                .iter()
                .filter_map(|n| n.as_deref())
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        };
        let whole = given(&[&self.name, &self.full_name, &self.display_name]);
        let parts = given(&[&self.first_name, &self.last_name]);
        whole
            .into_iter()
            .next()
            .or_else(|| (!parts.is_empty()).then(|| parts.join(" ")))
    }
}

/// The list from a bare array or from `{"accounts": [...]}`: the vendor documents the fields,
/// not the envelope.
fn remote_accounts(body: Value) -> Result<Vec<RemoteAccount>, String> {
    let list = match body {
        Value::Array(list) => list,
        Value::Object(mut object) => match object.remove("accounts") {
            Some(Value::Array(list)) => list,
            Some(Value::Null) | None => return Err("no `accounts` list".to_string()),
            Some(_) => return Err("`accounts` is not a list".to_string()),
        },
        _ => return Err("neither a list nor an object".to_string()),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let raw: RawAccount =
                serde_json::from_value(entry).map_err(|e| format!("accounts[{i}]: {e}"))?;
            let id = raw.id().ok_or_else(|| format!("accounts[{i}] has no id"))?;
            Ok(RemoteAccount {
                name: raw.name(),
                id,
                status: raw.status,
                enabled: raw.enabled,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
