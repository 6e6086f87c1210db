//! Salesforce Outbound Messages: the SOAP 1.1 envelope a workflow or flow "outbound message"
//! action POSTs, the Ack that stops Salesforce retrying, a Fault for what we refuse, and the
//! organization id check that stands in for the signature Outbound Messages do not have.
//!
//! Elements are matched by local name within the expected structure
//! (`Envelope/Body/notifications/Notification/sObject`), so any namespace prefix works
//! (`soapenv:`, `soap:`, `SOAP-ENV:`, `sf:`, a default namespace). Namespaces are not checked
//! further: the format is Salesforce's own, and what authenticates a message is its
//! `OrganizationId` and the token in its URL, not its namespaces.

use std::collections::BTreeMap;
use std::fmt;

use quick_xml::Reader;
use quick_xml::escape::escape;
use quick_xml::events::{BytesStart, Event};

/// Salesforce sends 1 to 100 notifications per message.
const MAX_NOTIFICATIONS: usize = 100;
/// An Outbound Message nests 5 levels deep; the cap keeps hostile input from building a tree
/// whose recursive drop could exhaust the stack.
const MAX_DEPTH: usize = 16;
/// Input quoted back in an error (an unknown sObject type) is cut to this many characters.
const MAX_QUOTED: usize = 64;

/// The answer Salesforce needs (with a 200) to stop retrying; one Ack covers every
/// notification of the message.
pub const ACK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
 <soapenv:Body>
  <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">
   <Ack>true</Ack>
  </notificationsResponse>
 </soapenv:Body>
</soapenv:Envelope>"#;

/// A SOAP 1.1 Fault blaming the sender (`soapenv:Client`), for a message we refuse; the
/// `faultstring` carries the reason for whoever looks at the failed delivery.
pub fn fault(reason: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
 <soapenv:Body>
  <soapenv:Fault>
   <faultcode>soapenv:Client</faultcode>
   <faultstring>{}</faultstring>
  </soapenv:Fault>
 </soapenv:Body>
</soapenv:Envelope>"#,
        escape(reason)
    )
}

/// Whether two organization ids name the same org: the 15-character form is case-sensitive,
/// the 18-character form adds a case checksum and is compared by its first 15 characters once
/// the checksum is verified. Anything malformed matches nothing.
pub fn same_org(configured: &str, received: &str) -> bool {
    match (canonical_id(configured), canonical_id(received)) {
        (Some(configured), Some(received)) => configured == received,
        _ => false,
    }
}

/// For config checking: `00D` (the organization key prefix), then 12 or 15 more alphanumeric
/// characters, the last 3 of 18 being the right checksum.
pub fn valid_org_id(id: &str) -> bool {
    id.starts_with("00D") && canonical_id(id).is_some()
}

/// The case-sensitive 15-character form of a Salesforce id given in either form; `None` when
/// it is neither 15 alphanumeric characters nor 18 with a matching checksum.
pub fn canonical_id(id: &str) -> Option<&str> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        15 => Some(id),
        18 => {
            let (short, suffix) = id.split_at(15);
            (checksum(short) == suffix.as_bytes()).then_some(short)
        }
        _ => None,
    }
}

/// The 3 characters that make an 18-character id from a 15-character one: for each chunk of
/// 5 characters, bit `i` is set when character `i` is an uppercase letter, and the 5-bit value
/// picks a character of `A..Z0..5`. They survive case-insensitive handling (Excel, email).
fn checksum(short: &str) -> [u8; 3] {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut suffix = [0u8; 3];
    for (slot, chunk) in suffix.iter_mut().zip(short.as_bytes().chunks(5)) {
        let bits = chunk
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_ascii_uppercase())
            .fold(0usize, |bits, (i, _)| bits | 1 << i);
        *slot = ALPHABET[bits];
    }
    suffix
}

/// The record types leadlink turns into connection requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SObjectType {
    Lead,
    Contact,
}

