//! JSON callouts from a Salesforce Flow HTTP callout or Apex:
//! `{"recordId": "00Q...", "object": "Lead", "linkedinUrl": "...", ...other fields}`.
//! The signature (Standard Webhooks or plain HMAC) is checked before this runs.

use std::collections::BTreeMap;

use serde_json::Value;

use super::outbound::{SObjectType, canonical_id};

const RECORD_ID: &str = "recordId";
const OBJECT: &str = "object";
const LINKEDIN_URL: &str = "linkedinUrl";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    /// As sent (15 or 18 characters); checked to be a well-formed id of `object`.
    pub record_id: String,
    pub object: SObjectType,
    /// `None` when absent, null or blank.
    pub linkedin_url: Option<String>,
    /// Every other top-level field, stringified; nulls and nested values left out.
    pub fields: BTreeMap<String, String>,
}

/// Why a callout body was refused; each names the field so a Flow author can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalloutError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body must be a JSON object")]
    NotObject,
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{field} must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("object must be \"Lead\" or \"Contact\", not {0:?}")]
    UnsupportedObject(String),
    #[error(
        "recordId must be a 15- or 18-character Salesforce id starting with {prefix} (a {object} id)"
    )]
    BadRecordId {
        object: SObjectType,
        prefix: &'static str,
    },
}

pub fn parse(body: &[u8]) -> Result<Callout, CalloutError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| CalloutError::NotJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(CalloutError::NotObject);
    };
    let record_id = required_string(map.remove(RECORD_ID), RECORD_ID)?;
    let object_name = required_string(map.remove(OBJECT), OBJECT)?;
    let object = SObjectType::from_name(&object_name)
        .ok_or_else(|| CalloutError::UnsupportedObject(object_name.chars().take(64).collect()))?;
    // A wrong id would only surface later as a failed writeback; refuse it while the sender
    // is still listening.
    if !(canonical_id(&record_id).is_some() && record_id.starts_with(object.key_prefix())) {
        return Err(CalloutError::BadRecordId {
            object,
            prefix: object.key_prefix(),
        });
    }
    let linkedin_url = match map.remove(LINKEDIN_URL) {
        None | Some(Value::Null) => None,
        Some(Value::String(url)) => Some(url.trim().to_owned()).filter(|url| !url.is_empty()),
        Some(_) => {
            return Err(CalloutError::WrongType {
                field: LINKEDIN_URL,
                expected: "a string",
            });
        }
    };
    let fields = map
        .into_iter()
        .filter_map(|(key, value)| {
            let text = match value {
                Value::String(text) => text,
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                // Nested values are skipped rather than refused: Apex's
                // `JSON.serialize(record)` adds an `attributes` object to every sObject.
                Value::Null | Value::Array(_) | Value::Object(_) => return None,
            };
            Some((key, text))
        })
        .collect();
    Ok(Callout {
        record_id,
        object,
        linkedin_url,
        fields,
    })
}

fn required_string(value: Option<Value>, field: &'static str) -> Result<String, CalloutError> {
    match value {
        None | Some(Value::Null) => Err(CalloutError::Missing(field)),
        Some(Value::String(text)) if text.trim().is_empty() => Err(CalloutError::Missing(field)),
        Some(Value::String(text)) => Ok(text.trim().to_owned()),
        Some(_) => Err(CalloutError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_flow_callout() {
        let body = br#"{
            "recordId": "00Q5g00000AbCdEEAV",
            "object": "Lead",
            "linkedinUrl": " https://www.linkedin.com/in/john-doe-123/ ",
            "FirstName": "John",
            "NumberOfEmployees": 250,
            "AnnualRevenue": 1.5e6,
            "HasOptedOutOfEmail": false,
            "Email": null,
            "attributes": {"type": "Lead", "url": "/services/data/v59.0/sobjects/Lead/00Q5g00000AbCdEEAV"},
            "Tags": ["a"]
        }"#;
        let callout = parse(body).unwrap();
        assert_eq!(callout.record_id, "00Q5g00000AbCdEEAV");
        assert_eq!(callout.object, SObjectType::Lead);
        assert_eq!(
            callout.linkedin_url.as_deref(),
            Some("https://www.linkedin.com/in/john-doe-123/")
        );
        let fields: Vec<(&str, &str)> = callout
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("AnnualRevenue", "1500000.0"),
                ("FirstName", "John"),
                ("HasOptedOutOfEmail", "false"),
                ("NumberOfEmployees", "250"),
            ]
        );
    }

    #[test]
    fn a_contact_with_a_15_character_id_and_no_url() {
        for url in ["", r#", "linkedinUrl": null"#, r#", "linkedinUrl": "  ""#] {
            let body = format!(r#"{{"recordId": "0035g00000XyZaB", "object": "Contact"{url}}}"#);
            let callout = parse(body.as_bytes()).unwrap();
            assert_eq!(callout.object, SObjectType::Contact);
            assert_eq!(callout.record_id, "0035g00000XyZaB");
            assert_eq!(callout.linkedin_url, None);
            assert!(callout.fields.is_empty());
        }
    }

    #[test]
    fn errors_name_the_field() {
        let lead = r#""object": "Lead""#;
        let id = r#""recordId": "00Q5g00000AbCdEEAV""#;
        for (body, expected) in [
            ("not json".to_owned(), None),
            ("[1]".to_owned(), Some("body must be a JSON object")),
            (format!("{{{lead}}}"), Some("recordId is missing")),
            (
                format!(r#"{{{lead}, "recordId": " "}}"#),
                Some("recordId is missing"),
            ),
            (
                format!(r#"{{{lead}, "recordId": 5}}"#),
                Some("recordId must be a string"),
            ),
            (format!("{{{id}}}"), Some("object is missing")),
            (
                format!(r#"{{{id}, "object": "Account"}}"#),
                Some(r#"object must be "Lead" or "Contact", not "Account""#),
            ),
            (
                format!(r#"{{{id}, "object": "lead"}}"#),
                Some(r#"object must be "Lead" or "Contact", not "lead""#),
            ),
            (
                format!(r#"{{{id}, {lead}, "linkedinUrl": 7}}"#),
                Some("linkedinUrl must be a string"),
            ),
            (
                format!(r#"{{{id}, "object": "Contact"}}"#),
                Some(
                    "recordId must be a 15- or 18-character Salesforce id starting with 003 (a Contact id)",
                ),
            ),
            (
                format!(r#"{{{lead}, "recordId": "00Q5g00000AbCdEEAA"}}"#),
                Some(
                    "recordId must be a 15- or 18-character Salesforce id starting with 00Q (a Lead id)",
                ),
            ),
        ] {
            let error = parse(body.as_bytes()).unwrap_err();
            match expected {
                Some(text) => assert_eq!(error.to_string(), text, "{body}"),
                None => assert!(matches!(error, CalloutError::NotJson(_)), "{body}"),
            }
        }
    }
}
