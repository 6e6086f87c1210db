//! Message templates (`[message] template`) and the notes they render for a lead: parsing
//! never panics, and a note that is sent is 1 to 300 characters, whatever the fields hold.
#![no_main]

use arbitrary::Arbitrary;
use leadlink::lead::{LeadFields, MAX_MESSAGE_CHARS, MessageTemplate, Overflow, build_message};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    template: String,
    first_name: Option<String>,
    last_name: Option<String>,
    company: Option<String>,
    /// The event's own note, which overrides the template.
    explicit: Option<String>,
    truncate: bool,
}

fuzz_target!(|input: Input| {
    let Ok(template) = MessageTemplate::new(&input.template) else {
        return;
    };
    let fields = LeadFields {
        first_name: input.first_name,
        last_name: input.last_name,
        company: input.company,
    };
    let rendered = template.render(&fields);
    assert_eq!(rendered.trim(), rendered, "a rendered note is not trimmed");
    let overflow = if input.truncate {
        Overflow::Truncate
    } else {
        Overflow::Invalid
    };
    match build_message(
        input.explicit.as_deref(),
        Some(&template),
        &fields,
        overflow,
    ) {
        Ok(Some(message)) => {
            let chars = message.as_str().chars().count();
            assert!(
                (1..=MAX_MESSAGE_CHARS).contains(&chars),
                "{chars} characters"
            );
            assert!(!message.as_str().trim().is_empty());
        }
        Ok(None) => {}
        Err(error) => assert!(!input.truncate, "truncation still failed: {error}"),
    }
});
