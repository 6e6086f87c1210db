//! Salesforce Outbound Message SOAP envelopes, as `receive_outbound` reads them after the
//! token check: parse, the organization id check, the lead each notification describes, and
//! the Fault that answers a refused message.
#![no_main]

use leadlink::crm::enrich::salesforce_lead;
use leadlink::ingest::salesforce::outbound::{canonical_id, fault, parse, same_org};
use leadlink::lead::Overflow;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match parse(body) {
        Ok(message) => {
            assert!((1..=100).contains(&message.notifications.len()));
            let _ = same_org("00D000000000062EAA", &message.organization_id);
            if let Some(short) = canonical_id(&message.organization_id) {
                assert_eq!(short.len(), 15);
                assert!(same_org(short, &message.organization_id));
            }
            for notification in &message.notifications {
                assert!(!notification.id.is_empty() && !notification.record_id.is_empty());
                let lead =
                    salesforce_lead(&notification.fields, "LinkedIn_URL__c", Some("Score__c"));
                let _ = lead.resolve(None, Overflow::Invalid);
                // A priority read from the record is always one a job may have.
                assert!(
                    lead.priority
                        .is_none_or(|p| leadlink::job::PRIORITIES.contains(&p))
                );
            }
        }
        Err(error) => {
            // The Fault quotes the reason; escaping must keep it one well-formed document.
            let answer = fault(&error.to_string());
            assert!(
                parse(answer.as_bytes()).is_err_and(|e| !e.to_string().contains("well-formed")),
                "the Fault for {error} is not well-formed XML"
            );
        }
    }
});
