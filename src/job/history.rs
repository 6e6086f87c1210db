//! What a job's history says about the calls behind a transition: one `api_call` event
//! each, its `detail` the serialised `CallRecord` (the admin API shows it as is).

use super::{Source, Status};
use crate::connectsafely::{ConnectResponse, RateLimit, Relationship};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CallRecord {
    Call {
        call: Call,
        /// Why the call was made, where a call has several reasons.
        #[serde(skip_serializing_if = "Option::is_none")]
        why: Option<String>,
        #[serde(flatten)]
        result: CallResult,
    },
    /// Not a call: the job follows another job that has its lead.
    #[serde(rename_all = "camelCase")]
    SameLeadAs { same_lead_as: Uuid, status: Status },
}

/// The call, as the history names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Call {
    #[serde(rename = "POST /connect")]
    Connect,
    #[serde(rename = "GET /relationship")]
    Relationship,
    #[serde(rename = "GET /account quota")]
    AccountQuota,
    #[serde(rename = "GET /account quota and status")]
    AccountReading,
    #[serde(rename = "read CRM record")]
    CrmRead,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged, rename_all = "camelCase")]
pub enum CallResult {
    /// No usable answer: the error says why.
    Failed {
        #[serde(skip_serializing_if = "Option::is_none")]
        attempt: Option<i32>,
        error: String,
    },
    #[serde(rename_all = "camelCase")]
    Sent {
        attempt: i32,
        status: u16,
        body: serde_json::Value,
        rate_limit: Option<RateLimit>,
    },
    #[serde(rename_all = "camelCase")]
    RelationshipFound {
        connected: bool,
        invitation_sent: bool,
        status: Option<String>,
    },
    /// The API answered 404 for the profile.
    ProfileNotFound { status: u16 },
    AccountRead {
        quota: Option<QuotaSeen>,
        status: String,
        enabled: bool,
    },
    CrmRead {
        source: Source,
        record: String,
        result: serde_json::Value,
    },
}

/// The account's CONNECT quota as the quota endpoint gave it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSeen {
    pub used: i64,
    pub limit: i64,
    pub remaining: i64,
    pub reset_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl CallRecord {
    pub fn failed(call: Call, why: Option<&str>, error: impl ToString) -> CallRecord {
        CallRecord::Call {
            call,
            why: why.map(str::to_owned),
            result: CallResult::Failed {
                attempt: None,
                error: error.to_string(),
            },
        }
    }

    /// A `POST /connect` and what came of it.
    pub fn connect<E: ToString>(attempt: i32, result: &Result<ConnectResponse, E>) -> CallRecord {
        let result = match result {
            Ok(r) => CallResult::Sent {
                attempt,
                status: r.status,
                body: r.body.clone(),
                rate_limit: r.rate_limit.clone(),
            },
            Err(e) => CallResult::Failed {
                attempt: Some(attempt),
                error: e.to_string(),
            },
        };
        CallRecord::Call {
            call: Call::Connect,
            why: None,
            result,
        }
    }

    /// Whether it records a `POST /connect`.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            CallRecord::Call {
                call: Call::Connect,
                ..
            }
        )
    }

    /// A relationship answer: `None` for the API's 404.
    pub fn relationship(answer: Option<&Relationship>, why: &str) -> CallRecord {
        let result = match answer {
            Some(r) => CallResult::RelationshipFound {
                connected: r.connected,
                invitation_sent: r.invitation_sent,
                status: r.status.clone(),
            },
            None => CallResult::ProfileNotFound { status: 404 },
        };
        CallRecord::Call {
            call: Call::Relationship,
            why: Some(why.to_owned()),
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_history_shows_calls_by_name_with_their_answers() {
        let found = Relationship {
            connected: false,
            invitation_sent: true,
            invitation_received: false,
            status: Some("PENDING".into()),
            profile_urn: None,
        };
        assert_eq!(
            serde_json::to_value(CallRecord::relationship(Some(&found), "in doubt")).unwrap(),
            json!({"call": "GET /relationship", "why": "in doubt", "connected": false,
                   "invitationSent": true, "status": "PENDING"})
        );
        let timeout: Result<ConnectResponse, &str> = Err("timed out");
        assert!(CallRecord::connect(2, &timeout).is_connect());
        assert!(!CallRecord::relationship(Some(&found), "in doubt").is_connect());
        assert_eq!(
            serde_json::to_value(CallRecord::connect(2, &timeout)).unwrap(),
            json!({"call": "POST /connect", "attempt": 2, "error": "timed out"})
        );
        let same = CallRecord::SameLeadAs {
            same_lead_as: Uuid::nil(),
            status: Status::Sent,
        };
        assert_eq!(
            serde_json::to_value(same).unwrap(),
            json!({"sameLeadAs": Uuid::nil(), "status": "sent"})
        );
    }
}
