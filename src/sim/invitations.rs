//! What happens to an invitation after it is sent: pending, then accepted or withdrawn. Pure:
//! every operation takes `now`, and a scheduled acceptance is not a timer but an instant
//! compared with the clock when the state is read, as the quota's resets and holds are.
//!
//! One record per (account, profile): LinkedIn keeps one invitation per pair, so a duplicate
//! send while one is pending only adds to `sends`, and a send after a withdrawal starts a new
//! invitation (new id) in the same record.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::profiles::Profile;
use super::state::iso;

/// Where the sim's invitation ids start: LinkedIn's are 19-digit numbers.
const FIRST_ID: u64 = 7_100_000_000_000_000_001;

/// The state of an invitation at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Accepted(DateTime<Utc>),
    Withdrawn(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// The vendor's `invitationId`; a new one for each invitation after a withdrawal.
    pub id: u64,
    pub member_urn: String,
    /// The vanity slug (`publicIdentifier`); `None` for a profile known only by its URN.
    pub public_identifier: Option<String>,
    /// Sends through the API to this profile, duplicates and earlier invitations included.
    pub sends: u32,
    /// When the current invitation was sent; `None` for one another tool sent (`pending-…`).
    pub sent_at: Option<DateTime<Utc>>,
    /// When it is (or was) accepted, if it ever is.
    pub accepts_at: Option<DateTime<Utc>>,
    pub withdrawn_at: Option<DateTime<Utc>>,
}

impl Invitation {
    pub fn phase(&self, now: DateTime<Utc>) -> Phase {
        if let Some(at) = self.withdrawn_at {
            return Phase::Withdrawn(at);
        }
        match self.accepts_at {
            Some(at) if at <= now => Phase::Accepted(at),
            _ => Phase::Pending,
        }
    }

    /// Until when LinkedIn refuses to invite the person again, if it does at `now`.
    pub fn reinvite_blocked_until(
        &self,
        block: TimeDelta,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        self.withdrawn_at
            .map(|at| {
                at.checked_add_signed(block)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            })
            .filter(|until| now < *until)
    }
}

/// A record of no send through the sim (yet), with its id.
fn blank(profile: &Profile, id: u64) -> Invitation {
    Invitation {
        id,
        member_urn: profile.urn.clone(),
        public_identifier: profile.slug().map(str::to_owned),
        sends: 0,
        sent_at: None,
        accepts_at: None,
        withdrawn_at: None,
    }
}

/// A withdrawal or acceptance asked of an invitation that is not pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPending;

/// Every account's invitations: account -> profile key -> record.
#[derive(Debug)]
pub struct Book {
    pub accounts: BTreeMap<String, BTreeMap<String, Invitation>>,
    next_id: u64,
}

impl Default for Book {
    fn default() -> Self {
        Book {
            accounts: BTreeMap::new(),
            next_id: FIRST_ID,
        }
    }
}

impl Book {
    pub fn get(&self, account: &str, profile_key: &str) -> Option<&Invitation> {
        self.accounts.get(account)?.get(profile_key)
    }

