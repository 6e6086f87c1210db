//! HubSpot's CRM v3 contacts API faked with wiremock: contacts to read, PATCHes to take,
//! and what HubSpot received.

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const CONTACTS: &str = "/crm/v3/objects/contacts";

/// `GET /crm/v3/objects/contacts/{id}` answers the contact with these properties.
pub async fn contact(hubspot: &MockServer, id: u64, properties: Value) {
    Mock::given(method("GET"))
        .and(path(format!("{CONTACTS}/{id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": id.to_string(), "properties": properties,
            "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-01-02T00:00:00Z",
            "archived": false
        })))
        .mount(hubspot)
        .await;
}

/// Every `PATCH` of a contact answers 200 (at the lowest priority, so tests can put
/// failures in front of it).
pub async fn accept_patches(hubspot: &MockServer) {
    Mock::given(method("PATCH"))
        .and(path_regex(r"^/crm/v3/objects/contacts/\d+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
        .with_priority(10)
        .mount(hubspot)
        .await;
}

/// The `properties` of each PATCH HubSpot received for contact `id`, in arrival order.
pub async fn patches(hubspot: &MockServer, id: u64) -> Vec<Value> {
    let target = format!("{CONTACTS}/{id}");
    hubspot
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "PATCH" && r.url.path() == target)
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["properties"].clone()
        })
        .collect()
}

pub async fn patched_statuses(hubspot: &MockServer, id: u64, property: &str) -> Vec<String> {
    patches(hubspot, id)
        .await
        .iter()
        .map(|p| p[property].as_str().unwrap_or("(none)").to_string())
        .collect()
}

pub async fn requests(hubspot: &MockServer, verb: &str) -> Vec<Request> {
    hubspot
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == verb)
        .collect()
}
