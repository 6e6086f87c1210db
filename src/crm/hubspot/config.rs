//! `[crm.hubspot]`: the private app token, the base URL, and the contact properties the
//! writeback sets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use url::Url;

use crate::secret::Secret;

/// `[crm.hubspot]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSpotCrmConfig {
    #[serde(deserialize_with = "url_from_str")]
    pub base_url: Url,
    /// A private app token with the contacts read and write scopes.
    pub access_token: Option<Secret>,
    /// Where the contact keeps its LinkedIn profile URL; portals differ.
    pub linkedin_url_property: String,
    pub properties: HubSpotProperties,
    /// HubSpot owner id -> ConnectSafely account id, so a lead goes out from its owner's
    /// LinkedIn account.
    pub owners: BTreeMap<String, String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for HubSpotCrmConfig {
    fn default() -> Self {
        Self {
            base_url: Url::parse("https://api.hubapi.com").expect("static URL"),
            access_token: None,
            linkedin_url_property: "hs_linkedin_url".into(),
            properties: HubSpotProperties::default(),
            owners: BTreeMap::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The contact properties the writeback sets. They must exist in the portal (HubSpot
/// refuses unknown properties), so the names are configurable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSpotProperties {
    pub status: String,
    pub profile_urn: String,
    pub hold_until: String,
    pub retry_at: String,
    pub last_error: String,
    pub status_changed_at: String,
}

impl Default for HubSpotProperties {
    fn default() -> Self {
        Self {
            status: "linkedin_connection_status".into(),
            profile_urn: "linkedin_profile_urn".into(),
            hold_until: "linkedin_hold_until".into(),
            retry_at: "linkedin_retry_at".into(),
            last_error: "linkedin_last_error".into(),
            status_changed_at: "linkedin_status_changed_at".into(),
        }
    }
}

impl HubSpotProperties {
    /// Each property with its configuration key.
    pub fn named(&self) -> [(&'static str, &str); 6] {
        [
            ("status", &self.status),
            ("profile_urn", &self.profile_urn),
            ("hold_until", &self.hold_until),
            ("retry_at", &self.retry_at),
            ("last_error", &self.last_error),
            ("status_changed_at", &self.status_changed_at),
        ]
    }
}

fn url_from_str<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
    let raw = String::deserialize(deserializer)?;
    Url::parse(raw.trim()).map_err(serde::de::Error::custom)
}

impl HubSpotCrmConfig {
    const KEY: &str = "crm.hubspot";

    /// Pushes one message per problem, each starting with the key it is about.
    pub fn check(&self, problems: &mut Vec<String>) {
        let key = Self::KEY;
        if !matches!(self.base_url.scheme(), "http" | "https") {
            problems.push(format!("{key}.base_url must be an http(s) URL"));
        }
        match &self.access_token {
            None => problems.push(format!(
                "{key}.access_token is missing (inline, LEADLINK_CRM__HUBSPOT__ACCESS_TOKEN or access_token_file)"
            )),
            Some(token) if token.expose().trim().is_empty() => {
                problems.push(format!("{key}.access_token is empty"))
            }
            _ => {}
        }
        if self.linkedin_url_property.trim().is_empty() {
            problems.push(format!("{key}.linkedin_url_property is empty"));
        }
        let mut seen = BTreeSet::new();
        for (name, property) in self.properties.named() {
            if property.trim().is_empty() {
                problems.push(format!("{key}.properties.{name} is empty"));
            } else if property == self.linkedin_url_property {
                problems.push(format!(
                    "{key}.properties.{name} is the linkedin_url_property: the writeback would overwrite the profile URL"
                ));
            } else if !seen.insert(property) {
                problems.push(format!(
                    "{key}.properties.{name}: `{property}` is already used by another status property"
                ));
            }
        }
        for (owner, account) in &self.owners {
            if owner.trim().is_empty() || account.trim().is_empty() {
                problems.push(format!(
                    "{key}.owners: owner ids and account ids must not be empty (`{owner}` = `{account}`)"
                ));
            }
        }
        if self.timeout.is_zero() {
            problems.push(format!("{key}.timeout must be longer than zero"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(toml: &str) -> Result<HubSpotCrmConfig, String> {
        use figment::providers::{Format, Toml};
        figment::Figment::new()
            .merge(Toml::string(toml))
            .extract()
            .map_err(|e| e.to_string())
    }

    fn problems(config: &HubSpotCrmConfig) -> Vec<String> {
        let mut problems = Vec::new();
        config.check(&mut problems);
        problems
    }

    #[test]
    fn config_defaults_and_overrides() {
        let defaults = from_toml("access_token = \"t\"").unwrap();
        assert_eq!(defaults.base_url.as_str(), "https://api.hubapi.com/");
        assert_eq!(defaults.linkedin_url_property, "hs_linkedin_url");
        assert_eq!(defaults.properties.status, "linkedin_connection_status");
        assert_eq!(
            defaults.properties.status_changed_at,
            "linkedin_status_changed_at"
        );
        assert_eq!(defaults.timeout, Duration::from_secs(10));
        assert_eq!(problems(&defaults), Vec::<String>::new());

        let custom = from_toml(
            r#"
            base_url = "http://127.0.0.1:9200"
            access_token = "t"
            linkedin_url_property = "linkedin_profile"
            timeout = "3s"
            [properties]
            status = "li_status"
            [owners]
            "123" = "acct_ada"
            "#,
        )
        .unwrap();
        assert_eq!(custom.properties.status, "li_status");
        assert_eq!(custom.properties.retry_at, "linkedin_retry_at");
        assert_eq!(custom.owners["123"], "acct_ada");
        assert_eq!(custom.timeout, Duration::from_secs(3));
        assert_eq!(problems(&custom), Vec::<String>::new());

        assert!(from_toml("base_url = \"not a url\"").is_err());
        assert!(from_toml("acces_token = \"t\"").is_err());
        assert!(from_toml("[properties]\nstatuses = \"x\"").is_err());
    }

    #[test]
    fn config_problems_name_their_key() {
        let mut config = HubSpotCrmConfig {
            base_url: Url::parse("ftp://api.hubapi.com").unwrap(),
            linkedin_url_property: "li".into(),
            timeout: Duration::ZERO,
            ..Default::default()
        };
        config.properties.profile_urn = " ".into();
        config.properties.retry_at = "linkedin_hold_until".into();
        config.properties.last_error = "li".into();
        config.owners.insert("7".into(), String::new());
        let found = problems(&config);
        let expected = [
            "crm.hubspot.base_url must be an http(s) URL",
            "crm.hubspot.access_token is missing",
            "crm.hubspot.properties.profile_urn is empty",
            "crm.hubspot.properties.retry_at: `linkedin_hold_until` is already used",
            "crm.hubspot.properties.last_error is the linkedin_url_property",
            "crm.hubspot.owners: owner ids and account ids must not be empty",
            "crm.hubspot.timeout must be longer than zero",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (problem, start) in found.iter().zip(expected) {
            assert!(problem.starts_with(start), "{problem}");
        }

        let empty = HubSpotCrmConfig {
            access_token: Some(Secret::new(" ")),
            ..Default::default()
        };
        assert_eq!(problems(&empty), ["crm.hubspot.access_token is empty"]);
    }
}
