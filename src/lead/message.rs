//! The connection note: templates with placeholders, and the checked [`Message`] built
//! from the source's own note or the template.

use serde::{Deserialize, Deserializer, Serialize};

use super::{LeadError, echo};

/// LinkedIn's limit for a connection note, counted in Unicode scalar values.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// The lead's own data, as the CRM or event delivered it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadFields {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
}

/// A connection note with `{{firstName}}`, `{{lastName}}` and `{{company}}` placeholders, each
/// with an optional fallback after `|` (`{{firstName|there}}`). Names match case-insensitively
/// and may be padded with spaces, since templates are typed by hand in config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTemplate(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field {
        field: Field,
        fallback: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    FirstName,
    LastName,
    Company,
}

impl Field {
    fn value(self, fields: &LeadFields) -> Option<&str> {
        match self {
            Field::FirstName => fields.first_name.as_deref(),
            Field::LastName => fields.last_name.as_deref(),
            Field::Company => fields.company.as_deref(),
        }
    }
}

impl MessageTemplate {
    /// Rejects unknown placeholders and an unclosed `{{`, so a typo fails at start-up
    /// instead of reaching a lead.
    pub fn new(template: &str) -> Result<Self, LeadError> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(LeadError::BadTemplate(format!(
                    "\"{{{{\" without a closing \"}}}}\" in {:?}",
                    echo(&rest[open..])
                )));
            };
            let inner = &after[..close];
            let (name, fallback) = match inner.split_once('|') {
                Some((name, fallback)) => (name.trim(), Some(fallback.trim())),
                None => (inner.trim(), None),
            };
            let field = [
                ("firstName", Field::FirstName),
                ("lastName", Field::LastName),
                ("company", Field::Company),
            ]
            .into_iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, field)| field)
            .ok_or_else(|| {
                LeadError::BadTemplate(format!(
                    "unknown placeholder {{{{{}}}}}; use {{{{firstName}}}}, {{{{lastName}}}} or {{{{company}}}}",
                    echo(name)
                ))
            })?;
            parts.push(Part::Field {
                field,
                fallback: fallback.filter(|f| !f.is_empty()).map(str::to_owned),
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(MessageTemplate(parts))
    }

    /// The note for one lead, trimmed. A blank field uses its fallback, or vanishes together
    /// with the space it leaves ("Hi {{firstName}} {{lastName}}" -> "Hi Doe"), and a space
    /// left before punctuation goes too ("Hi {{firstName}}, ..." -> "Hi, ...").
    pub fn render(&self, fields: &LeadFields) -> String {
        let mut out = String::new();
        let mut after_empty = false;
        for part in &self.0 {
            match part {
                Part::Text(text) => {
                    let mut text = text.as_str();
                    if after_empty {
                        if out.is_empty() || out.ends_with([' ', '\t']) {
                            text = text.trim_start_matches([' ', '\t']);
                        }
                        if text.starts_with([',', '.', '!', '?', ';', ':']) {
                            out.truncate(out.trim_end_matches([' ', '\t']).len());
                        }
                    }
                    out.push_str(text);
                    after_empty = false;
                }
                Part::Field { field, fallback } => {
                    let value = field
                        .value(fields)
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .or(fallback.as_deref())
                        .unwrap_or("");
                    out.push_str(value);
                    after_empty = value.is_empty();
                }
            }
        }
        out.trim().to_owned()
    }
}

/// What to do with a note over [`MAX_MESSAGE_CHARS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// The job ends `invalid` with the length in its error.
    #[default]
    Invalid,
    /// Cut at the last word boundary that fits.
    Truncate,
}

/// A connection note LinkedIn will take: 1..=300 Unicode scalar values, not blank.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Message(String);

