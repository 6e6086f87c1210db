//! A lead as a CRM record holds it, read by the connect stage when the event carried only
//! ids, and the owner routing that picks the rep's LinkedIn account.

use super::api::{CallFailure, RecordFields};
use super::hubspot::HubSpotCrmConfig;
use super::salesforce::SalesforceCrmConfig;
use super::{Clients, CrmConfig};
use crate::account::AccountId;
use crate::job::{Job, Source};
use crate::lead::{LeadFields, LeadInput, MessageTemplate, Overflow, Resolution, resolve_lead};

/// HubSpot's owner property and standard name fields.
const HUBSPOT_OWNER: &str = "hubspot_owner_id";
const HUBSPOT_NAMES: [&str; 3] = ["firstname", "lastname", "company"];
const SALESFORCE_OWNER: &str = "OwnerId";

/// The lead's data in a CRM record, whatever the CRM calls its fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrmLead {
    pub linkedin_url: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub owner_id: Option<String>,
    /// The record's priority field, when one is configured and holds a number.
    pub priority: Option<i32>,
}

/// Where each CRM keeps a lead's priority (`sources.hubspot.priority_property`,
/// `sources.salesforce.priority_field`); unset: the CRM's leads have priority 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriorityFields {
    pub hubspot: Option<String>,
    pub salesforce: Option<String>,
}

/// A CRM's number as a priority: HubSpot's scores are numbers kept as text, possibly with a
/// fraction; blank or not a number is no priority.
pub fn priority_of(text: &str) -> Option<i32> {
    let text = text.trim();
    let number = match text.parse::<i64>() {
        Ok(whole) => whole,
        Err(_) => {
            let real = text.parse::<f64>().ok().filter(|r| r.is_finite())?;
            // Within i64 before the cast; the clamp keeps it to the priorities anyway.
            real.round().clamp(-1e15, 1e15) as i64
        }
    };
    Some(crate::job::clamp_priority(number))
}

fn priority_in(fields: &RecordFields, field: Option<&str>) -> Option<i32> {
    field
        .and_then(|name| fields.get(name))
        .and_then(|v| priority_of(v))
}

impl CrmLead {
    /// The fields a message template may use.
    pub fn fields(&self) -> LeadFields {
        LeadFields {
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            company: self.company.clone(),
        }
    }

    /// What the lead resolves to: a CRM record gives its URL and the template's fields.
    pub fn resolve(&self, template: Option<&MessageTemplate>, overflow: Overflow) -> Resolution {
        let fields = self.fields();
        let input = LeadInput {
            linkedin_url: self.linkedin_url.as_deref(),
            profile_id: None,
            profile_urn: None,
            message: None,
            fields: &fields,
        };
        resolve_lead(&input, template, overflow)
    }
}

/// A HubSpot contact's properties as a lead.
pub fn hubspot_lead(
    properties: &RecordFields,
    linkedin_url_property: &str,
    priority_property: Option<&str>,
) -> CrmLead {
    let get = |name: &str| present(properties.get(name));
    CrmLead {
        linkedin_url: get(linkedin_url_property),
        first_name: get("firstname"),
        last_name: get("lastname"),
        company: get("company"),
        owner_id: get(HUBSPOT_OWNER),
        priority: priority_in(properties, priority_property),
    }
}

/// A Salesforce Lead's or Contact's fields as a lead.
pub fn salesforce_lead(
    fields: &RecordFields,
    linkedin_url_field: &str,
    priority_field: Option<&str>,
) -> CrmLead {
    let get = |name: &str| present(fields.get(name));
    CrmLead {
        linkedin_url: get(linkedin_url_field),
        first_name: get("FirstName"),
        last_name: get("LastName"),
        company: get("Company"),
        owner_id: get(SALESFORCE_OWNER),
        priority: priority_in(fields, priority_field),
    }
}

fn present(value: Option<&String>) -> Option<String> {
    crate::lead::non_blank(value.map(|v| v.trim())).map(str::to_owned)
}

/// The ConnectSafely account for a record of `source`: its owner's, when
/// `[crm.<source>.owners]` maps it, else the fallback.
pub fn route_account(
    crm: &CrmConfig,
    source: Source,
    owner_id: Option<&str>,
    fallback: Option<&str>,
) -> AccountId {
    let owners_account = owner_id.and_then(|owner| match source {
        Source::HubSpot => crm
            .hubspot
            .as_ref()
            .and_then(|c| c.owners.get(owner))
            .map(String::as_str),
        Source::Salesforce => crm
            .salesforce
            .as_ref()
            .and_then(|c| c.account_for_owner(owner)),
        _ => None,
    });
    AccountId::new(owners_account.or(fallback).unwrap_or_default())
}

/// The field of `source`'s records that holds the LinkedIn URL.
pub fn url_field(crm: &CrmConfig, source: Source) -> String {
    match source {
        Source::HubSpot => crm.hubspot.as_ref().map_or_else(
            || HubSpotCrmConfig::default().linkedin_url_property,
            |c| c.linkedin_url_property.clone(),
        ),
        _ => crm.salesforce.as_ref().map_or_else(
            || SalesforceCrmConfig::default().linkedin_url_field,
            |c| c.linkedin_url_field.clone(),
        ),
    }
}

/// Reads leads from the CRMs that are configured.
pub struct Enricher {
    clients: Clients,
    crm: CrmConfig,
    priority: PriorityFields,
    hubspot_fallback: Option<String>,
    salesforce_fallback: Option<String>,
}