    /// The phase of the account's invitation to the profile, if there is one. A `pending-…`
    /// profile the sim sent nothing to has another tool's invitation pending.
    pub fn phase(&self, account: &str, profile: &Profile, now: DateTime<Utc>) -> Option<Phase> {
        match self.get(account, &profile.key) {
            Some(invitation) => Some(invitation.phase(now)),
            None => profile.pending_elsewhere().then_some(Phase::Pending),
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Records a send. A pending invitation stays as it is (a duplicate); otherwise a new one
    /// starts, accepted `accepts_after` from now when that is given.
    pub fn send(
        &mut self,
        account: &str,
        profile: &Profile,
        accepts_after: Option<TimeDelta>,
        now: DateTime<Utc>,
    ) -> &Invitation {
        let fresh = self
            .get(account, &profile.key)
            .is_none_or(|i| i.sent_at.is_none() || i.phase(now) != Phase::Pending);
        let id = fresh.then(|| self.take_id());
        let invitation = self
            .accounts
            .entry(account.to_owned())
            .or_default()
            .entry(profile.key.clone())
            .or_insert_with(|| blank(profile, id.unwrap_or_default()));
        invitation.sends += 1;
        if let Some(id) = id {
            invitation.id = id;
            invitation.sent_at = Some(now);
            // A delay past the end of the calendar never comes.
            invitation.accepts_at = accepts_after.and_then(|after| now.checked_add_signed(after));
            invitation.withdrawn_at = None;
        }
        invitation
    }

    /// The pending invitation, with a record made for another tool's (`pending-…`) one.
    fn pending(
        &mut self,
        account: &str,
        profile: &Profile,
        now: DateTime<Utc>,
    ) -> Result<&mut Invitation, NotPending> {
        if self.phase(account, profile, now) != Some(Phase::Pending) {
            return Err(NotPending);
        }
        let id = self
            .get(account, &profile.key)
            .is_none()
            .then(|| self.take_id());
        Ok(self
            .accounts
            .entry(account.to_owned())
            .or_default()
            .entry(profile.key.clone())
            .or_insert_with(|| blank(profile, id.unwrap_or_default())))
    }

    /// Withdraws the pending invitation; a scheduled acceptance will not happen.
    pub fn withdraw(
        &mut self,
        account: &str,
        profile: &Profile,
        now: DateTime<Utc>,
    ) -> Result<&Invitation, NotPending> {
        let invitation = self.pending(account, profile, now)?;
        invitation.withdrawn_at = Some(now);
        invitation.accepts_at = None;
        Ok(invitation)
    }

    /// The person accepts the pending invitation now.
    pub fn accept(
        &mut self,
        account: &str,
        profile: &Profile,
        now: DateTime<Utc>,
    ) -> Result<&Invitation, NotPending> {
        let invitation = self.pending(account, profile, now)?;
        invitation.accepts_at = Some(now);
        Ok(invitation)
    }

    /// The account's pending invitations sent through the sim, with their send times, newest
    /// first.
    pub fn pending_sent(
        &self,
        account: &str,
        now: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, &Invitation)> {
        let mut pending: Vec<_> = self
            .accounts
            .get(account)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|i| i.phase(now) == Phase::Pending)
            .filter_map(|i| Some((i.sent_at?, i)))
            .collect();
        // Ids grow with every new invitation, so they order by send time.
        pending.sort_by_key(|(_, i)| std::cmp::Reverse(i.id));
        pending
    }
}

/// The invitation as `GET /_sim/invitations` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shown {
    invitation_id: String,
    member_urn: String,
    public_identifier: Option<String>,
    state: &'static str,
    sends: u32,
    sent_at: Option<String>,
    /// A scheduled acceptance still to come.
    accepts_at: Option<String>,
    accepted_at: Option<String>,
    withdrawn_at: Option<String>,
}

impl Shown {
    pub fn new(invitation: &Invitation, now: DateTime<Utc>) -> Self {
        let phase = invitation.phase(now);
        let (state, accepted_at, withdrawn_at) = match phase {
            Phase::Pending => ("pending", None, None),
            Phase::Accepted(at) => ("accepted", Some(iso(at)), None),
            Phase::Withdrawn(at) => ("withdrawn", None, Some(iso(at))),
        };
        Shown {
            invitation_id: invitation.id.to_string(),
            member_urn: invitation.member_urn.clone(),
            public_identifier: invitation.public_identifier.clone(),
            state,
            sends: invitation.sends,
            sent_at: invitation.sent_at.map(iso),
            accepts_at: invitation
                .accepts_at
                .filter(|_| phase == Phase::Pending)
                .map(iso),
            accepted_at,
            withdrawn_at,
        }
    }
}

