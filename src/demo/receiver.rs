//! The demo's callback receiver: what a user's endpoint for `[writeback.callback]` does.
//! It checks each delivery's Standard Webhooks signature, drops repeats by `webhook-id`, and
//! hands every status change on as it arrives.

use crate::job::StatusSnapshot;
use crate::signature::standard_webhooks::Verifier;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

/// What reaches the demo from the receiver.
#[derive(Debug)]
pub enum Delivery {
    Change(Box<StatusSnapshot>),
    /// A delivery the receiver answered 401 or 400, and why: the demo reports it and fails.
    Refused(String),
}

struct Receiver {
    verifier: Verifier,
    seen: Mutex<HashSet<String>>,
    deliveries: mpsc::UnboundedSender<Delivery>,
}

/// The router to serve at `/callback`, and where its deliveries arrive.
pub fn router(verifier: Verifier) -> (Router, mpsc::UnboundedReceiver<Delivery>) {
    let (deliveries, arrivals) = mpsc::unbounded_channel();
    let receiver = Arc::new(Receiver {
        verifier,
        seen: Mutex::default(),
        deliveries,
    });
    let router = Router::new()
        .route("/callback", post(receive))
        .with_state(receiver);
    (router, arrivals)
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (answer, delivery) = judge(&receiver, &headers, &body);
    if let Some(delivery) = delivery {
        // The demo may have finished and dropped its end: nothing left to tell.
        let _ = receiver.deliveries.send(delivery);
    }
    answer
}

fn judge(receiver: &Receiver, headers: &HeaderMap, body: &[u8]) -> (StatusCode, Option<Delivery>) {
    let id = match receiver.verifier.verify(headers, body, Utc::now()) {
        Ok(id) => id,
        Err(e) => {
            let refused = Delivery::Refused(format!("bad signature: {e}"));
            return (StatusCode::UNAUTHORIZED, Some(refused));
        }
    };
    let change = serde_json::from_slice::<Envelope>(body)
        .map_err(|e| e.to_string())
        .and_then(|envelope| match envelope.kind.as_str() {
            crate::crm::CallbackWriter::EVENT_TYPE => Ok(envelope.data),
            other => Err(format!("unexpected event type {other}")),
        });
    let change = match change {
        Ok(change) => change,
        Err(reason) => return (StatusCode::BAD_REQUEST, Some(Delivery::Refused(reason))),
    };
    let first_time = receiver
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id);
    let delivery = first_time.then(|| Delivery::Change(Box::new(change)));
    (StatusCode::NO_CONTENT, delivery)
}

#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    data: StatusSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::standard_webhooks::Signer;
    use axum::http::HeaderValue;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn receiver() -> (Receiver, mpsc::UnboundedReceiver<Delivery>) {
        let (deliveries, arrivals) = mpsc::unbounded_channel();
        let verifier = Verifier::new(&[SECRET]).unwrap();
        let receiver = Receiver {
            verifier,
            seen: Mutex::default(),
            deliveries,
        };
        (receiver, arrivals)
    }

    fn signed(id: &str, body: &[u8], secret: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in Signer::new(secret)
            .unwrap()
            .headers(id, Utc::now(), body)
            .unwrap()
        {
            headers.insert(name, HeaderValue::from_str(&value).unwrap());
        }
        headers
    }

    fn body() -> Vec<u8> {
        serde_json::json!({"type": "lead.connect.status", "data": {
            "jobId": uuid::Uuid::nil(), "recordId": "demo-jane", "accountId": "acc_demo",
            "status": "sent", "profileUrn": "urn:li:fsd_profile:x", "holdUntil": null,
            "retryAt": null, "attempts": 1, "error": null, "sequence": 2,
            "changedAt": "2026-12-03T08:00:00Z"}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_signed_change_is_handed_on_once_and_a_forged_one_is_refused() {
        let (receiver, _) = receiver();
        let body = body();
        let (answer, delivery) = judge(&receiver, &signed("j-2", &body, SECRET), &body);
        assert_eq!(answer, StatusCode::NO_CONTENT);
        let Some(Delivery::Change(change)) = delivery else {
            panic!("{delivery:?}")
        };
        assert_eq!(change.record_id, "demo-jane");
        let (answer, repeat) = judge(&receiver, &signed("j-2", &body, SECRET), &body);
        assert_eq!(answer, StatusCode::NO_CONTENT);
        assert!(repeat.is_none(), "a redelivery is not a new change");

        let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (answer, delivery) = judge(&receiver, &signed("j-3", &body, other), &body);
        assert_eq!(answer, StatusCode::UNAUTHORIZED);
        assert!(
            matches!(delivery, Some(Delivery::Refused(_))),
            "{delivery:?}"
        );
    }
}
