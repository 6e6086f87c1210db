//! A job's state as each CRM's fields hold it: the property and field names come from
//! configuration, the values from DESIGN's status table.

use crate::job::StatusSnapshot;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// The configured name of each written field.
#[derive(Debug, Clone, Copy)]
pub struct FieldNames<'a> {
    pub status: &'a str,
    pub profile_urn: &'a str,
    pub hold_until: &'a str,
    pub retry_at: &'a str,
    pub last_error: &'a str,
    pub status_changed_at: &'a str,
}

/// How a CRM says "no value": HubSpot clears a property with `""`, Salesforce with `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Empty {
    EmptyString,
    Null,
}

/// Salesforce text fields hold 255 characters; a longer error would fail the whole update.
const MAX_ERROR_CHARS: usize = 255;

pub fn fields(
    names: &FieldNames<'_>,
    snapshot: &StatusSnapshot,
    empty: Empty,
) -> Map<String, Value> {
    let none = || match empty {
        Empty::EmptyString => Value::String(String::new()),
        Empty::Null => Value::Null,
    };
    let text = |value: Option<String>| value.map_or_else(none, Value::String);
    let time = |value: Option<DateTime<Utc>>| {
        text(value.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)))
    };
    let error = snapshot
        .error
        .as_ref()
        .map(|e| e.chars().take(MAX_ERROR_CHARS).collect::<String>());
    let mut map = Map::new();
    map.insert(
        names.status.into(),
        Value::String(snapshot.status.as_str().into()),
    );
    map.insert(names.profile_urn.into(), text(snapshot.profile_urn.clone()));
    map.insert(names.hold_until.into(), time(snapshot.hold_until));
    map.insert(names.retry_at.into(), time(snapshot.retry_at));
    map.insert(names.last_error.into(), text(error));
    map.insert(
        names.status_changed_at.into(),
        time(Some(snapshot.changed_at)),
    );
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Status;

    const NAMES: FieldNames<'static> = FieldNames {
        status: "s",
        profile_urn: "u",
        hold_until: "h",
        retry_at: "r",
        last_error: "e",
        status_changed_at: "c",
    };

    fn snapshot() -> StatusSnapshot {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        StatusSnapshot {
            job_id: uuid::Uuid::nil(),
            record_id: "1".into(),
            record_object: None,
            account_id: "a".into(),
            status: Status::Held,
            profile_urn: None,
            hold_until: Some(at("2026-12-01T10:00:00Z")),
            retry_at: Some(at("2026-12-07T00:00:00Z")),
            attempts: 1,
            error: Some("x".repeat(400)),
            sequence: 3,
            changed_at: at("2026-11-30T10:00:00.123Z"),
        }
    }

    #[test]
    fn every_field_is_written_and_absent_values_are_cleared_the_crms_way() {
        let hubspot = fields(&NAMES, &snapshot(), Empty::EmptyString);
        assert_eq!(hubspot["s"], "held");
        assert_eq!(hubspot["u"], "");
        assert_eq!(hubspot["h"], "2026-12-01T10:00:00Z");
        assert_eq!(hubspot["r"], "2026-12-07T00:00:00Z");
        assert_eq!(hubspot["c"], "2026-11-30T10:00:00Z");
        assert_eq!(hubspot["e"].as_str().unwrap().chars().count(), 255);
        let salesforce = fields(&NAMES, &snapshot(), Empty::Null);
        assert_eq!(salesforce["u"], Value::Null);
        assert_eq!(salesforce.len(), 6);
    }
}
