//! The simulated LinkedIn members. There is no profile table: a profile's standing follows
//! from its vanity slug, so a test picks the behaviour it wants by naming the profile.
//!
//! - `unknown-…` or `notfound-…`: does not exist (404).
//! - `connected-…`: already a 1st-degree connection of every account.
//! - `pending-…`: an invitation from the account, sent by another tool, is pending.
//! - anything else: exists, not connected.
//!
//! Slugs are compared lower-cased, as LinkedIn does. A profile's URN is derived from the slug
//! so it is the same in every run: `urn:li:fsd_profile:ACoAA` + the first 20 upper-case hex
//! digits of sha256(slug).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

const URN_PREFIX: &str = "urn:li:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    NotFound,
    Connected,
    PendingElsewhere,
    Open,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The identity used in the invitation counts: the slug, or the URN for a URN the sim
    /// never generated.
    pub key: String,
    pub urn: String,
    pub standing: Standing,
}

impl Profile {
    /// The vanity slug, unless the profile is known only by a URN.
    pub fn slug(&self) -> Option<&str> {
        (!self.key.starts_with(URN_PREFIX)).then_some(self.key.as_str())
    }

    /// Whether an invitation from the account, sent by another tool, is pending.
    pub fn pending_elsewhere(&self) -> bool {
        self.standing == Standing::PendingElsewhere
    }
}

/// The deterministic URN the sim gives the profile with this (lower-case) slug.
pub fn urn_for_slug(slug: &str) -> String {
    let digest = Sha256::digest(slug.as_bytes());
    let hex: String = digest[..10].iter().map(|b| format!("{b:02X}")).collect();
    format!("urn:li:fsd_profile:ACoAA{hex}")
}

fn standing_of(slug: &str) -> Standing {
    if slug.starts_with("unknown-") || slug.starts_with("notfound-") {
        Standing::NotFound
    } else if slug.starts_with("connected-") {
        Standing::Connected
    } else if slug.starts_with("pending-") {
        Standing::PendingElsewhere
    } else {
        Standing::Open
    }
}

/// Remembers the URNs handed out, because a hash cannot be turned back into its slug.
#[derive(Debug, Default)]
pub struct Directory {
    slug_by_urn: HashMap<String, String>,
}

impl Directory {
    /// The profile a `profileId` or `profileUrn` (either may hold a URN) refers to.
    pub fn resolve(&mut self, reference: &str) -> Profile {
        let reference = reference.trim();
        if reference.starts_with(URN_PREFIX) {
            return match self.slug_by_urn.get(reference) {
                Some(slug) => Profile {
                    key: slug.clone(),
                    urn: reference.to_owned(),
                    standing: standing_of(slug),
                },
                // A real member the sim has not met yet: it exists.
                None => Profile {
                    key: reference.to_owned(),
                    urn: reference.to_owned(),
                    standing: Standing::Open,
                },
            };
        }
        let slug = reference.to_lowercase();
        let urn = urn_for_slug(&slug);
        self.slug_by_urn.insert(urn.clone(), slug.clone());
        Profile {
            key: slug.clone(),
            urn,
            standing: standing_of(&slug),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urn_is_deterministic_and_well_formed() {
        let urn = urn_for_slug("john-doe-123");
        assert_eq!(urn, urn_for_slug("john-doe-123"));
        assert_ne!(urn, urn_for_slug("jane-doe-123"));
        let tail = urn.strip_prefix("urn:li:fsd_profile:ACoAA").unwrap();
        assert_eq!(tail.len(), 20);
        assert!(
            tail.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        // sha256("abc") starts ba7816bf8f01cfea4141.
        assert_eq!(
            urn_for_slug("abc"),
            "urn:li:fsd_profile:ACoAABA7816BF8F01CFEA4141"
        );
    }

    #[test]
    fn standing_follows_the_slug_prefix() {
        let mut d = Directory::default();
        assert_eq!(d.resolve("unknown-x").standing, Standing::NotFound);
        assert_eq!(d.resolve("notfound-x").standing, Standing::NotFound);
        assert_eq!(d.resolve("Connected-X").standing, Standing::Connected);
        assert_eq!(d.resolve("pending-x").standing, Standing::PendingElsewhere);
        assert_eq!(d.resolve("john-doe").standing, Standing::Open);
        assert_eq!(d.resolve("John-Doe ").key, "john-doe");
    }

    #[test]
    fn known_urns_resolve_to_their_slug_unknown_ones_to_themselves() {
        let mut d = Directory::default();
        let urn = d.resolve("connected-amy").urn;
        assert_eq!(
            d.resolve(&urn),
            Profile {
                key: "connected-amy".into(),
                urn: urn.clone(),
                standing: Standing::Connected,
            }
        );
        let stranger = "urn:li:fsd_profile:ACoAAZZZ";
        assert_eq!(d.resolve(stranger).key, stranger);
        assert_eq!(d.resolve(stranger).standing, Standing::Open);
    }
}