impl SObjectType {
    /// The API name, as in `/sobjects/{name}/{id}`; exact case, as Salesforce writes it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "Lead" => Some(SObjectType::Lead),
            "Contact" => Some(SObjectType::Contact),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SObjectType::Lead => "Lead",
            SObjectType::Contact => "Contact",
        }
    }

    /// The first three characters of every id of this type.
    pub fn key_prefix(self) -> &'static str {
        match self {
            SObjectType::Lead => "00Q",
            SObjectType::Contact => "003",
        }
    }
}

impl fmt::Display for SObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub organization_id: String,
    pub action_id: String,
    pub notifications: Vec<Notification>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The notification `Id`: the same on every retry, so it is the idempotency key.
    pub id: String,
    pub object: SObjectType,
    /// The record's `sf:Id`.
    pub record_id: String,
    /// Every other field by local name (`FirstName`, `LinkedIn_URL__c`); nil fields absent.
    pub fields: BTreeMap<String, String>,
}

/// Why a body is not an Outbound Message we accept. The text is meant for the Fault and the
/// logs: it says what is wrong and never quotes more than a short piece of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("body is not well-formed XML: {0}")]
    NotXml(String),
    #[error("DOCTYPE declarations are refused; an Outbound Message has none")]
    DocType,
    #[error("XML nests deeper than {MAX_DEPTH} levels; an Outbound Message does not")]
    TooDeep,
    #[error("the root element is <{0}>, not a SOAP Envelope")]
    NoEnvelope(String),
    #[error("the SOAP Envelope has no Body")]
    NoBody,
    #[error("the SOAP Body has no notifications element; is this a Salesforce Outbound Message?")]
    NoNotifications,
    #[error("notifications has no {0}")]
    Missing(&'static str),
    #[error("a message carries 1 to {MAX_NOTIFICATIONS} notifications; this one has {0}")]
    NotificationCount(usize),
    #[error("notification {index} has no {missing}")]
    Incomplete { index: usize, missing: &'static str },
    #[error(
        "notification {index} is of type {type_name}; only Lead and Contact are supported (change the outbound message's object)"
    )]
    UnsupportedObject { index: usize, type_name: String },
}

/// Parses an Outbound Message; `index` in errors counts notifications from 1.
pub fn parse(body: &[u8]) -> Result<OutboundMessage, OutboundError> {
    let root = read_tree(body)?;
    if root.name != "Envelope" {
        return Err(OutboundError::NoEnvelope(quote(&root.name)));
    }
    let notifications = root
        .child("Body")
        .ok_or(OutboundError::NoBody)?
        .child("notifications")
        .ok_or(OutboundError::NoNotifications)?;
    let organization_id = required_text(notifications, "OrganizationId")
        .ok_or(OutboundError::Missing("OrganizationId"))?;
    let action_id =
        required_text(notifications, "ActionId").ok_or(OutboundError::Missing("ActionId"))?;
    let items: Vec<&Element> = notifications.children_named("Notification").collect();
    if items.is_empty() || items.len() > MAX_NOTIFICATIONS {
        return Err(OutboundError::NotificationCount(items.len()));
    }
    let notifications = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| notification(i + 1, item))
        .collect::<Result<_, _>>()?;
    Ok(OutboundMessage {
        organization_id,
        action_id,
        notifications,
    })
}

fn notification(index: usize, item: &Element) -> Result<Notification, OutboundError> {
    let incomplete = |missing| OutboundError::Incomplete { index, missing };
    let id = required_text(item, "Id").ok_or(incomplete("Id"))?;
    let sobject = item.child("sObject").ok_or(incomplete("sObject"))?;
    // `xsi:type="sf:Lead"`: the prefix is whatever the sender declared.
    let type_name = sobject
        .attribute("type")
        .ok_or(incomplete("sObject xsi:type"))?;
    let local_type = type_name.rsplit(':').next().unwrap_or(type_name);
    let object =
        SObjectType::from_name(local_type).ok_or_else(|| OutboundError::UnsupportedObject {
            index,
            type_name: quote(local_type),
        })?;
    let record_id = required_text(sobject, "Id").ok_or(incomplete("sObject Id"))?;
    let fields = sobject
        .children
        .iter()
        // Only simple fields: an Outbound Message has no nested ones, so anything else is
        // not something a field mapping could mean.
        .filter(|field| field.name != "Id" && field.children.is_empty() && !field.is_nil())
        .map(|field| (field.name.clone(), field.text.clone()))
        .collect();
    Ok(Notification {
        id,
        object,
        record_id,
        fields,
    })
}

