//! The configuration's duration (`"30s"`, `"1h 5m"`) and size (`"1 MiB"`, `1048576`) strings
//! through the whole of `Config::from_toml`, as a file or `check-config` reads them: the
//! checks never panic, and a configuration that loads gives delays the retry code can use.
//! Slow (figment), so it runs for a time rather than a count; `config_values` is the fast one.
#![no_main]

use arbitrary::Arbitrary;
use leadlink::config::Config;
use leadlink::retry;
use leadlink_fuzz::now;
use libfuzzer_sys::fuzz_target;
use std::fmt::Write as _;
use std::time::Duration;

/// Every duration key of the configuration, and the size.
const KEYS: [&str; 17] = [
    "server.body_limit",
    "broker.reconnect_min",
    "broker.reconnect_max",
    "broker.publish_timeout",
    "database.acquire_timeout",
    "connectsafely.timeout",
    "connectsafely.key_probe_interval",
    "crm.probe_interval",
    "retry.base_delay",
    "retry.max_delay",
    "writeback.retry.base_delay",
    "writeback.retry.max_delay",
    "worker.lease",
    "worker.relay_interval",
    "worker.relay_grace",
    "worker.shutdown_timeout",
    "retry.jitter",
];

#[derive(Arbitrary, Debug)]
enum Value {
    Text(String),
    Integer(i64),
    Float(f64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    values: Vec<(u8, Value)>,
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fuzz_target!(|input: Input| {
    let mut text = String::from(
        "connectsafely.api_key = \"k\"\n\
         sources.events.secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n",
    );
    let mut seen = [false; KEYS.len()];
    for (key, value) in input.values.iter().take(6) {
        let index = usize::from(*key) % KEYS.len();
        if std::mem::replace(&mut seen[index], true) {
            continue;
        }
        let value = match value {
            Value::Text(s) => toml_string(s),
            Value::Integer(i) => i.to_string(),
            Value::Float(f) if f.is_finite() => format!("{f:?}"),
            Value::Float(_) => "nan".to_owned(),
        };
        let _ = writeln!(text, "{} = {value}", KEYS[index]);
    }
    let Ok(config) = Config::from_toml(&text) else {
        return;
    };
    for policy in [config.retry.clone(), config.writeback.retry.as_retry()] {
        for attempt in [1, 2, policy.max_attempts, u32::MAX] {
            for jitter in [-1.0, 0.0, 1.0] {
                let _ = retry::next_try_at(&policy, attempt, None, now(), jitter);
                let asked = Some(Duration::from_secs(u64::MAX));
                let _ = retry::next_try_at(&policy, attempt, asked, now(), jitter);
            }
        }
    }
});
