//! One row of an export as the job a webhook naming the same lead would have made, or why
//! the row cannot be imported.

use super::Crm;
use super::columns::{Columns, Field};
use crate::ingest::salesforce::outbound::{SObjectType, canonical_id};
use crate::ingest::{IngestConfig, LeadEvent, LeadEventError, lead_job};
use crate::job::Source;
use crate::lead::{MessageTemplate, Resolution};
use crate::store::NewJob;

/// HubSpot's record type, as its webhooks name it.
const HUBSPOT_CONTACT: &str = "contact";

/// Why a row is bad; the text is what the person importing reads next to the line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("{fields} fields, the header has {expected}")]
    Width { fields: usize, expected: usize },
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("{0}")]
    Lead(#[from] LeadEventError),
    #[error("priority must be an integer, not {0:?}")]
    Priority(String),
    /// A company page, a bad URL: a webhook's job would end `invalid`; here the file can be
    /// fixed instead.
    #[error("{0}")]
    Profile(String),
    #[error("object must be Lead or Contact, not {0:?}")]
    Object(String),
    #[error(
        "recordId {0:?} is not a Salesforce Lead (00Q...) or Contact (003...) id of 15 or 18 characters"
    )]
    SalesforceId(String),
}

/// What a row is read with: the configuration a webhook's job is built with, the target
/// CRM and the account for rows that name none.
pub struct RowContext<'a> {
    pub config: &'a IngestConfig,
    pub template: Option<&'a MessageTemplate>,
    pub crm: Crm,
    pub account: Option<&'a str>,
}

/// The job for one row.
pub fn job_of_row(
    context: &RowContext<'_>,
    columns: &Columns,
    record: &csv::ByteRecord,
) -> Result<NewJob, RowError> {
    if record.len() != columns.width {
        return Err(RowError::Width {
            fields: record.len(),
            expected: columns.width,
        });
    }
    let text = |field: Field| -> Result<Option<String>, RowError> {
        let Some(raw) = columns.position(field).and_then(|i| record.get(i)) else {
            return Ok(None);
        };
        let text = std::str::from_utf8(raw).map_err(|_| RowError::NotUtf8(field.name()))?;
        Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty()))
    };
    let priority = match text(Field::Priority)? {
        Some(priority) => Some(
            priority
                .parse::<i64>()
                .map_err(|_| RowError::Priority(priority))?,
        ),
        None => None,
    };
    let row_account = text(Field::AccountId)?;
    let event = LeadEvent {
        record_id: text(Field::RecordId)?.unwrap_or_default(),
        linkedin_url: text(Field::LinkedinUrl)?,
        profile_id: text(Field::ProfileId)?,
        profile_urn: text(Field::ProfileUrn)?,
        account_id: row_account
            .clone()
            .or_else(|| context.account.map(str::to_owned)),
        first_name: text(Field::FirstName)?,
        last_name: text(Field::LastName)?,
        company: text(Field::Company)?,
        message: text(Field::Message)?,
        priority,
    };
    let (source, object) = match context.crm {
        Crm::None => (Source::Events, None),
        Crm::Hubspot => (Source::HubSpot, Some(HUBSPOT_CONTACT)),
        Crm::Salesforce => (
            Source::Salesforce,
            Some(salesforce_object(&event.record_id, text(Field::Object)?)?.as_str()),
        ),
    };
    let mut job = lead_job(
        context.config,
        context.template,
        source,
        object,
        event,
        None,
    )?;
    let profile_key = match &job.resolution {
        Resolution::Usable(lead) => &lead.profile_key,
        Resolution::Invalid {
            profile_key: Some(key),
            ..
        } => key,
        Resolution::Invalid { reason, .. } => return Err(RowError::Profile(reason.clone())),
        Resolution::ReadFromCrm => return Err(RowError::Lead(LeadEventError::Profile)),
    };
    // The delivery id is the row's identity, so importing the file again finds its jobs.
    // It names the row's own account cell, not the one filled in from `--account` or the
    // config: the same file imported again with another fallback must find the same jobs,
    // not invite everyone a second time from the other account.
    job.delivery_id = Some(format!(
        "import:{source}:{}:{}:{profile_key}",
        row_account.as_deref().unwrap_or_default(),
        job.record_id
    ));
    Ok(job)
}

