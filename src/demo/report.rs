//! What the demo prints: one line per status change, and the summary table.

use super::scenario::Sample;
use crate::job::{Status, StatusSnapshot};
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::HashMap;

const RECORD_WIDTH: usize = 16;
const STATUS_WIDTH: usize = 19;

fn clock(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S").to_string()
}

/// A lead the demo posted, as one line.
pub fn posted(at: DateTime<Utc>, sample: &Sample, answer: u16) -> String {
    format!(
        "{}  {:<RECORD_WIDTH$}{:<STATUS_WIDTH$}{} on {} (HTTP {answer})",
        clock(at),
        sample.record_id,
        "posted",
        sample.linkedin_url,
        sample.account_id,
    )
}

/// A status change the callback received at `at`: when the lead goes on (its ETA) or
/// whom it reached (its profileUrn), and why it waits or failed.
pub fn change(at: DateTime<Utc>, change: &StatusSnapshot) -> String {
    let mut details = Vec::new();
    if let Some(retry_at) = change.retry_at {
        let wait = (retry_at - at).num_seconds().max(0);
        details.push(format!("ETA {} (in {wait}s)", clock(retry_at)));
    }
    if let Some(hold_until) = change.hold_until {
        let hold_until = hold_until.to_rfc3339_opts(SecondsFormat::Secs, true);
        details.push(format!("hold until {hold_until}"));
    }
    if let Some(urn) = &change.profile_urn {
        details.push(format!("profileUrn {urn}"));
    }
    if let Some(error) = &change.error {
        details.push(error.clone());
    }
    format!(
        "{}  {:<RECORD_WIDTH$}{:<STATUS_WIDTH$}{}",
        clock(at),
        change.record_id,
        change.status.as_str(),
        details.join("; ")
    )
    .trim_end()
    .to_owned()
}

/// The summary: per lead, what was expected, what the callback saw, and whether they agree.
pub fn table(samples: &[Sample], seen: &HashMap<String, Vec<Status>>) -> String {
    let rows: Vec<[String; 5]> = samples
        .iter()
        .map(|sample| {
            let statuses = seen.get(sample.record_id).map_or(&[][..], Vec::as_slice);
            let path: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
            let result = if sample.met_by(statuses) {
                "ok"
            } else {
                "MISSED"
            };
            [
                sample.record_id.to_owned(),
                sample.account_id.to_owned(),
                sample.expected(),
                if path.is_empty() {
                    "(nothing)".to_owned()
                } else {
                    path.join(" -> ")
                },
                result.to_owned(),
            ]
        })
        .collect();
    let header = ["record", "account", "expected", "callbacks", "result"].map(str::to_owned);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let render = |row: &[String; 5]| {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        cells.join("  ").trim_end().to_owned()
    };
    let rule = widths.map(|w| "-".repeat(w)).join("  ");
    std::iter::once(render(&header))
        .chain([rule])
        .chain(rows.iter().map(render))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::scenario::samples;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn snapshot(status: Status) -> StatusSnapshot {
        StatusSnapshot {
            job_id: uuid::Uuid::nil(),
            record_id: "demo-held".into(),
            record_object: None,
            account_id: "acc_spent".into(),
            status,
            profile_urn: None,
            hold_until: None,
            retry_at: None,
            attempts: 0,
            error: None,
            sequence: 1,
            changed_at: at("2026-12-03T08:00:00Z"),
        }
    }

    #[test]
    fn a_waiting_lead_shows_its_eta_and_a_sent_one_its_profile_urn() {
        let now = at("2026-12-03T08:00:00Z");
        let held = StatusSnapshot {
            retry_at: Some(at("2026-12-03T08:00:12Z")),
            ..snapshot(Status::Held)
        };
        assert_eq!(
            change(now, &held),
            "08:00:00  demo-held       held               ETA 08:00:12 (in 12s)"
        );
        let sent = StatusSnapshot {
            profile_urn: Some("urn:li:fsd_profile:ACoAA".into()),
            ..snapshot(Status::Sent)
        };
        assert!(
            change(now, &sent).ends_with("sent               profileUrn urn:li:fsd_profile:ACoAA")
        );
    }

    #[test]
    fn the_table_marks_a_lead_that_missed_its_expectation() {
        let samples = samples();
        let seen = HashMap::from([
            ("demo-jane".to_owned(), vec![Status::Sent]),
            ("demo-held".to_owned(), vec![Status::Sent]),
        ]);
        let table = table(&samples, &seen);
        let line = |record: &str| {
            table
                .lines()
                .find(|l| l.starts_with(record))
                .unwrap()
                .to_owned()
        };
        assert!(line("demo-jane ").ends_with("ok"), "{table}");
        assert!(line("demo-held ").ends_with("MISSED"), "{table}");
        assert!(line("demo-held ").contains("held -> sent"), "{table}");
        assert!(line("demo-notfound ").contains("(nothing)"), "{table}");
        assert_eq!(table.lines().count(), samples.len() + 2);
    }
}