/// A child's text, trimmed; `None` when the child is absent, nil or blank.
fn required_text(parent: &Element, name: &str) -> Option<String> {
    let child = parent.child(name).filter(|c| !c.is_nil())?;
    let text = child.text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn quote(input: &str) -> String {
    if input.chars().count() > MAX_QUOTED {
        let cut: String = input.chars().take(MAX_QUOTED).collect();
        format!("{cut}...")
    } else {
        input.to_owned()
    }
}

/// Just enough of an XML tree: local names, attribute values and text, entities resolved.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn open(start: &BytesStart<'_>) -> Result<Self, OutboundError> {
        let name = utf8(start.local_name().into_inner())?.to_owned();
        let attributes = start
            .attributes()
            .map(|attribute| {
                let attribute = attribute.map_err(|e| OutboundError::NotXml(e.to_string()))?;
                let key = utf8(attribute.key.local_name().into_inner())?.to_owned();
                let value = attribute.unescape_value().map_err(not_xml)?.into_owned();
                Ok((key, value))
            })
            .collect::<Result<_, OutboundError>>()?;
        Ok(Element {
            name,
            attributes,
            ..Element::default()
        })
    }

    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `xsi:nil="true"` (or `"1"`, its other lexical form).
    fn is_nil(&self) -> bool {
        matches!(self.attribute("nil").map(str::trim), Some("true" | "1"))
    }
}

fn read_tree(body: &[u8]) -> Result<Element, OutboundError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| OutboundError::NotXml("not UTF-8 text".to_owned()))?;
    let mut reader = Reader::from_str(text);
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader.read_event().map_err(not_xml)?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(OutboundError::NotXml(
                    "more than one root element".to_owned(),
                ));
            }
            Event::Start(start) => {
                if open.len() >= MAX_DEPTH {
                    return Err(OutboundError::TooDeep);
                }
                open.push(Element::open(&start)?);
            }
            Event::Empty(start) => close(Element::open(&start)?, &mut open, &mut root),
            // quick-xml has already checked that the end tag matches the open one.
            Event::End(_) => {
                if let Some(element) = open.pop() {
                    close(element, &mut open, &mut root);
                }
            }
            Event::Text(content) => {
                let content = content.unescape().map_err(not_xml)?;
                match open.last_mut() {
                    Some(element) => element.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => {
                        return Err(OutboundError::NotXml(
                            "text outside the root element".to_owned(),
                        ));
                    }
                }
            }
            Event::CData(content) => {
                let content = content.into_inner();
                let element = open.last_mut().ok_or_else(|| {
                    OutboundError::NotXml("CDATA outside the root element".to_owned())
                })?;
                element.text.push_str(utf8(&content)?);
            }
            // External entities and entity expansion come only with a DTD.
            Event::DocType(_) => return Err(OutboundError::DocType),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    match (open.last(), root) {
        (Some(unclosed), _) => Err(OutboundError::NotXml(format!(
            "the document ends before <{}> is closed",
            quote(&unclosed.name)
        ))),
        (None, Some(root)) => Ok(root),
        (None, None) => Err(OutboundError::NotXml("no root element".to_owned())),
    }
}

