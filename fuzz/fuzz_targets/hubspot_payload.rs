//! HubSpot request bodies, as `receive_batch` and `receive_workflow` read them after the
//! signature check: app-subscription batches (each event judged, then the trigger rules) and
//! workflow payloads (the record's properties, then the lead they describe).
#![no_main]

use leadlink::crm::enrich::hubspot_lead;
use leadlink::ingest::hubspot::payload::{
    Judged, MAX_BATCH, TriggerRule, Triggers, parse_batch, parse_workflow, qualifies,
};
use leadlink::lead::{MessageTemplate, Overflow, Resolution, UsableLead};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let triggers = Triggers {
        rules: vec![
            TriggerRule {
                property: "hs_lead_status".into(),
                value: "QUALIFIED".into(),
            },
            TriggerRule {
                property: "lifecyclestage".into(),
                value: "salesqualifiedlead".into(),
            },
        ],
        on_creation: true,
    };
    if let Ok(judged) = parse_batch(body) {
        assert!(
            judged.len() <= MAX_BATCH,
            "a batch over the maximum was taken"
        );
        for item in judged {
            if let Judged::Event(event) = item {
                let key = event.idempotency_key();
                assert!(key.contains(&event.object_id));
                let _ = qualifies(&event, &triggers);
            }
        }
    }
    if let Ok(record) = parse_workflow(body) {
        assert!(
            !record.contact_id.is_empty(),
            "a workflow record without an id"
        );
        let lead = hubspot_lead(&record.fields, "hs_linkedin_url", Some("hubspotscore"));
        assert!(
            lead.priority
                .is_none_or(|p| leadlink::job::PRIORITIES.contains(&p))
        );
        let template =
            MessageTemplate::new("Hi {{firstName|there}} at {{company}}").expect("valid");
        for overflow in [Overflow::Invalid, Overflow::Truncate] {
            if let Resolution::Usable(UsableLead {
                message: Some(message),
                ..
            }) = lead.resolve(Some(&template), overflow)
            {
                assert!(message.chars().count() <= leadlink::lead::MAX_MESSAGE_CHARS);
            }
        }
    }
});
