//! The configuration's duration and size strings, read by the deserializers the
//! configuration sections use (`humantime_serde`, `bytesize`), without figment around them
//! so that millions of inputs fit in minutes (`config_file` runs the whole path). Law: a
//! duration read back from how the checks print it is the same duration.
#![no_main]

use arbitrary::Arbitrary;
use leadlink::config::{RetryConfig, ServerConfig, WorkerConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value as Json, json};

#[derive(Arbitrary, Debug)]
enum Value {
    Text(String),
    Integer(i64),
    Unsigned(u64),
    Float(f64),
}

impl Value {
    fn json(&self) -> Json {
        match self {
            Value::Text(s) => json!(s),
            Value::Integer(i) => json!(i),
            Value::Unsigned(u) => json!(u),
            Value::Float(f) => json!(f),
        }
    }
}

fuzz_target!(|input: (Value, Value)| {
    let (first, second) = (input.0.json(), input.1.json());
    if let Ok(retry) = serde_json::from_value::<RetryConfig>(
        json!({"base_delay": first, "max_delay": second, "jitter": 0.5}),
    ) {
        for duration in [retry.base_delay, retry.max_delay] {
            let printed = humantime::format_duration(duration).to_string();
            assert_eq!(
                humantime::parse_duration(&printed),
                Ok(duration),
                "{duration:?} printed as {printed:?} does not read back"
            );
        }
    }
    let _ = serde_json::from_value::<WorkerConfig>(json!({"lease": first, "relay_grace": second}));
    if let Ok(server) = serde_json::from_value::<ServerConfig>(json!({"body_limit": first})) {
        let printed = server.body_limit.to_string();
        assert!(!printed.is_empty());
    }
});