fn close(element: Element, open: &mut [Element], root: &mut Option<Element>) {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, OutboundError> {
    std::str::from_utf8(bytes).map_err(|_| OutboundError::NotXml("not UTF-8 text".to_owned()))
}

fn not_xml(error: quick_xml::Error) -> OutboundError {
    OutboundError::NotXml(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>00D000000000062EAA</OrganizationId>
   <ActionId>04k5g000000XyZaAAK</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/59.0/00D000000000062</EnterpriseUrl>
   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/00D000000000062</PartnerUrl>
   <Notification>
    <Id>04l5g00000ABCDeAAP</Id>
    <sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>00Q5g00000AbCdEEAV</sf:Id>
     <sf:Company>Smith &amp; Sons &lt;UK&gt; &#x2014; &#233;</sf:Company>
     <sf:Email xsi:nil="true"/>
     <sf:FirstName>John</sf:FirstName>
     <sf:LastName>Doe</sf:LastName>
     <sf:LinkedIn_URL__c>https://www.linkedin.com/in/john-doe-123/?a=1&amp;b=2</sf:LinkedIn_URL__c>
     <sf:Status>Qualified</sf:Status>
    </sObject>
   </Notification>
   <Notification>
    <Id>04l5g00000ABCDfAAP</Id>
    <sObject xsi:type="sf:Contact" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>0035g00000XyZaBAAV</sf:Id>
     <sf:FirstName>Jürgen</sf:FirstName>
     <sf:Description><![CDATA[<b>met at</b> a & b]]> (booth 4)</sf:Description>
     <sf:LinkedIn_URL__c>https://www.linkedin.com/in/juergen/</sf:LinkedIn_URL__c>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"#;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A message with `count` copies of a minimal Lead notification.
    fn with_notifications(count: usize) -> String {
        let one = r#"<Notification><Id>04l000000000001</Id><sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>00Q000000000001</sf:Id></sObject></Notification>"#;
        format!(
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>00D000000000062</OrganizationId><ActionId>04k000000000001</ActionId>{}</notifications></soapenv:Body></soapenv:Envelope>"#,
            one.repeat(count)
        )
    }

    #[test]
    fn parses_a_lead_and_a_contact() {
        let message = parse(LEAD.as_bytes()).unwrap();
        assert_eq!(message.organization_id, "00D000000000062EAA");
        assert_eq!(message.action_id, "04k5g000000XyZaAAK");
        assert_eq!(
            message.notifications,
            vec![
                Notification {
                    id: "04l5g00000ABCDeAAP".into(),
                    object: SObjectType::Lead,
                    record_id: "00Q5g00000AbCdEEAV".into(),
                    fields: fields(&[
                        ("Company", "Smith & Sons <UK> \u{2014} é"),
                        ("FirstName", "John"),
                        ("LastName", "Doe"),
                        (
                            "LinkedIn_URL__c",
                            "https://www.linkedin.com/in/john-doe-123/?a=1&b=2"
                        ),
                        ("Status", "Qualified"),
                    ]),
                },
                Notification {
                    id: "04l5g00000ABCDfAAP".into(),
                    object: SObjectType::Contact,
                    record_id: "0035g00000XyZaBAAV".into(),
                    fields: fields(&[
                        ("Description", "<b>met at</b> a & b (booth 4)"),
                        ("FirstName", "Jürgen"),
                        ("LinkedIn_URL__c", "https://www.linkedin.com/in/juergen/"),
                    ]),
                },
            ]
        );
    }

    #[test]
    fn namespace_prefixes_do_not_matter() {
        let variants = [
            LEAD.replace("soapenv:", "soap:")
                .replace("xmlns:soapenv", "xmlns:soap"),
            LEAD.replace("soapenv:", "SOAP-ENV:")
                .replace("xmlns:soapenv", "xmlns:SOAP-ENV"),
            LEAD.replace("sf:", "ns1:").replace("xmlns:sf", "xmlns:ns1"),
            // The sObject's fields in a default namespace, the outbound elements prefixed.
            LEAD.replace("sf:", "")
                .replace("xsi:type=\"", "xsi:type=\"ns2:")
                .replace(
                    "xmlns:sf=",
                    "xmlns:ns2=\"urn:sobject.enterprise.soap.sforce.com\" xmlns=",
                )
                .replace("<notifications xmlns=", "<out:notifications xmlns:out=")
                .replace("</notifications>", "</out:notifications>")
                .replace("<Notification>", "<out:Notification>")
                .replace("</Notification>", "</out:Notification>"),
        ];
        let expected = parse(LEAD.as_bytes()).unwrap();
        for variant in variants {
            assert_eq!(parse(variant.as_bytes()), Ok(expected.clone()), "{variant}");
        }
    }

    #[test]
    fn one_to_a_hundred_notifications_are_accepted() {
        assert_eq!(
            parse(with_notifications(100).as_bytes())
                .unwrap()
                .notifications
                .len(),
            100
        );
        for count in [0, 101] {
            let error = parse(with_notifications(count).as_bytes()).unwrap_err();
            assert_eq!(error, OutboundError::NotificationCount(count));
            assert!(error.to_string().contains("1 to 100"), "{error}");
        }
    }

    #[test]
    fn malformed_xml_is_not_xml() {
        for body in [
            &b""[..],
            b"hello",
            b"{\"recordId\": \"00Q\"}",
            b"<Envelope><Body></Envelope>",
            b"<Envelope><Body>",
            b"<Envelope a=\"1\" a=\"2\"/>",
            b"<Envelope/><Envelope/>",
            b"<Envelope>&bogus;</Envelope>",
            b"<Envelope>\xff</Envelope>",
        ] {
            assert!(
                matches!(parse(body), Err(OutboundError::NotXml(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(body),
                parse(body)
            );
        }
    }

    #[test]
    fn a_doctype_is_refused_before_anything_is_expanded() {
        let body = format!(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n{}",
            LEAD.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
                .replace("John", "&xxe;")
        );
        assert_eq!(parse(body.as_bytes()), Err(OutboundError::DocType));
    }

    #[test]
    fn other_sobject_types_are_named() {
        let body = LEAD.replace("sf:Contact", "sf:Account");
        let error = parse(body.as_bytes()).unwrap_err();
        assert_eq!(
            error,
            OutboundError::UnsupportedObject {
                index: 2,
                type_name: "Account".into()
            }
        );
        assert!(
            error
                .to_string()
                .contains("notification 2 is of type Account;")
        );
        let long = LEAD.replace("sf:Lead", &format!("sf:{}", "X".repeat(500)));
        let text = parse(long.as_bytes()).unwrap_err().to_string();
        assert!(text.len() < 250, "{text}");
    }

    #[test]
    fn each_missing_piece_is_named() {
        let cases: [(String, OutboundError); 10] = [
            ("<Body/>".into(), OutboundError::NoEnvelope("Body".into())),
            (
                "<s:Envelope xmlns:s=\"x\"><s:Header/></s:Envelope>".into(),
                OutboundError::NoBody,
            ),
            (
                "<Envelope><Body><other/></Body></Envelope>".into(),
                OutboundError::NoNotifications,
            ),
            (
                LEAD.replace("<OrganizationId>00D000000000062EAA</OrganizationId>", ""),
                OutboundError::Missing("OrganizationId"),
            ),
            (
                LEAD.replace("00D000000000062EAA", "  "),
                OutboundError::Missing("OrganizationId"),
            ),
            (
                LEAD.replace("<ActionId>04k5g000000XyZaAAK</ActionId>", ""),
                OutboundError::Missing("ActionId"),
            ),
            (
                LEAD.replace("<Id>04l5g00000ABCDfAAP</Id>", ""),
                OutboundError::Incomplete {
                    index: 2,
                    missing: "Id",
                },
            ),
            (
                LEAD.replace("<sf:Id>00Q5g00000AbCdEEAV</sf:Id>", ""),
                OutboundError::Incomplete {
                    index: 1,
                    missing: "sObject Id",
                },
            ),
            (
                LEAD.replace(" xsi:type=\"sf:Lead\"", ""),
                OutboundError::Incomplete {
                    index: 1,
                    missing: "sObject xsi:type",
                },
            ),
            (
                with_notifications(1)
                    .replace("<sObject", "<other")
                    .replace("</sObject>", "</other>"),
                OutboundError::Incomplete {
                    index: 1,
                    missing: "sObject",
                },
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse(body.as_bytes()), Err(expected), "{body}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let body = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
        assert_eq!(parse(body.as_bytes()), Err(OutboundError::TooDeep));
    }

    #[test]
    fn the_ack_is_the_documented_body() {
        assert_eq!(
            ACK,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">\n \
             <soapenv:Body>\n  \
             <notificationsResponse xmlns=\"http://soap.sforce.com/2005/09/outbound\">\n   \
             <Ack>true</Ack>\n  \
             </notificationsResponse>\n \
             </soapenv:Body>\n\
             </soapenv:Envelope>"
        );
        // It is itself well-formed XML.
        assert!(matches!(
            parse(ACK.as_bytes()),
            Err(OutboundError::NoNotifications)
        ));
    }

    #[test]
    fn a_fault_escapes_its_reason_and_blames_the_client() {
        let fault = fault("notification 1 is a <Foo> & \"bar\"");
        assert!(
            fault.contains("<faultcode>soapenv:Client</faultcode>"),
            "{fault}"
        );
        assert!(
            fault.contains(
                "<faultstring>notification 1 is a &lt;Foo&gt; &amp; &quot;bar&quot;</faultstring>"
            ),
            "{fault}"
        );
        // Well-formed, and a SOAP Envelope whose Body holds no notifications.
        assert_eq!(parse(fault.as_bytes()), Err(OutboundError::NoNotifications));
    }

    #[test]
    fn the_checksum_makes_the_18_character_form() {
        // 00D00 00000 00062: only the D (position 2 of chunk 1) is uppercase, so the chunks
        // give bits 0b00100 = 4 -> 'E', 0 -> 'A', 0 -> 'A'.
        assert_eq!(&checksum("00D000000000062"), b"EAA");
        // Every position of a chunk, and all five: 0b11111 = 31 -> '5'.
        assert_eq!(&checksum("A0000b0000ABCDE"), b"BA5");
        assert_eq!(&checksum("0000Z000000000z"), b"QAA");
        let long = format!(
            "00D5g000004SNFh{}",
            std::str::from_utf8(&checksum("00D5g000004SNFh")).unwrap()
        );
        assert_eq!(long, "00D5g000004SNFhEAO");
        assert!(same_org("00D5g000004SNFh", &long));
    }

    #[test]
    fn org_ids_match_in_either_form() {
        let short = "00D000000000062";
        let long = "00D000000000062EAA";
        assert!(same_org(short, long));
        assert!(same_org(long, short));
        assert!(same_org(long, long));
        assert!(same_org(short, short));
        // The 15-character form is case-sensitive.
        assert!(!same_org("00D5g000004SNFh", "00D5g000004SNFH"));
        assert!(!same_org("00D5g000004SNFh", "00d5g000004snfh"));
        // A wrong or lower-cased checksum, another org, or junk match nothing.
        for received in [
            "00D000000000062EAB",
            "00D000000000062eaa",
            "00D000000000063",
            "00D000000000062EA",
            "00D00000000006",
            "00D000000000062 ",
            "",
        ] {
            assert!(!same_org(long, received), "{received}");
        }
        assert!(!same_org("", ""));
        assert!(!same_org("junk", "junk"));
    }

    #[test]
    fn valid_org_ids_start_with_00d() {
        for id in [
            "00D000000000062",
            "00D000000000062EAA",
            "00D5g000004SNFhEAO",
        ] {
            assert!(valid_org_id(id), "{id}");
        }
        for id in [
            "00Q000000000062",    // a Lead id
            "00D000000000062EAB", // bad checksum
            "00D00000000006",
            "00D0000000000620",
            "00D00000000006-",
            "00D000000000062EAA0",
            "",
        ] {
            assert!(!valid_org_id(id), "{id}");
        }
    }
}
