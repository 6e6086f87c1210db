//! `[sources.hubspot]`: app-subscription webhooks and workflow actions signed with the
//! app's client secret, and the trigger rules that make an event a lead.

use serde::Deserialize;

use super::payload::{TriggerRule, Triggers};
use crate::secret::Secret;

/// `[sources.hubspot]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSpotSourceConfig {
    /// The app's client secret, which keys every signature version.
    pub client_secret: Option<Secret>,
    /// The base URL HubSpot calls, e.g. `https://hooks.example.com`: signatures cover the full
    /// URL, which a service behind a proxy cannot see for itself.
    pub public_url: Option<String>,
    pub triggers: Vec<TriggerRule>,
    /// `contact.propertyChange` events that call the contact's lead off.
    pub withdraw_triggers: Vec<TriggerRule>,
    pub on_creation: bool,
    /// The ConnectSafely account for HubSpot jobs that no owner mapping routes elsewhere.
    pub account_id: Option<String>,
    /// A number property read with the contact as the job's priority (e.g. `hubspotscore`);
    /// a `propertyChange` subscription to it updates a waiting job.
    pub priority_property: Option<String>,
}

impl HubSpotSourceConfig {
    const KEY: &str = "sources.hubspot";

    pub fn triggers(&self) -> Triggers {
        Triggers {
            rules: self.triggers.clone(),
            on_creation: self.on_creation,
        }
    }

    /// The rules that call a contact's lead off.
    pub fn withdraw_triggers(&self) -> Triggers {
        Triggers {
            rules: self.withdraw_triggers.clone(),
            on_creation: false,
        }
    }

    /// The URL HubSpot signed for a request that reached us at `path_and_query`
    /// (e.g. `/webhooks/hubspot?x=1`); `None` without a `public_url`.
    pub fn signed_uri(&self, path_and_query: &str) -> Option<String> {
        let base = self.public_url.as_deref()?.trim().trim_end_matches('/');
        Some(format!("{base}{path_and_query}"))
    }

    /// Pushes one message per problem, each starting with the key it is about.
    pub fn check(&self, problems: &mut Vec<String>) {
        let key = Self::KEY;
        match &self.client_secret {
            None => problems.push(format!(
                "{key}.client_secret is missing (inline, LEADLINK_SOURCES__HUBSPOT__CLIENT_SECRET or client_secret_file)"
            )),
            Some(secret) if secret.expose().trim().is_empty() => {
                problems.push(format!("{key}.client_secret is empty"))
            }
            _ => {}
        }
        match self.public_url.as_deref().map(str::trim) {
            None | Some("") => problems.push(format!(
                "{key}.public_url is missing: the base URL HubSpot calls (e.g. https://hooks.example.com), which its signatures cover"
            )),
            Some(raw) => {
                if let Err(reason) = check_public_url(raw) {
                    problems.push(format!("{key}.public_url: {reason}"));
                }
            }
        }
        if self.triggers.is_empty() && !self.on_creation {
            problems.push(format!(
                "{key}.triggers is empty and on_creation is false: nothing would ever qualify"
            ));
        }
        for (name, rules) in [
            ("triggers", &self.triggers),
            ("withdraw_triggers", &self.withdraw_triggers),
        ] {
            for (i, rule) in rules.iter().enumerate() {
                if rule.property.trim().is_empty() {
                    problems.push(format!("{key}.{name}[{i}].property is empty"));
                }
                if rule.value.trim().is_empty() {
                    problems.push(format!("{key}.{name}[{i}].value is empty"));
                }
            }
        }
        for rule in &self.withdraw_triggers {
            if self.triggers.iter().any(|trigger| trigger.same_as(rule)) {
                problems.push(format!(
                    "{key}.withdraw_triggers: {rule} is also a trigger; a change cannot both qualify and call off a contact"
                ));
            }
        }
        if self
            .account_id
            .as_deref()
            .is_some_and(|a| a.trim().is_empty())
        {
            problems.push(format!(
                "{key}.account_id is empty: leave it out to use the default account"
            ));
        }
        if self
            .priority_property
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
        {
            problems.push(format!(
                "{key}.priority_property is empty: leave it out for priority 0"
            ));
        }
    }
}

fn check_public_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("not an absolute URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("must be an http(s) URL".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment: it is a base for paths".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(toml: &str) -> Result<HubSpotSourceConfig, String> {
        use figment::providers::{Format, Toml};
        figment::Figment::new()
            .merge(Toml::string(toml))
            .extract()
            .map_err(|e| e.to_string())
    }

    fn problems(config: &HubSpotSourceConfig) -> Vec<String> {
        let mut problems = Vec::new();
        config.check(&mut problems);
        problems
    }

    #[test]
    fn a_complete_config_deserializes_and_passes() {
        let c = from_toml(
            r#"
            client_secret = "yyyy"
            public_url = "https://hooks.example.com/"
            on_creation = false
            account_id = "acct_1"
            triggers = [{ property = "hs_lead_status", value = "QUALIFIED" }]
            "#,
        )
        .unwrap();
        assert_eq!(problems(&c), Vec::<String>::new());
        assert_eq!(c.triggers().rules.len(), 1);
        assert_eq!(
            c.signed_uri("/webhooks/hubspot?a=1").as_deref(),
            Some("https://hooks.example.com/webhooks/hubspot?a=1")
        );
        assert!(!format!("{c:?}").contains("yyyy"));
    }

    #[test]
    fn config_problems_name_their_key() {
        let c = HubSpotSourceConfig {
            triggers: vec![TriggerRule {
                property: " ".into(),
                value: String::new(),
            }],
            account_id: Some(String::new()),
            ..Default::default()
        };
        let found = problems(&c);
        assert_eq!(found.len(), 5, "{found:#?}");
        for (problem, start) in found.iter().zip([
            "sources.hubspot.client_secret is missing",
            "sources.hubspot.public_url is missing",
            "sources.hubspot.triggers[0].property is empty",
            "sources.hubspot.triggers[0].value is empty",
            "sources.hubspot.account_id is empty",
        ]) {
            assert!(problem.starts_with(start), "{problem}");
        }

        let nothing = HubSpotSourceConfig {
            client_secret: Some(Secret::new("from-a-file")),
            public_url: Some("https://hooks.example.com".into()),
            ..Default::default()
        };
        assert_eq!(
            problems(&nothing),
            [
                "sources.hubspot.triggers is empty and on_creation is false: nothing would ever qualify"
            ]
        );

        for (url, reason) in [
            ("hooks.example.com", "not an absolute URL"),
            ("ftp://hooks.example.com", "must be an http(s) URL"),
            (
                "https://hooks.example.com/?token=1",
                "must not have a query",
            ),
            (
                "https://u:p@hooks.example.com",
                "must not carry credentials",
            ),
        ] {
            let c = HubSpotSourceConfig {
                client_secret: Some(Secret::new("s")),
                public_url: Some(url.into()),
                on_creation: true,
                ..Default::default()
            };
            let found = problems(&c);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(
                found[0].starts_with("sources.hubspot.public_url: ") && found[0].contains(reason),
                "{}",
                found[0]
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = from_toml("client_secrets = \"x\"").unwrap_err();
        assert!(error.to_string().contains("client_secrets"), "{error}");
        assert!(from_toml("[[triggers]]\nproperty = \"a\"\nvalue = \"b\"\nvalues = 1").is_err());
    }
}
