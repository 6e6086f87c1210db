//! A fake Salesforce (wiremock): the OAuth token endpoint and the sObject GET/PATCH, which
//! reads records, takes the statuses and records every call; and Salesforce's ids.

use chrono::Utc;
use leadlink::ingest::salesforce::outbound::canonical_id;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const CLIENT_ID: &str = "3MVG9leadlinkTestConnectedApp";
pub const CLIENT_SECRET: &str = "sf-client-secret-9f8e7d6c5b4a";
/// Setup > Company Information, the 15-character form; `org_18` adds the checksum.
pub const ORG_15: &str = "00D5g000004SNFh";
/// A Salesforce user id mapped to its own ConnectSafely account in `[crm.salesforce.owners]`.
pub const REP_15: &str = "0055g00000RepAb";

/// The 18-character form of a 15-character id, as Salesforce computes it: per chunk of 5,
/// bit i is set when character i is upper case, and the value picks from `A..Z0..5`.
pub fn id18(short: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    assert_eq!(short.len(), 15, "{short}");
    let mut long = short.to_string();
    for chunk in short.as_bytes().chunks(5) {
        let bits = chunk
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_ascii_uppercase())
            .fold(0, |bits, (i, _)| bits | 1 << i);
        long.push(ALPHABET[bits] as char);
    }
    // The crate must agree, or the ids below are not what Salesforce would send.
    assert_eq!(canonical_id(&long), Some(short));
    long
}

pub fn org_18() -> String {
    id18(ORG_15)
}

/// One call to the sObject API, as the fake saw and answered it.
#[derive(Debug, Clone)]
pub struct ApiCall {
    pub method: String,
    pub object: String,
    pub id: String,
    /// The `fields` query parameter of a GET.
    pub fields: Option<String>,
    pub body: Value,
    pub bearer: String,
    pub status: u16,
}

#[derive(Default)]
pub struct SfState {
    pub instance_url: String,
    pub client_secret: String,
    pub token_requests: u32,
    pub issued: u32,
    pub valid_tokens: HashSet<String>,
    /// Every token is refused by the API (401 INVALID_SESSION_ID), new ones too.
    pub refuse_all_tokens: bool,
    /// By the 15-character id: (sObject type, fields).
    pub records: HashMap<String, (String, serde_json::Map<String, Value>)>,
    pub deleted: HashSet<String>,
    /// Answers given to PATCHes of a record before it accepts one.
    pub patch_failures: HashMap<String, VecDeque<(u16, Value)>>,
    pub calls: Vec<ApiCall>,
}

#[derive(Clone)]
pub struct Shared(pub Arc<Mutex<SfState>>);

pub struct TokenEndpoint(Shared);

impl Respond for TokenEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.0.lock().unwrap();
        state.token_requests += 1;
        let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let field = |key: &str| form.get(key).map(String::as_str);
        if field("grant_type") != Some("client_credentials") {
            return ResponseTemplate::new(400).set_body_json(json!({
                "error": "unsupported_grant_type", "error_description": "grant type not supported"}));
        }
        if field("client_id") != Some(CLIENT_ID)
            || field("client_secret") != Some(state.client_secret.as_str())
        {
            return ResponseTemplate::new(400).set_body_json(json!({
                "error": "invalid_client", "error_description": "invalid client credentials"}));
        }
        state.issued += 1;
        let token = format!("{ORG_15}!AQ0AQ.fake-access-token-{}", state.issued);
        state.valid_tokens.insert(token.clone());
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token,
            "signature": "3Xh1cHGv1b9bYp0yF3S0b6pNZ1Yq3VnH4iR0o8sLx0E=",
            "instance_url": state.instance_url,
            "id": format!("https://login.salesforce.com/id/{}/{}", org_18(), id18(REP_15)),
            "token_type": "Bearer",
            "issued_at": Utc::now().timestamp_millis().to_string(),
        }))
    }
}

pub struct SObjectApi(Shared);

pub fn sf_error(status: u16, code: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!([{"message": message, "errorCode": code, "fields": []}]),
    )
}

