//! What Salesforce's answers mean: pure functions over status and body.

use crate::crm::api::{CallFailure, RecordFields};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// One entry of the REST API's error array.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    fields: Vec<String>,
}

/// What a non-2xx answer from the REST API means. A 401 that reaches this is one that a
/// fresh token did not cure.
pub(super) fn classify(status: u16, retry_after: Option<Duration>, body: &str) -> CallFailure {
    let errors: Vec<ApiError> = serde_json::from_str(body).unwrap_or_default();
    let text = describe(status, &errors, body);
    let has = |code: &str| errors.iter().any(|e| e.error_code == code);
    // Deleted or merged records answer ENTITY_IS_DELETED; converted Leads refuse updates.
    let converted = errors.iter().any(|e| {
        e.error_code.contains("CONVERTED") || e.message.to_lowercase().contains("converted lead")
    });
    if status == 404 || has("ENTITY_IS_DELETED") || converted {
        return CallFailure::Gone { reason: text };
    }
    // REQUEST_LIMIT_EXCEEDED is the org's rolling API allowance (403); a locked row is
    // another transaction holding the record for a moment (400).
    if has("REQUEST_LIMIT_EXCEEDED")
        || has("UNABLE_TO_LOCK_ROW")
        || matches!(status, 408 | 429 | 500..=599)
    {
        return CallFailure::Retry {
            after: retry_after,
            error: text,
        };
    }
    match status {
        // Bad credentials, or a user without permission: a person has to fix either.
        401 | 403 => CallFailure::AuthFailed { reason: text },
        _ => CallFailure::Refused { reason: text },
    }
}

