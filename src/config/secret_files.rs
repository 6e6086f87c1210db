//! The secrets that may be read from a file named by a sibling `<key>_file` key (README
//! "Secrets"): the file's content, trimmed, wins over an inline value. They are read into
//! the merged document before any section is, so every section sees a plain value.

use figment::value::{Dict, Value};

/// What a secret's file holds.
#[derive(Clone, Copy)]
enum Holds {
    One,
    /// One secret per line, added to the inline list.
    Lines,
}

/// Every secret key with a `_file` sibling; README's table lists the same keys.
const SECRET_FILES: [(&str, Holds); 13] = [
    ("server.admin_token", Holds::One),
    ("broker.url", Holds::One),
    ("database.url", Holds::One),
    ("connectsafely.api_key", Holds::One),
    ("sources.events.secrets", Holds::Lines),
    ("sources.hubspot.client_secret", Holds::One),
    ("sources.salesforce.token", Holds::One),
    ("sources.salesforce.callout.hmac.secret", Holds::One),
    ("crm.hubspot.access_token", Holds::One),
    ("crm.salesforce.client_secret", Holds::One),
    ("writeback.callback.url", Holds::One),
    ("writeback.callback.secret", Holds::One),
    ("metrics.token", Holds::One),
];

/// Replaces each `<key>_file` in `root` by `<key>` read from that file. Returns the keys
/// whose file could not be read, so that "missing" is not said about them as well.
pub(super) fn read_into(root: &mut Dict, problems: &mut Vec<String>) -> Vec<&'static str> {
    let mut unread = Vec::new();
    for (key, holds) in SECRET_FILES {
        let (parents, leaf) = key.rsplit_once('.').expect("keys are in a section");
        let Some(table) = table_at(root, parents) else {
            continue;
        };
        let Some(named) = table.remove(&format!("{leaf}_file")) else {
            continue;
        };
        let Value::String(_, path) = named else {
            problems.push(format!("{key}_file must be a path"));
            unread.push(key);
            continue;
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => put(table, leaf, holds, &text),
            Err(e) => {
                problems.push(format!("{key}_file {path}: {e}"));
                unread.push(key);
            }
        }
    }
    unread
}

fn table_at<'a>(root: &'a mut Dict, dotted: &str) -> Option<&'a mut Dict> {
    dotted
        .split('.')
        .try_fold(root, |table, part| match table.get_mut(part) {
            Some(Value::Dict(_, inner)) => Some(inner),
            _ => None,
        })
}

fn put(table: &mut Dict, leaf: &str, holds: Holds, text: &str) {
    match holds {
        Holds::One => {
            table.insert(leaf.to_owned(), Value::from(text.trim()));
        }
        Holds::Lines => {
            let lines = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(Value::from);
            let list = table
                .entry(leaf.to_owned())
                .or_insert_with(|| Value::from(Vec::<Value>::new()));
            // A list of another type is reported when the section is read.
            if let Value::Array(_, items) = list {
                items.extend(lines);
            }
        }
    }
}