/// How LinkedIn shows a send time in the sent list: "just now", "5 minutes ago", "2 days ago".
pub fn relative(sent_at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let age = (now - sent_at).max(TimeDelta::zero());
    let (n, unit) = if age < TimeDelta::minutes(1) {
        return "just now".to_owned();
    } else if age < TimeDelta::hours(1) {
        (age.num_minutes(), "minute")
    } else if age < TimeDelta::days(1) {
        (age.num_hours(), "hour")
    } else if age < TimeDelta::weeks(1) {
        (age.num_days(), "day")
    } else if age < TimeDelta::days(30) {
        (age.num_weeks(), "week")
    } else if age < TimeDelta::days(365) {
        (age.num_days() / 30, "month")
    } else {
        (age.num_days() / 365, "year")
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural} ago")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::profiles::Directory;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn acceptance_happens_when_the_clock_passes_it() {
        let mut book = Book::default();
        let amy = Directory::default().resolve("amy");
        let t0 = at("2024-01-15T09:00:00Z");
        book.send("a", &amy, Some(TimeDelta::seconds(2)), t0);
        let later = t0 + TimeDelta::seconds(2);
        assert_eq!(
            book.phase("a", &amy, later - TimeDelta::milliseconds(1)),
            Some(Phase::Pending)
        );
        assert_eq!(book.phase("a", &amy, later), Some(Phase::Accepted(later)));
        assert_eq!(book.withdraw("a", &amy, later), Err(NotPending));
        assert!(book.pending_sent("a", later).is_empty());
    }

    #[test]
    fn withdrawal_cancels_acceptance_and_a_resend_is_a_new_invitation() {
        let mut book = Book::default();
        let amy = Directory::default().resolve("amy");
        let t0 = at("2024-01-15T09:00:00Z");
        let first = book.send("a", &amy, Some(TimeDelta::hours(1)), t0).id;
        // A duplicate while pending keeps the invitation.
        assert_eq!(book.send("a", &amy, None, t0).id, first);
        let t1 = t0 + TimeDelta::minutes(5);
        book.withdraw("a", &amy, t1).unwrap();
        let t2 = t0 + TimeDelta::hours(2);
        assert_eq!(book.phase("a", &amy, t2), Some(Phase::Withdrawn(t1)));
        assert_eq!(book.withdraw("a", &amy, t2), Err(NotPending));
        let block = TimeDelta::days(21);
        let record = book.get("a", &amy.key).unwrap();
        assert_eq!(record.reinvite_blocked_until(block, t2), Some(t1 + block));
        assert_eq!(record.reinvite_blocked_until(block, t1 + block), None);
        let again = book.send("a", &amy, None, t1 + block);
        assert_ne!(again.id, first);
        assert_eq!(again.sends, 3);
        assert_eq!(again.phase(t1 + block), Phase::Pending);
    }

    #[test]
    fn another_tools_pending_invitation_can_be_withdrawn() {
        let mut book = Book::default();
        let mut directory = Directory::default();
        let ben = directory.resolve("pending-ben");
        let now = at("2024-01-15T09:00:00Z");
        assert_eq!(book.phase("a", &ben, now), Some(Phase::Pending));
        // Not in the sent list: the sim never sent it.
        assert!(book.pending_sent("a", now).is_empty());
        assert_eq!(book.withdraw("a", &ben, now).unwrap().sends, 0);
        assert_eq!(book.phase("a", &ben, now), Some(Phase::Withdrawn(now)));
        let open = directory.resolve("open");
        assert_eq!(book.phase("a", &open, now), None);
        assert_eq!(book.accept("a", &open, now), Err(NotPending));
    }

    #[test]
    fn sent_list_is_newest_first_and_per_account() {
        let mut book = Book::default();
        let mut directory = Directory::default();
        let t0 = at("2024-01-15T09:00:00Z");
        for (n, slug) in ["p-1", "p-2", "p-3"].into_iter().enumerate() {
            let profile = directory.resolve(slug);
            book.send("a", &profile, None, t0 + TimeDelta::seconds(n as i64));
        }
        book.send("b", &directory.resolve("p-9"), None, t0);
        let slugs: Vec<_> = book
            .pending_sent("a", t0 + TimeDelta::minutes(1))
            .iter()
            .map(|(_, i)| i.public_identifier.clone().unwrap())
            .collect();
        assert_eq!(slugs, ["p-3", "p-2", "p-1"]);
    }

    #[test]
    fn relative_send_times() {
        let now = at("2024-03-01T12:00:00Z");
        let cases = [
            (TimeDelta::seconds(30), "just now"),
            (TimeDelta::minutes(1), "1 minute ago"),
            (TimeDelta::minutes(59), "59 minutes ago"),
            (TimeDelta::hours(5), "5 hours ago"),
            (TimeDelta::days(2), "2 days ago"),
            (TimeDelta::days(7), "1 week ago"),
            (TimeDelta::days(29), "4 weeks ago"),
            (TimeDelta::days(65), "2 months ago"),
            (TimeDelta::days(400), "1 year ago"),
            (TimeDelta::seconds(-5), "just now"),
        ];
        for (age, text) in cases {
            assert_eq!(relative(now - age, now), text, "{age}");
        }
    }
}