impl Enricher {
    /// `fallback_account` names the account for a source's records whose owner is not
    /// mapped.
    pub fn new(
        crm: &CrmConfig,
        clients: &Clients,
        priority: PriorityFields,
        fallback_account: impl Fn(Source) -> Option<String>,
    ) -> Enricher {
        Enricher {
            clients: clients.clone(),
            crm: crm.clone(),
            priority,
            hubspot_fallback: fallback_account(Source::HubSpot),
            salesforce_fallback: fallback_account(Source::Salesforce),
        }
    }

    /// The lead behind a job's record, read from the CRM the job came from.
    pub async fn read(&self, job: &Job) -> Result<CrmLead, CallFailure> {
        let hubspot = self.clients.hubspot.as_ref().zip(self.crm.hubspot.as_ref());
        let salesforce = self
            .clients
            .salesforce
            .as_ref()
            .zip(self.crm.salesforce.as_ref());
        match (job.source, hubspot, salesforce) {
            (Source::HubSpot, Some((client, config)), _) => {
                let mut properties = vec![config.linkedin_url_property.clone()];
                properties.extend(HUBSPOT_NAMES.map(str::to_owned));
                properties.push(HUBSPOT_OWNER.to_owned());
                let priority = self.priority.hubspot.as_deref();
                properties.extend(priority.map(str::to_owned));
                client
                    .read_contact(&job.record_id, &properties)
                    .await
                    .map(|fields| hubspot_lead(&fields, &config.linkedin_url_property, priority))
            }
            (Source::Salesforce, _, Some((client, config))) => {
                let object = job.record_object.as_deref().unwrap_or("Lead");
                let mut fields = vec![
                    config.linkedin_url_field.clone(),
                    "FirstName".to_owned(),
                    "LastName".to_owned(),
                    SALESFORCE_OWNER.to_owned(),
                ];
                // Contacts have no Company field; their company is on the Account.
                if object == "Lead" {
                    fields.push("Company".to_owned());
                }
                let priority = self.priority.salesforce.as_deref();
                fields.extend(priority.map(str::to_owned));
                client
                    .read_record(object, &job.record_id, &fields)
                    .await
                    .map(|fields| salesforce_lead(&fields, &config.linkedin_url_field, priority))
            }
            (source, ..) => Err(CallFailure::Refused {
                reason: format!("no CRM is configured to read `{source}` records ([crm.{source}])"),
            }),
        }
    }

    /// The account that sends for a record of `source` owned by `owner_id`.
    pub fn account_for(&self, source: Source, owner_id: Option<&str>) -> AccountId {
        let fallback = match source {
            Source::HubSpot => self.hubspot_fallback.as_deref(),
            _ => self.salesforce_fallback.as_deref(),
        };
        route_account(&self.crm, source, owner_id, fallback)
    }

    /// The LinkedIn URL field's name in `source`, for error messages.
    pub fn url_field(&self, source: Source) -> String {
        url_field(&self.crm, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_route_to_their_account_and_others_to_the_fallback() {
        let mut hubspot = HubSpotCrmConfig::default();
        hubspot.owners.insert("42".into(), "acc_rep".into());
        let crm = CrmConfig {
            hubspot: Some(hubspot),
            ..CrmConfig::default()
        };
        let route = |owner, fallback| route_account(&crm, Source::HubSpot, owner, fallback);
        assert_eq!(route(Some("42"), Some("acc_default")), "acc_rep");
        assert_eq!(route(Some("7"), Some("acc_default")), "acc_default");
        assert_eq!(route(None, None), "");
        assert_eq!(
            route_account(&crm, Source::Salesforce, Some("42"), None),
            ""
        );
    }

    #[test]
    fn record_fields_become_a_lead_and_blank_values_count_as_absent() {
        let fields = RecordFields::from([
            (
                "hs_linkedin_url".into(),
                "https://linkedin.com/in/ada".into(),
            ),
            ("firstname".into(), "Ada".into()),
            ("company".into(), "  ".into()),
            ("hubspot_owner_id".into(), "42".into()),
            ("hubspotscore".into(), "37.6".into()),
        ]);
        let lead = hubspot_lead(&fields, "hs_linkedin_url", Some("hubspotscore"));
        assert_eq!(lead.priority, Some(38));
        assert_eq!(
            hubspot_lead(&fields, "hs_linkedin_url", None).priority,
            None
        );
        assert_eq!(
            lead.linkedin_url.as_deref(),
            Some("https://linkedin.com/in/ada")
        );
        assert_eq!(lead.first_name.as_deref(), Some("Ada"));
        assert_eq!(lead.company, None);
        assert_eq!(lead.owner_id.as_deref(), Some("42"));
        let fields = RecordFields::from([
            (
                "LinkedIn_URL__c".into(),
                "https://linkedin.com/in/bo".into(),
            ),
            ("OwnerId".into(), "005xx".into()),
            ("Rating__c".into(), "hot".into()),
        ]);
        let lead = salesforce_lead(&fields, "LinkedIn_URL__c", Some("Rating__c"));
        assert_eq!(lead.priority, None, "not a number: no priority");
        assert_eq!(
            lead.linkedin_url.as_deref(),
            Some("https://linkedin.com/in/bo")
        );
        assert_eq!(lead.owner_id.as_deref(), Some("005xx"));
    }

    #[test]
    fn a_crm_number_becomes_a_priority_within_range() {
        assert_eq!(priority_of(" 12 "), Some(12));
        assert_eq!(priority_of("-3"), Some(-3));
        assert_eq!(priority_of("99.5"), Some(100));
        assert_eq!(priority_of("1e12"), Some(1000));
        for nothing in ["", "  ", "high", "NaN", "inf"] {
            assert_eq!(priority_of(nothing), None, "{nothing:?}");
        }
    }
}
