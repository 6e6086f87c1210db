//! What HubSpot sends, parsed without any HTTP or database in sight: app-subscription batches
//! (a JSON array of events, judged one by one), the trigger rules that make an event a lead,
//! and workflow "Send a webhook" payloads.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::crm::api::RecordFields;

/// HubSpot's documented maximum per request; more means it is not HubSpot talking.
pub const MAX_BATCH: usize = 100;

const CREATION: &str = "contact.creation";
const PROPERTY_CHANGE: &str = "contact.propertyChange";

/// A request that cannot be taken at all (as opposed to one bad event in a batch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("expected a JSON array of events")]
    NotAnArray,
    #[error("{0} events in one request; HubSpot sends at most {MAX_BATCH}")]
    TooManyEvents(usize),
    #[error("expected a JSON object with the record's properties")]
    NotAnObject,
    #[error("no record id: expected id, objectId, hs_object_id or vid")]
    NoRecordId,
}

/// One app-subscription event, reduced to what leadlink uses. Ids are kept as text: they only
/// serve as keys, and HubSpot's numbers outgrow what some JSON tools keep exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub portal_id: String,
    pub event_id: String,
    pub object_id: String,
    /// `subscriptionType`, or `eventType` as some documentation calls it.
    pub subscription_type: String,
    pub property_name: Option<String>,
    pub property_value: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
}

impl Event {
    /// `eventId` alone is not guaranteed unique; with the portal and the object it is.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}/{}", self.portal_id, self.event_id, self.object_id)
    }
}

/// One element of a batch: an event, or why the element was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    Event(Event),
    Malformed { index: usize, reason: String },
}

/// Parses an app-subscription request. Only a body that is not an array of at most
/// [`MAX_BATCH`] elements fails as a whole; a bad element is reported in its place, so the
/// good ones in the same batch still count (HubSpot would otherwise retry them all).
pub fn parse_batch(body: &[u8]) -> Result<Vec<Judged>, PayloadError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let Value::Array(items) = value else {
        return Err(PayloadError::NotAnArray);
    };
    if items.len() > MAX_BATCH {
        return Err(PayloadError::TooManyEvents(items.len()));
    }
    Ok(items
        .iter()
        .enumerate()
        .map(|(index, item)| match event(item) {
            Ok(event) => Judged::Event(event),
            Err(reason) => Judged::Malformed { index, reason },
        })
        .collect())
}

fn event(item: &Value) -> Result<Event, String> {
    let Value::Object(fields) = item else {
        return Err("not a JSON object".to_owned());
    };
    let subscription_type = match fields.get("subscriptionType") {
        Some(_) => text(fields, "subscriptionType")?,
        None => text(fields, "eventType").map_err(|_| "subscriptionType is missing".to_owned())?,
    };
    let occurred_at = match fields.get("occurredAt") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_i64()
                .and_then(DateTime::from_timestamp_millis)
                .ok_or("occurredAt must be milliseconds since the epoch")?,
        ),
    };
    Ok(Event {
        portal_id: id(fields, "portalId")?,
        event_id: id(fields, "eventId")?,
        object_id: id(fields, "objectId")?,
        subscription_type,
        property_name: optional_text(fields, "propertyName")?,
        property_value: optional_text(fields, "propertyValue")?,
        occurred_at,
    })
}

/// An id: a whole number or a non-empty string.
fn id(fields: &Map<String, Value>, key: &str) -> Result<String, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Err(format!("{key} is missing")),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(_) => Err(format!(
            "{key} must be a whole number or a non-empty string"
        )),
    }
}

fn text(fields: &Map<String, Value>, key: &str) -> Result<String, String> {
    optional_text(fields, key)?.ok_or_else(|| format!("{key} is missing"))
}