/// The error array as `CODE: message (fields: A, B)`, joined; the status and an excerpt when
/// the body is not an error array.
fn describe(status: u16, errors: &[ApiError], body: &str) -> String {
    if errors.is_empty() {
        return match excerpt(body) {
            body if body.is_empty() => format!("HTTP {status}"),
            body => format!("HTTP {status}: {body}"),
        };
    }
    errors
        .iter()
        .map(|e| {
            let mut text = format!("{}: {}", e.error_code, e.message);
            if !e.fields.is_empty() {
                text.push_str(&format!(" (fields: {})", e.fields.join(", ")));
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// What a failed answer from the token endpoint means.
pub(super) fn classify_token(
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> CallFailure {
    let text = match serde_json::from_str::<OAuthError>(body) {
        Ok(e) if e.error_description.is_empty() => e.error,
        Ok(e) => format!("{}: {}", e.error, e.error_description),
        Err(_) => format!("HTTP {status}: {}", excerpt(body)),
    };
    if matches!(status, 408 | 429 | 500..=599) {
        CallFailure::Retry {
            after: retry_after,
            error: format!("Salesforce token endpoint: {text}"),
        }
    } else {
        // invalid_client, invalid_grant, a disabled flow, or a wrong My Domain (404, 3xx).
        CallFailure::AuthFailed {
            reason: format!("Salesforce login failed: {text}"),
        }
    }
}

/// A record's fields as text: strings as-is, other values as JSON; nulls and the
/// `attributes` metadata left out. `None` when the body is not a JSON object.
pub(super) fn record_fields(body: &str) -> Option<RecordFields> {
    let Ok(Value::Object(record)) = serde_json::from_str(body) else {
        return None;
    };
    Some(
        record
            .into_iter()
            .filter(|(name, value)| name != "attributes" && !value.is_null())
            .map(|(name, value)| match value {
                Value::String(text) => (name, text),
                other => (name, other.to_string()),
            })
            .collect(),
    )
}

/// The start of a body, on one line, for error texts.
pub(super) fn excerpt(body: &str) -> String {
    body.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: u16, body: &str) -> Result<(), CallFailure> {
        Err(classify(status, None, body))
    }

    #[test]
    fn deleted_merged_converted_and_missing_records_are_gone() {
        assert_eq!(
            outcome(
                404,
                r#"[{"errorCode":"ENTITY_IS_DELETED","message":"entity is deleted","fields":[]}]"#
            ),
            Err(CallFailure::Gone {
                reason: "ENTITY_IS_DELETED: entity is deleted".into()
            })
        );
        assert!(matches!(
            outcome(
                400,
                r#"[{"errorCode":"ENTITY_IS_DELETED","message":"entity is deleted"}]"#
            ),
            Err(CallFailure::Gone { .. })
        ));
        assert_eq!(
            outcome(
                400,
                r#"[{"errorCode":"CANNOT_UPDATE_CONVERTED_LEAD","message":"cannot reference converted lead"}]"#
            ),
            Err(CallFailure::Gone {
                reason: "CANNOT_UPDATE_CONVERTED_LEAD: cannot reference converted lead".into()
            })
        );
        assert!(matches!(
            outcome(
                400,
                r#"[{"errorCode":"FIELD_INTEGRITY_EXCEPTION","message":"Cannot reference converted lead"}]"#
            ),
            Err(CallFailure::Gone { .. })
        ));
        assert_eq!(
            outcome(
                404,
                r#"[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]"#
            ),
            Err(CallFailure::Gone {
                reason: "NOT_FOUND: The requested resource does not exist".into()
            })
        );
    }

    #[test]
    fn limits_locks_and_server_errors_are_retried() {
        assert_eq!(
            outcome(
                403,
                r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#
            ),
            Err(CallFailure::Retry {
                after: None,
                error: "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.".into()
            })
        );
        assert!(matches!(
            outcome(
                400,
                r#"[{"errorCode":"UNABLE_TO_LOCK_ROW","message":"unable to obtain exclusive access to this record"}]"#
            ),
            Err(CallFailure::Retry { .. })
        ));
        assert_eq!(
            classify(
                503,
                Some(Duration::from_secs(30)),
                "<html>\n  down  </html>"
            ),
            CallFailure::Retry {
                after: Some(Duration::from_secs(30)),
                error: "HTTP 503: <html> down </html>".into()
            }
        );
        assert!(matches!(outcome(500, ""), Err(CallFailure::Retry { .. })));
    }

    #[test]
    fn credentials_and_permissions_are_for_a_person() {
        assert_eq!(
            outcome(
                401,
                r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#
            ),
            Err(CallFailure::AuthFailed {
                reason: "INVALID_SESSION_ID: Session expired or invalid".into()
            })
        );
        assert!(matches!(
            outcome(
                403,
                r#"[{"errorCode":"INSUFFICIENT_ACCESS","message":"no"}]"#
            ),
            Err(CallFailure::AuthFailed { .. })
        ));
        assert!(matches!(
            outcome(
                403,
                r#"[{"errorCode":"API_DISABLED_FOR_ORG","message":"API is not enabled"}]"#
            ),
            Err(CallFailure::AuthFailed { .. })
        ));
    }

    #[test]
    fn bad_requests_are_refused_with_every_error() {
        assert_eq!(
            outcome(
                400,
                r#"[{"fields":["Id"],"message":"Lead ID: id value of incorrect type: 001","errorCode":"MALFORMED_ID"},
                    {"message":"No such column 'Foo__c' on sobject of type Lead","errorCode":"INVALID_FIELD"}]"#
            ),
            Err(CallFailure::Refused {
                reason: "MALFORMED_ID: Lead ID: id value of incorrect type: 001 (fields: Id); \
                         INVALID_FIELD: No such column 'Foo__c' on sobject of type Lead"
                    .into()
            })
        );
        assert_eq!(
            outcome(400, ""),
            Err(CallFailure::Refused {
                reason: "HTTP 400".into()
            })
        );
        // A number that cannot be converted is a validation error, not a converted Lead.
        assert!(matches!(
            outcome(
                400,
                r#"[{"errorCode":"JSON_PARSER_ERROR","message":"value could not be converted"}]"#
            ),
            Err(CallFailure::Refused { .. })
        ));
    }

    fn token(status: u16, retry_after: Option<Duration>, body: &str) -> Result<(), CallFailure> {
        Err(classify_token(status, retry_after, body))
    }

    #[test]
    fn token_errors_name_the_oauth_error() {
        assert_eq!(
            token(
                400,
                None,
                r#"{"error":"invalid_client","error_description":"invalid client credentials"}"#
            ),
            Err(CallFailure::AuthFailed {
                reason: "Salesforce login failed: invalid_client: invalid client credentials"
                    .into()
            })
        );
        assert!(matches!(
            token(404, None, "<html>"),
            Err(CallFailure::AuthFailed { .. })
        ));
        assert!(matches!(
            token(503, None, "busy"),
            Err(CallFailure::Retry { .. })
        ));
    }

    #[test]
    fn record_fields_are_text_without_attributes_or_nulls() {
        let fields = record_fields(
            r#"{"attributes":{"type":"Lead","url":"/x"},"Id":"00Q000000000001AAA",
                "LinkedIn_URL__c":"https://www.linkedin.com/in/ada","NumberOfEmployees":42,
                "HasOptedOutOfEmail":false,"Title":null}"#,
        )
        .unwrap();
        assert_eq!(
            fields.into_iter().collect::<Vec<_>>(),
            [
                ("HasOptedOutOfEmail", "false"),
                ("Id", "00Q000000000001AAA"),
                ("LinkedIn_URL__c", "https://www.linkedin.com/in/ada"),
                ("NumberOfEmployees", "42"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(record_fields("[]"), None);
        assert_eq!(record_fields("<html>"), None);
    }
}