/// A Salesforce row's object: its `object` column, else its id's prefix; the id must be
/// one of that object's.
fn salesforce_object(record_id: &str, named: Option<String>) -> Result<SObjectType, RowError> {
    if record_id.is_empty() {
        return Err(LeadEventError::RecordId.into());
    }
    let object = match named {
        Some(name) => [SObjectType::Lead, SObjectType::Contact]
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(&name))
            .ok_or(RowError::Object(name))?,
        None => [SObjectType::Lead, SObjectType::Contact]
            .into_iter()
            .find(|o| record_id.starts_with(o.key_prefix()))
            .ok_or_else(|| RowError::SalesforceId(record_id.to_owned()))?,
    };
    if canonical_id(record_id).is_none() || !record_id.starts_with(object.key_prefix()) {
        return Err(RowError::SalesforceId(record_id.to_owned()));
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::job::WritebackTarget;

    const HEADER: [&str; 6] = [
        "recordId",
        "linkedinUrl",
        "accountId",
        "priority",
        "object",
        "message",
    ];

    fn config() -> IngestConfig {
        Config::from_toml(
            "[connectsafely]\napi_key = \"k\"\ndefault_account_id = \"acc-default\"\n\
             [crm.hubspot]\naccess_token = \"t\"\n",
        )
        .unwrap()
        .ingest()
    }

    fn row(crm: Crm, cells: &[&[u8]]) -> Result<NewJob, RowError> {
        let config = config();
        let context = RowContext {
            config: &config,
            template: None,
            crm,
            account: Some("acc-flag"),
        };
        let columns = Columns::parse(&csv::ByteRecord::from(HEADER.to_vec())).unwrap();
        job_of_row(&context, &columns, &csv::ByteRecord::from(cells.to_vec()))
    }

    const URL: &[u8] = b"https://www.linkedin.com/in/Jane-Doe";

    #[test]
    fn a_good_row_is_the_job_its_webhook_would_make_with_an_identity_of_its_own() {
        let job = row(Crm::Hubspot, &[b"501", URL, b"", b"3", b"", b"Hi"]).unwrap();
        assert_eq!(job.source, Source::HubSpot);
        assert_eq!(job.record_object.as_deref(), Some("contact"));
        assert_eq!(
            job.account_id.as_str(),
            "acc-flag",
            "--account fills a blank"
        );
        assert!(job.one_open_job_per_record);
        assert_eq!(job.writeback_targets, vec![WritebackTarget::HubSpot]);
        assert_eq!(
            job.delivery_id.as_deref(),
            Some("import:hubspot::501:jane-doe"),
            "the fallback account is not part of the row's identity"
        );
        let events = row(Crm::None, &[b"r1", URL, b"acc-row", b"", b"", b""]).unwrap();
        assert_eq!(events.source, Source::Events);
        assert_eq!(events.account_id.as_str(), "acc-row");
        assert!(events.writeback_targets.is_empty());
    }

    #[test]
    fn a_salesforce_row_takes_its_object_from_the_column_or_the_id_prefix() {
        let lead = row(
            Crm::Salesforce,
            &[b"00Q000000000001", URL, b"", b"", b"", b""],
        )
        .unwrap();
        assert_eq!(lead.record_object.as_deref(), Some("Lead"));
        let contact = row(
            Crm::Salesforce,
            &[b"003000000000001", URL, b"", b"", b"contact", b""],
        )
        .unwrap();
        assert_eq!(contact.record_object.as_deref(), Some("Contact"));
        assert!(matches!(
            row(
                Crm::Salesforce,
                &[b"001000000000001", URL, b"", b"", b"", b""]
            ),
            Err(RowError::SalesforceId(_))
        ));
        assert!(matches!(
            row(
                Crm::Salesforce,
                &[b"00Q000000000001", URL, b"", b"", b"Contact", b""]
            ),
            Err(RowError::SalesforceId(_))
        ));
        assert!(matches!(
            row(
                Crm::Salesforce,
                &[b"00Q000000000001", URL, b"", b"", b"Account", b""]
            ),
            Err(RowError::Object(_))
        ));
    }

    #[test]
    fn every_bad_row_says_why() {
        let cases: [(&[&[u8]], &str); 7] = [
            (
                &[b"", URL, b"", b"", b"", b""],
                "recordId must not be empty",
            ),
            (
                &[b"r", b"", b"", b"", b"", b""],
                "or profileUrn is required",
            ),
            (
                &[
                    b"r",
                    b"https://www.linkedin.com/company/acme",
                    b"",
                    b"",
                    b"",
                    b"",
                ],
                "not a person's profile",
            ),
            (&[b"r", b"https://example.com/x", b"", b"", b"", b""], "URL"),
            (
                &[b"r", URL, b"", b"high", b"", b""],
                "priority must be an integer",
            ),
            (
                &[b"r", b"\xff\xfe", b"", b"", b"", b""],
                "linkedinUrl is not valid UTF-8",
            ),
            (&[b"r", URL, b"", b"", b""], "5 fields, the header has 6"),
        ];
        for (cells, expected) in cases {
            let reason = row(Crm::None, cells).unwrap_err().to_string();
            assert!(
                reason.contains(expected),
                "{reason:?} should say {expected:?}"
            );
        }
    }
}