/// A property value arrives as a string, but accept any scalar rather than drop a lead.
fn optional_text(fields: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

/// "This property now has this value" makes a contact a lead, e.g. `hs_lead_status` =
/// `QUALIFIED` or `lifecyclestage` = `salesqualifiedlead`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRule {
    pub property: String,
    pub value: String,
}

impl TriggerRule {
    /// Whether two rules match the same changes (compared as events are).
    pub fn same_as(&self, other: &TriggerRule) -> bool {
        same(&self.property, &other.property) && same(&self.value, &other.value)
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.property, self.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Triggers {
    pub rules: Vec<TriggerRule>,
    pub on_creation: bool,
}

/// Why an event became a job, for its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Qualification {
    Rule(TriggerRule),
    Creation,
}

impl fmt::Display for Qualification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Qualification::Rule(rule) => write!(f, "{PROPERTY_CHANGE} {rule}"),
            Qualification::Creation => f.write_str(CREATION),
        }
    }
}

/// Whether an event makes its contact a lead; `None` means the caller ignores (and counts)
/// it. Event types, property names and values compare ignoring ASCII case and surrounding
/// blanks: HubSpot's internal names and option values are case-stable, and a rule written
/// `qualified` for `QUALIFIED` is a typo nobody should have to debug.
pub fn qualifies(event: &Event, triggers: &Triggers) -> Option<Qualification> {
    let kind = event.subscription_type.trim();
    if kind.eq_ignore_ascii_case(CREATION) {
        return triggers.on_creation.then_some(Qualification::Creation);
    }
    if !kind.eq_ignore_ascii_case(PROPERTY_CHANGE) {
        return None;
    }
    let (name, value) = (
        event.property_name.as_deref()?,
        event.property_value.as_deref()?,
    );
    triggers
        .rules
        .iter()
        .find(|rule| same(&rule.property, name) && same(&rule.value, value))
        .map(|rule| Qualification::Rule(rule.clone()))
}

/// The contact's new priority, when the event is a change of `priority_property` to a
/// number (HubSpot sends a cleared property as an empty value: priority 0 then).
pub fn priority_change(event: &Event, priority_property: &str) -> Option<i32> {
    let kind = event.subscription_type.trim();
    if !kind.eq_ignore_ascii_case(PROPERTY_CHANGE)
        || !same(event.property_name.as_deref()?, priority_property)
    {
        return None;
    }
    match event.property_value.as_deref().map(str::trim) {
        None | Some("") => Some(0),
        Some(value) => crate::crm::enrich::priority_of(value),
    }
}

fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// A workflow "Send a webhook" payload: the record's id and its properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRecord {
    pub contact_id: String,
    pub fields: RecordFields,
}

const ID_KEYS: [&str; 4] = ["id", "objectId", "hs_object_id", "vid"];

/// Reads a workflow payload. HubSpot does not pin its shape down, so this accepts the CRM
/// object JSON (`{"id": ..., "properties": {...}}`, also with `objectId` or the legacy
/// `vid`) and a flat object of properties (`{"hs_object_id": ..., "firstname": ...}`).
/// Values may be strings, numbers, booleans or legacy `{"value": ...}` objects; nulls, empty
/// strings and nested structures are left out, so a present field always has a value.
pub fn parse_workflow(body: &[u8]) -> Result<WorkflowRecord, PayloadError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(PayloadError::NotAnObject);
    };
    let properties = match object.get("properties") {
        Some(Value::Object(properties)) => properties,
        _ => &object,
    };
    let fields: RecordFields = properties
        .iter()
        .filter_map(|(key, value)| field_value(value).map(|v| (key.clone(), v)))
        .collect();
    let contact_id = ID_KEYS
        .iter()
        .find_map(|key| object.get(*key).and_then(field_value))
        .or_else(|| fields.get("hs_object_id").cloned())
        .ok_or(PayloadError::NoRecordId)?;
    Ok(WorkflowRecord { contact_id, fields })
}

