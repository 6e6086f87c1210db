//! `[crm.salesforce]`: where the org is, how to log in, and which fields hold what.

use crate::secret::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceCrmConfig {
    /// The org's My Domain, e.g. `https://acme.my.salesforce.com`; the token endpoint lives there.
    #[serde(deserialize_with = "some_url")]
    pub my_domain_url: Option<Url>,
    /// The connected app's consumer key.
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub api_version: String,
    /// The field read for the lead's LinkedIn profile.
    pub linkedin_url_field: String,
    pub fields: SalesforceFields,
    /// Record `OwnerId` -> the ConnectSafely `accountId` that sends for that owner.
    pub owners: BTreeMap<String, String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for SalesforceCrmConfig {
    fn default() -> Self {
        Self {
            my_domain_url: None,
            client_id: None,
            client_secret: None,
            api_version: "60.0".into(),
            linkedin_url_field: "LinkedIn_URL__c".into(),
            fields: SalesforceFields::default(),
            owners: BTreeMap::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The fields written back on the Lead or Contact.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceFields {
    pub status: String,
    pub profile_urn: String,
    pub hold_until: String,
    pub retry_at: String,
    pub last_error: String,
    pub status_changed_at: String,
}

impl Default for SalesforceFields {
    fn default() -> Self {
        Self {
            status: "LinkedIn_Status__c".into(),
            profile_urn: "LinkedIn_Profile_URN__c".into(),
            hold_until: "LinkedIn_Hold_Until__c".into(),
            retry_at: "LinkedIn_Retry_At__c".into(),
            last_error: "LinkedIn_Last_Error__c".into(),
            status_changed_at: "LinkedIn_Status_Changed_At__c".into(),
        }
    }
}

const PREFIX: &str = "crm.salesforce";

impl SalesforceCrmConfig {
    pub fn check(&self, problems: &mut Vec<String>) {
        match &self.my_domain_url {
            None => problems.push(format!("{PREFIX}.my_domain_url is missing")),
            Some(url) => {
                if let Err(problem) = usable_base_url(url) {
                    problems.push(format!("{PREFIX}.my_domain_url: {problem}"));
                }
                if !matches!(url.path(), "" | "/") || url.query().is_some() {
                    problems.push(format!(
                        "{PREFIX}.my_domain_url: must have no path or query, e.g. https://acme.my.salesforce.com"
                    ));
                }
            }
        }
        if self
            .client_id
            .as_deref()
            .is_none_or(|id| id.trim().is_empty())
        {
            problems.push(format!("{PREFIX}.client_id is missing"));
        }
        if self
            .client_secret
            .as_ref()
            .is_none_or(|s| s.expose().trim().is_empty())
        {
            problems.push(format!(
                "{PREFIX}.client_secret is missing (inline, LEADLINK_CRM__SALESFORCE__CLIENT_SECRET or client_secret_file)"
            ));
        }
        if !is_api_version(&self.api_version) {
            problems.push(format!(
                "{PREFIX}.api_version: `{}` is not a version like 60.0",
                self.api_version
            ));
        }
        let f = &self.fields;
        let names = [
            ("linkedin_url_field", &self.linkedin_url_field),
            ("fields.status", &f.status),
            ("fields.profile_urn", &f.profile_urn),
            ("fields.hold_until", &f.hold_until),
            ("fields.retry_at", &f.retry_at),
            ("fields.last_error", &f.last_error),
            ("fields.status_changed_at", &f.status_changed_at),
        ];
        for (i, (key, name)) in names.iter().enumerate() {
            if !is_field_name(name) {
                problems.push(format!(
                    "{PREFIX}.{key}: `{name}` is not a field API name (letters, digits, _)"
                ));
            }
            // Field names are case-insensitive in Salesforce.
            if let Some((other, _)) = names[..i]
                .iter()
                .find(|(_, earlier)| earlier.eq_ignore_ascii_case(name))
            {
                problems.push(format!("{PREFIX}.{key}: `{name}` is also used by {other}"));
            }
        }
        for (owner, account) in &self.owners {
            if !is_record_id(owner) {
                problems.push(format!(
                    "{PREFIX}.owners: `{owner}` is not a 15- or 18-character user id"
                ));
            }
            if account.trim().is_empty() {
                problems.push(format!("{PREFIX}.owners.{owner}: empty accountId"));
            }
        }
        if self.timeout.is_zero() {
            problems.push(format!("{PREFIX}.timeout must be more than zero"));
        }
    }

    /// The ConnectSafely account for a record's `OwnerId`. The API returns 18-character ids
    /// while the Salesforce UI shows 15; the first 15 characters identify the record either way.
    pub fn account_for_owner(&self, owner_id: &str) -> Option<&str> {
        let key = owner_id.get(..15)?;
        self.owners
            .iter()
            .find(|(owner, _)| owner.get(..15) == Some(key))
            .map(|(_, account)| account.as_str())
    }
}

/// The `url` crate is built without its serde feature here.
fn some_url<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Url>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Url::parse(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a URL: {e}")))
}

/// https, or http on the loopback interface (the tests' fake Salesforce).
pub(super) fn usable_base_url(url: &Url) -> Result<(), String> {
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        scheme => return Err(format!("must be https, not {scheme}")),
    }
    if url.host_str().is_none() {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(())
}

/// Salesforce record ids: 15 case-sensitive characters, or 18 with a checksum suffix.
pub(super) fn is_record_id(id: &str) -> bool {
    matches!(id.len(), 15 | 18) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_api_version(version: &str) -> bool {
    version.split_once('.').is_some_and(|(major, minor)| {
        !major.is_empty()
            && !minor.is_empty()
            && major
                .bytes()
                .chain(minor.bytes())
                .all(|b| b.is_ascii_digit())
    })
}

fn is_field_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> SalesforceCrmConfig {
        SalesforceCrmConfig {
            my_domain_url: Some("https://acme.my.salesforce.com".parse().unwrap()),
            client_id: Some("3MVG9".into()),
            client_secret: Some(Secret::new("s3cr3t")),
            ..Default::default()
        }
    }

    fn problems(config: &SalesforceCrmConfig) -> Vec<String> {
        let mut problems = Vec::new();
        config.check(&mut problems);
        problems
    }

    #[test]
    fn defaults_with_credentials_are_valid() {
        assert_eq!(problems(&valid()), Vec::<String>::new());
    }

    #[test]
    fn parses_from_toml_with_humantime_timeout() {
        let config = from_toml(
            r#"
            my_domain_url = "https://acme.my.salesforce.com"
            client_id = "x"
            client_secret = 12345
            timeout = "3s"
            fields = { status = "Status__c" }
            owners = { "005000000000001" = "acct-1" }
            "#,
        )
        .unwrap();
        assert_eq!(config.timeout, Duration::from_secs(3));
        assert_eq!(config.fields.status, "Status__c");
        assert_eq!(config.fields.retry_at, "LinkedIn_Retry_At__c");
        assert_eq!(config.api_version, "60.0");
        assert_eq!(config.client_secret.as_ref().unwrap().expose(), "12345");
        assert_eq!(
            config.account_for_owner("005000000000001AAA"),
            Some("acct-1")
        );
        assert!(from_toml("fields = { typo = \"x\" }").is_err());
        assert!(from_toml("typo = 1").is_err());
        assert!(from_toml("my_domain_url = \"acme\"").is_err());
    }

    fn from_toml(text: &str) -> Result<SalesforceCrmConfig, String> {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(text))
            .extract()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn missing_credentials_and_bad_urls_are_reported() {
        let found = problems(&SalesforceCrmConfig::default());
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("crm.salesforce.my_domain_url"))
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("crm.salesforce.client_id"))
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("crm.salesforce.client_secret"))
        );
        for url in [
            "http://acme.my.salesforce.com",
            "https://acme.my.salesforce.com/services",
            "https://user:pw@acme.my.salesforce.com",
        ] {
            let config = SalesforceCrmConfig {
                my_domain_url: Some(url.parse().unwrap()),
                ..valid()
            };
            assert_eq!(problems(&config).len(), 1, "{url}: {:?}", problems(&config));
        }
        let local = SalesforceCrmConfig {
            my_domain_url: Some("http://127.0.0.1:8123".parse().unwrap()),
            ..valid()
        };
        assert_eq!(problems(&local), Vec::<String>::new());
    }

    #[test]
    fn versions_fields_owners_and_timeout_are_checked() {
        let mut config = valid();
        config.api_version = "v60".into();
        config.fields.retry_at = "LinkedIn_Status__c".into();
        config.fields.last_error = String::new();
        config.owners.insert("bob".into(), "acct".into());
        config.timeout = Duration::ZERO;
        let found = problems(&config);
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found[0].starts_with("crm.salesforce.api_version"));
        assert!(found[1].contains("fields.retry_at") && found[1].contains("fields.status"));
        assert!(found[2].starts_with("crm.salesforce.fields.last_error"));
    }

    #[test]
    fn owners_match_on_the_first_15_characters() {
        let mut config = valid();
        config
            .owners
            .insert("005Hs00000AbCdE".into(), "acct-1".into());
        assert_eq!(
            config.account_for_owner("005Hs00000AbCdEIAQ"),
            Some("acct-1")
        );
        assert_eq!(config.account_for_owner("005Hs00000AbCdE"), Some("acct-1"));
        assert_eq!(config.account_for_owner("005Hs00000ABCDE"), None);
        assert_eq!(config.account_for_owner("005"), None);
    }
}