impl Message {
    /// Takes the text as is (no trimming), rejecting blank or over-long notes.
    pub fn new(text: impl Into<String>) -> Result<Self, LeadError> {
        let text = text.into();
        if text.trim().is_empty() {
            return Err(LeadError::EmptyMessage);
        }
        let chars = text.chars().count();
        if chars > MAX_MESSAGE_CHARS {
            return Err(LeadError::MessageTooLong { chars });
        }
        Ok(Message(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Message> for String {
    fn from(message: Message) -> String {
        message.0
    }
}

impl TryFrom<String> for Message {
    type Error = LeadError;

    fn try_from(text: String) -> Result<Self, LeadError> {
        Message::new(text)
    }
}

/// The note to send, if any. `explicit` is the event's own `message`: `Some("")` (or blank)
/// means "send no note" and skips the template; `None` renders the template, if there is one.
/// `Ok(None)` means no `customMessage`. Both sources are trimmed before counting.
pub fn build_message(
    explicit: Option<&str>,
    template: Option<&MessageTemplate>,
    fields: &LeadFields,
    overflow: Overflow,
) -> Result<Option<Message>, LeadError> {
    let text = match (explicit, template) {
        (Some(text), _) => text.trim().to_owned(),
        (None, Some(template)) => template.render(fields),
        (None, None) => return Ok(None),
    };
    if text.is_empty() {
        return Ok(None);
    }
    let text = match overflow {
        Overflow::Truncate => truncate_at_word(&text, MAX_MESSAGE_CHARS).to_owned(),
        Overflow::Invalid => text,
    };
    Message::new(text).map(Some)
}

/// The longest prefix of at most `max` scalars that ends at a word boundary, without trailing
/// whitespace; a hard cut at `max` when no boundary exists. `text` must be trimmed, so the
/// result is never empty.
fn truncate_at_word(text: &str, max: usize) -> &str {
    let Some((cut, next)) = text.char_indices().nth(max) else {
        return text;
    };
    let head = &text[..cut];
    if next.is_whitespace() {
        return head.trim_end();
    }
    match head.rfind(char::is_whitespace) {
        Some(space) => head[..space].trim_end(),
        None => head,
    }
}

/// `[message]`: the connection note and what to do when it is too long.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MessageConfig {
    /// Parsed at load, so a typo is reported at load and never reaches a lead.
    #[serde(deserialize_with = "template")]
    pub template: Option<MessageTemplate>,
    pub overflow: Overflow,
}

fn template<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<MessageTemplate>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| MessageTemplate::new(&text).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(first: Option<&str>, last: Option<&str>, company: Option<&str>) -> LeadFields {
        LeadFields {
            first_name: first.map(str::to_owned),
            last_name: last.map(str::to_owned),
            company: company.map(str::to_owned),
        }
    }

    fn render(template: &str, f: &LeadFields) -> String {
        MessageTemplate::new(template).unwrap().render(f)
    }

    #[test]
    fn templates_fill_fields_and_fallbacks() {
        let jane = fields(Some("Jane"), Some("Doe"), Some("Acme"));
        let t = "Hi {{firstName}} {{lastName}}, how is {{company}}?";
        assert_eq!(render(t, &jane), "Hi Jane Doe, how is Acme?");
        assert_eq!(
            render("Hi {{firstName|there}}!", &LeadFields::default()),
            "Hi there!"
        );
        assert_eq!(
            render("Hi {{firstName|there}}!", &fields(Some("  "), None, None)),
            "Hi there!"
        );
        assert_eq!(render("Hi {{firstName|there}}!", &jane), "Hi Jane!");
        assert_eq!(
            render("Hi {{ FirstName | there }}, {{COMPANY}}", &jane),
            "Hi Jane, Acme"
        );
        assert_eq!(render("Hi {{firstName|}}!", &LeadFields::default()), "Hi!");
        // Field values are trimmed; literal braces that are not placeholders stay.
        assert_eq!(
            render(
                "{ {{firstName}} }} end",
                &fields(Some(" Jane "), None, None)
            ),
            "{ Jane }} end"
        );
    }

    #[test]
    fn missing_fields_vanish_with_the_space_they_leave() {
        let no_first = fields(None, Some("Doe"), None);
        assert_eq!(
            render("Hi {{firstName}} {{lastName}}, hello", &no_first),
            "Hi Doe, hello"
        );
        assert_eq!(
            render("Hi {{firstName}}, I saw {{company}} online", &no_first),
            "Hi, I saw online"
        );
        assert_eq!(
            render("{{firstName}} {{lastName}} from {{company}}.", &no_first),
            "Doe from."
        );
        // Spacing the author wrote elsewhere is kept.
        assert_eq!(
            render("Hello  {{lastName}}\n\nBest", &no_first),
            "Hello  Doe\n\nBest"
        );
    }

    #[test]
    fn templates_with_unknown_or_unclosed_placeholders_are_rejected() {
        assert_eq!(
            MessageTemplate::new("Hi {{fristName}}")
                .unwrap_err()
                .to_string(),
            "invalid message template: unknown placeholder {{fristName}}; \
             use {{firstName}}, {{lastName}} or {{company}}"
        );
        assert!(
            MessageTemplate::new("Hi {{firstName")
                .unwrap_err()
                .to_string()
                .contains("without a closing")
        );
        assert!(MessageTemplate::new("Hi {{}}").is_err());
        assert!(MessageTemplate::new("No placeholders at all").is_ok());
    }

    #[test]
    fn empty_messages_mean_no_note() {
        let none = LeadFields::default();
        let template = MessageTemplate::new("Hi {{firstName}}").unwrap();
        let blank = MessageTemplate::new("{{firstName}} {{company}}").unwrap();
        let invalid = Overflow::Invalid;
        assert_eq!(build_message(None, None, &none, invalid), Ok(None));
        // An explicit empty message wins over the template.
        assert_eq!(
            build_message(Some(""), Some(&template), &none, invalid),
            Ok(None)
        );
        assert_eq!(build_message(Some(" \n "), None, &none, invalid), Ok(None));
        assert_eq!(build_message(None, Some(&blank), &none, invalid), Ok(None));
        let rendered = build_message(None, Some(&template), &none, invalid)
            .unwrap()
            .unwrap();
        assert_eq!(rendered.as_str(), "Hi");
        let explicit = build_message(Some(" Hello! "), Some(&template), &none, invalid)
            .unwrap()
            .unwrap();
        assert_eq!(explicit.as_str(), "Hello!");
    }

    #[test]
    fn the_limit_counts_unicode_scalars() {
        let none = LeadFields::default();
        for unit in ["é", "😀", "a"] {
            let fits = unit.repeat(MAX_MESSAGE_CHARS);
            let message = build_message(Some(&fits), None, &none, Overflow::Invalid)
                .unwrap()
                .unwrap();
            assert_eq!(message.as_str(), fits);

            let over = unit.repeat(MAX_MESSAGE_CHARS + 1);
            let error = build_message(Some(&over), None, &none, Overflow::Invalid).unwrap_err();
            assert_eq!(error, LeadError::MessageTooLong { chars: 301 });
            assert_eq!(
                error.to_string(),
                "the message is 301 characters long; LinkedIn allows at most 300"
            );
        }
        // A template that renders too long is judged the same way.
        let long = MessageTemplate::new(&format!("{} {{{{company}}}}", "x".repeat(295))).unwrap();
        assert_eq!(
            build_message(
                None,
                Some(&long),
                &fields(None, None, Some("Acme Corp")),
                Overflow::Invalid
            ),
            Err(LeadError::MessageTooLong { chars: 305 })
        );
    }

    fn truncated(text: &str) -> String {
        build_message(Some(text), None, &LeadFields::default(), Overflow::Truncate)
            .unwrap()
            .unwrap()
            .as_str()
            .to_owned()
    }

    #[test]
    fn truncation_cuts_at_the_last_word_boundary() {
        // 59 five-letter words with spaces = 353 chars; 50 words end at 299, the 51st ends
        // at 305.
        let words = vec!["hello"; 59].join(" ");
        let cut = truncated(&words);
        assert_eq!(cut, vec!["hello"; 50].join(" "));
        assert_eq!(cut.chars().count(), 299);

        // A boundary exactly at 300: the 300-char prefix is kept whole.
        let exact = format!("{} tail", "ü".repeat(MAX_MESSAGE_CHARS));
        assert_eq!(truncated(&exact), "ü".repeat(MAX_MESSAGE_CHARS));

        // No trailing whitespace, however many spaces precede the cut.
        let spaced = format!("{}     {}", "a".repeat(290), "b".repeat(20));
        assert_eq!(truncated(&spaced), "a".repeat(290));

        // One word longer than the limit: a hard cut at 300 scalars.
        let word = "😀".repeat(400);
        assert_eq!(truncated(&word), "😀".repeat(MAX_MESSAGE_CHARS));

        // Short messages are untouched.
        assert_eq!(truncated("Hi Jane"), "Hi Jane");
    }

    #[test]
    fn messages_hold_one_to_three_hundred_chars() {
        assert_eq!(Message::new(""), Err(LeadError::EmptyMessage));
        assert_eq!(Message::new("  "), Err(LeadError::EmptyMessage));
        assert_eq!(Message::new("Hi").unwrap().as_str(), "Hi");
        assert_eq!(
            serde_json::to_string(&Message::new("Hi").unwrap()).unwrap(),
            "\"Hi\""
        );
        assert_eq!(
            serde_json::from_str::<Message>("\"Hi\"").unwrap().as_str(),
            "Hi"
        );
        assert!(serde_json::from_str::<Message>(&format!("\"{}\"", "a".repeat(301))).is_err());
        assert!(serde_json::from_str::<Message>("\"\"").is_err());
    }

    #[test]
    fn overflow_reads_from_config_in_lower_case() {
        assert_eq!(
            serde_json::from_str::<Overflow>("\"truncate\"").unwrap(),
            Overflow::Truncate
        );
        assert_eq!(Overflow::default(), Overflow::Invalid);
        assert_eq!(
            serde_json::to_string(&Overflow::Invalid).unwrap(),
            "\"invalid\""
        );
    }
}
