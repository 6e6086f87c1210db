//! `[sources.salesforce]`: Outbound Messages authenticated by organization id and a URL
//! token, and JSON callouts from Flow or Apex signed with Standard Webhooks or plain HMAC.
//!
//! ```toml
//! [sources.salesforce]
//! organization_id = "00D5g000004SNFhEAO"   # Setup > Company Information; 15 or 18 characters
//! token = "..."                            # or token_file; goes in the endpoint URL
//! account_id = "acc_12345"                 # optional: the ConnectSafely account for its jobs
//! qualify = { field = "Status", value = "Qualified" }   # optional
//!
//! [sources.salesforce.callout]
//! standard_webhooks_secrets = ["whsec_..."]
//!
//! [sources.salesforce.callout.hmac]
//! secret = "..."                           # or secret_file
//! encoding = "hex"                         # or "base64"
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::outbound::valid_org_id;
use crate::secret::Secret;
use crate::signature::hmac_callout::HmacCalloutConfig;
use crate::signature::standard_webhooks;

const PREFIX: &str = "sources.salesforce";
/// The token is the only secret an Outbound Message carries; shorter ones can be guessed.
const MIN_TOKEN_CHARS: usize = 16;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceSourceConfig {
    /// The org whose Outbound Messages are accepted; either the 15- or 18-character form.
    pub organization_id: Option<String>,
    /// The shared secret in the Outbound Message endpoint URL.
    pub token: Option<Secret>,
    /// Only records whose field has this value become jobs; without it, every one does.
    pub qualify: Option<QualifyRule>,
    /// Records whose field has this value call their lead off instead.
    pub withdraw: Option<QualifyRule>,
    /// The ConnectSafely account for Salesforce jobs, when not the global default.
    pub account_id: Option<String>,
    pub callout: CalloutSigning,
    /// A number field carried by the Outbound Message or callout (and read with the record)
    /// as the job's priority; a later message with another value updates a waiting job.
    pub priority_field: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QualifyRule {
    /// The field's API name, e.g. `Status` or `Qualified__c`.
    pub field: String,
    pub value: String,
}

impl QualifyRule {
    /// Exact, case-sensitive, after trimming the record's value: picklist values are
    /// stored exactly as defined; a checkbox arrives as `true`/`false`.
    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        fields
            .get(&self.field)
            .is_some_and(|value| value.trim() == self.value)
    }
}

/// How JSON callouts are signed; each configured scheme is accepted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalloutSigning {
    /// `whsec_...` secrets; several allow rotation.
    pub standard_webhooks_secrets: Vec<Secret>,
    pub hmac: Option<HmacCalloutConfig>,
}

impl SalesforceSourceConfig {
    /// Pushes `sources.salesforce.<key>: problem` for each problem. Run it after `token_file`
    /// and `callout.hmac.secret_file` have been read; an unreadable file is reported by the
    /// reader.
    pub fn check(&self, problems: &mut Vec<String>) {
        match &self.organization_id {
            None => problems.push(format!(
                "{PREFIX}.organization_id: missing (Setup > Company Information > Salesforce.com Organization ID)"
            )),
            Some(id) if !valid_org_id(id.trim()) => problems.push(format!(
                "{PREFIX}.organization_id: {id:?} is not an organization id (\"00D\" then 12 more letters and digits, or 15 with the right 3-character checksum)"
            )),
            Some(_) => {}
        }
        match &self.token {
            None => problems.push(format!(
                "{PREFIX}.token: missing (set token or token_file); Outbound Messages carry no signature, so this token in the endpoint URL is what authenticates them"
            )),
            Some(token) => check_token(token.expose(), problems),
        }
        for (name, rule) in [("qualify", &self.qualify), ("withdraw", &self.withdraw)] {
            let Some(rule) = rule else { continue };
            for (key, value) in [("field", &rule.field), ("value", &rule.value)] {
                if value.trim().is_empty() {
                    problems.push(format!("{PREFIX}.{name}.{key}: must not be empty"));
                }
            }
        }
        let trimmed =
            |rule: &QualifyRule| (rule.field.trim().to_owned(), rule.value.trim().to_owned());
        if self.withdraw.as_ref().map(trimmed).is_some()
            && self.withdraw.as_ref().map(trimmed) == self.qualify.as_ref().map(trimmed)
        {
            problems.push(format!(
                "{PREFIX}.withdraw: the same rule as qualify; a record cannot both qualify and be called off"
            ));
        }
        if self
            .account_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            problems.push(format!(
                "{PREFIX}.account_id: must not be empty (leave it out to use connectsafely.default_account_id)"
            ));
        }
        if self
            .priority_field
            .as_deref()
            .is_some_and(|f| f.trim().is_empty())
        {
            problems.push(format!(
                "{PREFIX}.priority_field: must not be empty (leave it out for priority 0)"
            ));
        }
        for (i, secret) in self.callout.standard_webhooks_secrets.iter().enumerate() {
            if let Err(e) = standard_webhooks::Signer::new(secret.expose()) {
                problems.push(format!(
                    "{PREFIX}.callout.standard_webhooks_secrets[{i}]: {e}"
                ));
            }
        }
        if let Some(hmac) = &self.callout.hmac {
            hmac.check(&format!("{PREFIX}.callout.hmac"), problems);
        }
    }
}