impl SObjectApi {
    pub fn answer(state: &mut SfState, request: &Request, call: &ApiCall) -> (u16, Value) {
        if state.refuse_all_tokens || !state.valid_tokens.contains(&call.bearer) {
            return sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid");
        }
        let key = call.id.get(..15).unwrap_or_default().to_string();
        if state.deleted.contains(&key) {
            return sf_error(404, "ENTITY_IS_DELETED", "entity is deleted");
        }
        let Some((object, fields)) = state.records.get(&key).cloned() else {
            return sf_error(404, "NOT_FOUND", "The requested resource does not exist");
        };
        if object != call.object {
            return sf_error(404, "NOT_FOUND", "The requested resource does not exist");
        }
        match call.method.as_str() {
            "GET" => {
                let mut record = serde_json::Map::new();
                record.insert(
                    "attributes".into(),
                    json!({"type": object, "url": request.url.path()}),
                );
                for name in call.fields.as_deref().unwrap_or("Id").split(',') {
                    match fields.get(name) {
                        Some(value) => {
                            record.insert(name.into(), value.clone());
                        }
                        None => {
                            return (
                                400,
                                json!([{"message": format!("\nSELECT {name} FROM {object}\n ^\nERROR at Row:1:Column:8\nNo such column '{name}' on entity '{object}'."),
                                        "errorCode": "INVALID_FIELD"}]),
                            );
                        }
                    }
                }
                (200, Value::Object(record))
            }
            "PATCH" => {
                if let Some(answer) = state
                    .patch_failures
                    .get_mut(&key)
                    .and_then(VecDeque::pop_front)
                {
                    return answer;
                }
                let Value::Object(update) = &call.body else {
                    return sf_error(400, "JSON_PARSER_ERROR", "not a JSON object");
                };
                for name in update.keys() {
                    if !name.starts_with("LinkedIn_") {
                        return sf_error(
                            400,
                            "INVALID_FIELD",
                            &format!("No such column '{name}' on sobject of type {object}"),
                        );
                    }
                }
                let record = &mut state.records.get_mut(&key).unwrap().1;
                for (name, value) in update {
                    record.insert(name.clone(), value.clone());
                }
                (204, Value::Null)
            }
            other => sf_error(405, "METHOD_NOT_ALLOWED", other),
        }
    }
}

impl Respond for SObjectApi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.0.lock().unwrap();
        let segments: Vec<&str> = request.url.path().split('/').collect();
        let (object, id) = (segments[segments.len() - 2], segments[segments.len() - 1]);
        let mut call = ApiCall {
            method: request.method.to_string(),
            object: object.to_string(),
            id: id.to_string(),
            fields: request
                .url
                .query_pairs()
                .find(|(k, _)| k == "fields")
                .map(|(_, v)| v.into_owned()),
            body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
            bearer: request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default()
                .to_string(),
            status: 0,
        };
        let (status, body) = Self::answer(&mut state, request, &call);
        call.status = status;
        state.calls.push(call);
        let template = ResponseTemplate::new(status);
        if body.is_null() {
            template
        } else {
            template.set_body_json(body)
        }
    }
}

pub struct FakeSalesforce {
    pub server: MockServer,
    pub state: Shared,
}

impl FakeSalesforce {
    pub async fn start() -> FakeSalesforce {
        let server = MockServer::start().await;
        let state = Shared(Arc::new(Mutex::new(SfState {
            instance_url: server.uri(),
            client_secret: CLIENT_SECRET.into(),
            ..SfState::default()
        })));
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(TokenEndpoint(state.clone()))
            .mount(&server)
            .await;
        Mock::given(path_regex(
            r"^/services/data/v60\.0/sobjects/(Lead|Contact)/[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$",
        ))
        .respond_with(SObjectApi(state.clone()))
        .mount(&server)
        .await;
        FakeSalesforce { server, state }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut SfState) -> T) -> T {
        f(&mut self.state.0.lock().unwrap())
    }

    /// A record the API knows; every field it has, nulls included (a GET of another field
    /// is an INVALID_FIELD error, as in Salesforce).
    pub fn add_record(&self, object: &str, id: &str, fields: Value) {
        let Value::Object(mut fields) = fields else {
            panic!("fields must be an object")
        };
        fields.insert("Id".into(), json!(id));
        for name in [
            "LinkedIn_Status__c",
            "LinkedIn_Profile_URN__c",
            "LinkedIn_Hold_Until__c",
            "LinkedIn_Retry_At__c",
            "LinkedIn_Last_Error__c",
            "LinkedIn_Status_Changed_At__c",
        ] {
            fields.entry(name).or_insert(Value::Null);
        }
        self.with(|s| {
            s.records
                .insert(id[..15].to_string(), (object.into(), fields))
        });
    }

    pub fn calls(&self) -> Vec<ApiCall> {
        self.with(|s| s.calls.clone())
    }

    pub fn calls_for(&self, id: &str) -> Vec<ApiCall> {
        self.calls().into_iter().filter(|c| c.id == id).collect()
    }

    /// The bodies of the PATCHes Salesforce accepted for a record, in order.
    pub fn accepted_patches(&self, id: &str) -> Vec<Value> {
        self.calls_for(id)
            .into_iter()
            .filter(|c| c.method == "PATCH" && c.status == 204)
            .map(|c| c.body)
            .collect()
    }

    pub fn written_statuses(&self, id: &str) -> Vec<String> {
        self.accepted_patches(id)
            .iter()
            .map(|p| p["LinkedIn_Status__c"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    pub fn token_requests(&self) -> u32 {
        self.with(|s| s.token_requests)
    }

    pub fn answers(&self, status: u16) -> usize {
        self.with(|s| s.calls.iter().filter(|c| c.status == status).count())
    }
}