fn field_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Object(legacy) => return legacy.get("value").and_then(field_value),
        Value::Null | Value::Array(_) => return None,
    };
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(value: Value) -> Vec<Judged> {
        parse_batch(value.to_string().as_bytes()).unwrap()
    }

    fn change(object_id: Value, name: &str, value: &str) -> Value {
        json!({
            "eventId": 100, "subscriptionId": 7, "portalId": 62515, "appId": 54321,
            "occurredAt": 1_564_113_600_000_i64, "subscriptionType": PROPERTY_CHANGE,
            "attemptNumber": 0, "objectId": object_id, "propertyName": name,
            "propertyValue": value, "changeSource": "CRM"
        })
    }

    fn triggers() -> Triggers {
        Triggers {
            rules: vec![
                TriggerRule {
                    property: "hs_lead_status".into(),
                    value: "QUALIFIED".into(),
                },
                TriggerRule {
                    property: "lifecyclestage".into(),
                    value: "salesqualifiedlead".into(),
                },
            ],
            on_creation: false,
        }
    }

    fn events(judged: &[Judged]) -> Vec<&Event> {
        judged
            .iter()
            .filter_map(|j| match j {
                Judged::Event(e) => Some(e),
                Judged::Malformed { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_mixed_batch_is_judged_event_by_event() {
        let judged = batch(json!([
            change(json!(123), "hs_lead_status", "QUALIFIED"),
            change(json!("456"), "hs_lead_status", "NEW"),
            {"eventId": 3, "portalId": 62515, "subscriptionType": PROPERTY_CHANGE},
            change(json!(789), "lifecyclestage", "salesqualifiedlead"),
            "not an event",
            {"eventId": 5, "portalId": 62515, "objectId": 1.5, "eventType": CREATION},
            {"eventId": 6, "portalId": 62515, "objectId": 9, "eventType": CREATION},
            {"eventId": 7, "portalId": 62515, "objectId": 9},
        ]));
        assert_eq!(judged.len(), 8);
        let malformed: Vec<(usize, &str)> = judged
            .iter()
            .filter_map(|j| match j {
                Judged::Malformed { index, reason } => Some((*index, reason.as_str())),
                Judged::Event(_) => None,
            })
            .collect();
        assert_eq!(
            malformed,
            [
                (2, "objectId is missing"),
                (4, "not a JSON object"),
                (5, "objectId must be a whole number or a non-empty string"),
                (7, "subscriptionType is missing"),
            ]
        );

        let verdicts: Vec<(String, Option<String>)> = events(&judged)
            .iter()
            .map(|e| {
                (
                    e.idempotency_key(),
                    qualifies(e, &triggers()).map(|q| q.to_string()),
                )
            })
            .collect();
        assert_eq!(
            verdicts,
            [
                (
                    "62515/100/123".to_owned(),
                    Some("contact.propertyChange hs_lead_status = QUALIFIED".to_owned())
                ),
                ("62515/100/456".to_owned(), None),
                (
                    "62515/100/789".to_owned(),
                    Some("contact.propertyChange lifecyclestage = salesqualifiedlead".to_owned())
                ),
                ("62515/6/9".to_owned(), None),
            ]
        );
    }

    #[test]
    fn events_keep_every_field_leadlink_uses() {
        let judged = batch(json!([change(json!(123), "hs_lead_status", "QUALIFIED")]));
        assert_eq!(
            judged,
            [Judged::Event(Event {
                portal_id: "62515".into(),
                event_id: "100".into(),
                object_id: "123".into(),
                subscription_type: PROPERTY_CHANGE.into(),
                property_name: Some("hs_lead_status".into()),
                property_value: Some("QUALIFIED".into()),
                occurred_at: DateTime::from_timestamp_millis(1_564_113_600_000),
            })]
        );
        let bad_time = batch(json!([{
            "eventId": 1, "portalId": 2, "objectId": 3,
            "subscriptionType": CREATION, "occurredAt": "yesterday"
        }]));
        assert_eq!(
            bad_time,
            [Judged::Malformed {
                index: 0,
                reason: "occurredAt must be milliseconds since the epoch".into()
            }]
        );
    }

    #[test]
    fn ids_may_be_numbers_or_strings() {
        let judged = batch(json!([
            {"eventId": "1", "portalId": " 62515 ", "objectId": 18_446_744_073_709_551_615_u64,
             "subscriptionType": CREATION},
            {"eventId": 1, "portalId": 62515, "objectId": "", "subscriptionType": CREATION},
            {"eventId": 1, "portalId": null, "objectId": "5", "subscriptionType": CREATION},
            {"eventId": -1, "portalId": 1, "objectId": "5", "subscriptionType": CREATION},
        ]));
        let Judged::Event(first) = &judged[0] else {
            panic!("{judged:?}")
        };
        assert_eq!(first.idempotency_key(), "62515/1/18446744073709551615");
        assert!(
            matches!(&judged[1], Judged::Malformed { reason, .. } if reason.starts_with("objectId must"))
        );
        assert!(
            matches!(&judged[2], Judged::Malformed { reason, .. } if reason == "portalId is missing")
        );
        assert!(matches!(&judged[3], Judged::Event(e) if e.event_id == "-1"));
    }

    #[test]
    fn only_arrays_of_at_most_a_hundred_events_are_batches() {
        assert_eq!(parse_batch(b"[]"), Ok(vec![]));
        assert_eq!(
            parse_batch(br#"{"eventId":1}"#),
            Err(PayloadError::NotAnArray)
        );
        assert!(matches!(parse_batch(b"[{"), Err(PayloadError::NotJson(_))));
        let creation =
            json!({"eventId": 1, "portalId": 2, "objectId": 3, "subscriptionType": CREATION});
        let hundred = Value::Array(vec![creation.clone(); MAX_BATCH]);
        assert_eq!(batch(hundred).len(), MAX_BATCH);
        let more = Value::Array(vec![creation; MAX_BATCH + 1]);
        assert_eq!(
            parse_batch(more.to_string().as_bytes()),
            Err(PayloadError::TooManyEvents(101))
        );
    }

    fn event(kind: &str, name: Option<&str>, value: Option<&str>) -> Event {
        Event {
            portal_id: "1".into(),
            event_id: "2".into(),
            object_id: "3".into(),
            subscription_type: kind.into(),
            property_name: name.map(Into::into),
            property_value: value.map(Into::into),
            occurred_at: None,
        }
    }

    #[test]
    fn a_change_of_the_priority_property_is_a_new_priority() {
        let change = |name, value| {
            priority_change(
                &event("contact.propertyChange", Some(name), value),
                "hubspotscore",
            )
        };
        assert_eq!(change("HubSpotScore", Some("42")), Some(42));
        assert_eq!(change("hubspotscore", Some("")), Some(0), "cleared");
        assert_eq!(change("hubspotscore", Some("lots")), None);
        assert_eq!(change("hs_lead_status", Some("42")), None);
        let created = event("contact.creation", Some("hubspotscore"), Some("42"));
        assert_eq!(priority_change(&created, "hubspotscore"), None);
    }

    #[test]
    fn rules_match_property_and_value_ignoring_case() {
        let t = triggers();
        let yes = [
            ("contact.propertyChange", "hs_lead_status", "QUALIFIED"),
            ("contact.propertychange", "HS_LEAD_STATUS", "qualified"),
            (
                "contact.propertyChange",
                "lifecyclestage",
                " salesqualifiedlead ",
            ),
        ];
        for (kind, name, value) in yes {
            assert!(qualifies(&event(kind, Some(name), Some(value)), &t).is_some());
        }
        let no = [
            (
                "contact.propertyChange",
                Some("hs_lead_status"),
                Some("UNQUALIFIED"),
            ),
            (
                "contact.propertyChange",
                Some("lifecyclestage"),
                Some("QUALIFIED"),
            ),
            ("contact.propertyChange", Some("hs_lead_status"), None),
            ("contact.propertyChange", None, Some("QUALIFIED")),
            (
                "company.propertyChange",
                Some("hs_lead_status"),
                Some("QUALIFIED"),
            ),
            ("contact.deletion", None, None),
            ("contact.creation", None, None),
        ];
        for (kind, name, value) in no {
            assert_eq!(
                qualifies(&event(kind, name, value), &t),
                None,
                "{kind} {name:?}"
            );
        }
    }

    #[test]
    fn creation_qualifies_only_when_configured() {
        let mut t = triggers();
        let created = event("contact.creation", None, None);
        assert_eq!(qualifies(&created, &t), None);
        t.on_creation = true;
        assert_eq!(qualifies(&created, &t), Some(Qualification::Creation));
        assert_eq!(Qualification::Creation.to_string(), "contact.creation");
    }

    fn workflow(value: Value) -> Result<WorkflowRecord, PayloadError> {
        parse_workflow(value.to_string().as_bytes())
    }

    #[test]
    fn workflow_payloads_in_the_crm_object_shape() {
        let record = workflow(json!({
            "id": "501",
            "properties": {
                "firstname": "Ada", "hs_linkedin_url": "https://www.linkedin.com/in/ada",
                "num_employees": 42, "hs_email_optout": false, "lastname": null,
                "company": "", "tags": ["a"], "hs_object_id": "501"
            },
            "createdAt": "2024-01-01T00:00:00Z",
            "archived": false
        }))
        .unwrap();
        assert_eq!(record.contact_id, "501");
        let expected: RecordFields = [
            ("firstname", "Ada"),
            ("hs_email_optout", "false"),
            ("hs_linkedin_url", "https://www.linkedin.com/in/ada"),
            ("hs_object_id", "501"),
            ("num_employees", "42"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(record.fields, expected);

        let by_object_id = workflow(json!({"objectId": 77, "properties": {"firstname": "Bo"}}));
        assert_eq!(by_object_id.unwrap().contact_id, "77");
        let by_property = workflow(json!({"properties": {"hs_object_id": 78}}));
        assert_eq!(by_property.unwrap().contact_id, "78");
    }

    #[test]
    fn workflow_payloads_as_flat_or_legacy_properties() {
        let flat = workflow(json!({
            "hs_object_id": "123", "firstname": "Ada",
            "hs_linkedin_url": "https://www.linkedin.com/in/ada"
        }))
        .unwrap();
        assert_eq!(flat.contact_id, "123");
        assert_eq!(flat.fields["firstname"], "Ada");
        assert_eq!(flat.fields["hs_object_id"], "123");

        let legacy = workflow(json!({
            "vid": 9001,
            "properties": {
                "firstname": {"value": "Ada", "versions": []},
                "hs_linkedin_url": {"value": "https://www.linkedin.com/in/ada"},
                "lastname": {"value": null}
            }
        }))
        .unwrap();
        assert_eq!(legacy.contact_id, "9001");
        assert_eq!(legacy.fields.len(), 2);
        assert_eq!(legacy.fields["firstname"], "Ada");
    }

    #[test]
    fn workflow_payloads_need_an_object_with_an_id() {
        assert_eq!(
            workflow(json!({"properties": {"firstname": "Ada"}})),
            Err(PayloadError::NoRecordId)
        );
        assert_eq!(
            workflow(json!({"id": "", "firstname": "Ada"})),
            Err(PayloadError::NoRecordId)
        );
        assert_eq!(workflow(json!([{"id": 1}])), Err(PayloadError::NotAnObject));
        assert!(matches!(
            parse_workflow(b"id=1"),
            Err(PayloadError::NotJson(_))
        ));
    }
}