/// Never quotes the token: the messages reach the terminal and the logs.
fn check_token(token: &str, problems: &mut Vec<String>) {
    if token.chars().count() < MIN_TOKEN_CHARS {
        problems.push(format!(
            "{PREFIX}.token: must be at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
        ));
    }
    // It goes into a URL as is; anything else would need percent-encoding in Salesforce's
    // endpoint field and is easy to get wrong there.
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    {
        problems.push(format!(
            "{PREFIX}.token: must use only letters, digits and - . _ ~ (it goes into the endpoint URL)"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::{Format, Toml};

    const TOKEN: &str = "k3Jd9sLq2Vx7Rm4T";
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn from_toml(text: &str) -> Result<SalesforceSourceConfig, String> {
        Figment::from(Toml::string(text))
            .extract()
            .map_err(|e| e.to_string())
    }

    fn problems(text: &str) -> Vec<String> {
        let mut problems = Vec::new();
        from_toml(text).unwrap().check(&mut problems);
        problems
    }

    fn minimal(extra: &str) -> String {
        format!("organization_id = \"00D5g000004SNFhEAO\"\ntoken = \"{TOKEN}\"\n{extra}")
    }

    #[test]
    fn a_full_config_reads_and_passes() {
        let text = format!(
            r#"
            organization_id = "00D5g000004SNFh"
            token = "{TOKEN}"
            account_id = "acc_12345"
            qualify = {{ field = "Status", value = "Qualified" }}
            [callout]
            standard_webhooks_secrets = ["{WHSEC}"]
            [callout.hmac]
            secret = "0123456789abcdef0123"
            encoding = "base64"
            "#
        );
        let config = from_toml(&text).unwrap();
        assert_eq!(config.organization_id.as_deref(), Some("00D5g000004SNFh"));
        assert_eq!(config.account_id.as_deref(), Some("acc_12345"));
        assert_eq!(
            config.qualify,
            Some(QualifyRule {
                field: "Status".into(),
                value: "Qualified".into()
            })
        );
        let hmac = config.callout.hmac.as_ref().unwrap();
        assert_eq!(hmac.signature_header, "X-Signature");
        let mut found = Vec::new();
        config.check(&mut found);
        assert_eq!(found, Vec::<String>::new());
        assert!(!format!("{config:?}").contains(TOKEN));
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
        assert_eq!(problems(&minimal("")), Vec::<String>::new());
    }

    #[test]
    fn unknown_keys_are_refused() {
        for text in [
            minimal("org_id = \"x\""),
            minimal("qualify = { field = \"Status\", values = \"Q\" }"),
            minimal("[callout]\nsecrets = []"),
        ] {
            assert!(from_toml(&text).is_err(), "{text}");
        }
    }

    #[test]
    fn the_org_id_is_required_and_checked() {
        assert_eq!(
            problems(&format!("token = \"{TOKEN}\"")),
            [
                "sources.salesforce.organization_id: missing (Setup > Company Information > Salesforce.com Organization ID)"
            ]
        );
        for id in [
            "00D5g000004SNFhEAA",
            "00Q5g00000AbCdE",
            "00D5g000004SNF",
            "",
        ] {
            let found = problems(&format!("organization_id = \"{id}\"\ntoken = \"{TOKEN}\""));
            assert_eq!(found.len(), 1, "{id}: {found:?}");
            assert!(
                found[0].starts_with(&format!(
                    "sources.salesforce.organization_id: \"{id}\" is not an organization id"
                )),
                "{found:?}"
            );
        }
    }

    #[test]
    fn the_token_is_required_long_and_url_safe() {
        let no_token = "organization_id = \"00D5g000004SNFhEAO\"";
        let found = problems(no_token);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("sources.salesforce.token: missing"),
            "{found:?}"
        );
        let short = problems(&format!("{no_token}\ntoken = \"abc\""));
        assert_eq!(
            short,
            [
                "sources.salesforce.token: must be at least 16 characters (e.g. `openssl rand -hex 32`)"
            ]
        );
        let unsafe_token = problems(&format!("{no_token}\ntoken = \"abcdefgh/ijklmnop?q\""));
        assert_eq!(
            unsafe_token,
            [
                "sources.salesforce.token: must use only letters, digits and - . _ ~ (it goes into the endpoint URL)"
            ]
        );
        assert!(!unsafe_token[0].contains("abcdefgh"));
    }

    #[test]
    fn qualify_account_and_callout_problems_are_named() {
        let found = problems(&minimal(
            r#"
            account_id = " "
            qualify = { field = "", value = " " }
            [callout]
            standard_webhooks_secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "nope"]
            [callout.hmac]
            "#,
        ));
        assert_eq!(
            found,
            [
                "sources.salesforce.qualify.field: must not be empty",
                "sources.salesforce.qualify.value: must not be empty",
                "sources.salesforce.account_id: must not be empty (leave it out to use connectsafely.default_account_id)",
                "sources.salesforce.callout.standard_webhooks_secrets[1]: invalid signing secret: must start with \"whsec_\"",
                "sources.salesforce.callout.hmac.secret: missing (set secret or secret_file)",
            ]
        );
    }

    #[test]
    fn the_qualify_rule_matches_exactly_after_trimming() {
        let rule = QualifyRule {
            field: "Status".into(),
            value: "Qualified".into(),
        };
        let fields = |value: &str| BTreeMap::from([("Status".to_owned(), value.to_owned())]);
        assert!(rule.matches(&fields("Qualified")));
        assert!(rule.matches(&fields(" Qualified\n")));
        assert!(!rule.matches(&fields("qualified")));
        assert!(!rule.matches(&fields("Unqualified")));
        assert!(!rule.matches(&BTreeMap::new()));
    }
}
