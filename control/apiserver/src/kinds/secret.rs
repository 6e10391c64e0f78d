//! core/v1 Secret: `stringData` is folded into base64 `data` on write.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::kinds::configmap::{MAX_SIZE, immutable_data};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Type", "string", 0),
    Column::new("Data", "string", 0),
    Column::new("Age", "string", 0),
];

/// The keys each well-known type requires in `data`.
const REQUIRED_KEYS: &[(&str, &[&str])] = &[
    ("kubernetes.io/tls", &["tls.crt", "tls.key"]),
    ("kubernetes.io/dockerconfigjson", &[".dockerconfigjson"]),
    ("kubernetes.io/dockercfg", &[".dockercfg"]),
    ("kubernetes.io/ssh-auth", &["ssh-privatekey"]),
];

pub fn resource() -> Resource {
    Resource {
        field_selectors: &["type"],
        defaults,
        validate,
        ..common::base(
            "",
            "v1",
            "Secret",
            ("secrets", "secret"),
            decode_as::<Secret>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn defaults(secret: &mut Value) {
    set_default(secret, "type", json!("Opaque"));
    let Some(strings) = secret.as_object_mut().and_then(|s| s.remove("stringData")) else {
        return;
    };
    for (key, value) in strings.as_object().into_iter().flatten() {
        let bytes = ByteString(value.as_str().unwrap_or_default().as_bytes().to_vec());
        secret["data"][key] = serde_json::to_value(bytes).expect("bytes serialize as base64");
    }
}

/// The decoded length of a base64 value.
fn decoded_len(value: &Value) -> usize {
    let text = value.as_str().unwrap_or_default();
    text.len() / 4 * 3 - text.bytes().rev().take_while(|b| *b == b'=').count()
}

fn validate(secret: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(secret, None);
    let data = secret["data"].as_object().cloned().unwrap_or_default();
    let mut size = 0;
    for (key, value) in &data {
        causes.extend(common::validate_config_key(key, "data"));
        size += decoded_len(value);
    }
    if size > MAX_SIZE {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            field: "data".into(),
            message: format!("Too long: must have at most {MAX_SIZE} bytes"),
        });
    }
    let kind = secret["type"].as_str().unwrap_or_default();
    if let Some((_, keys)) = REQUIRED_KEYS.iter().find(|(t, _)| *t == kind) {
        for key in keys.iter().filter(|k| !data.contains_key(**k)) {
            causes.push(Cause::required(format!("data[{key}]")));
        }
    }
    if kind == "kubernetes.io/service-account-token"
        && secret["metadata"]["annotations"]["kubernetes.io/service-account.name"].is_null()
    {
        causes.push(Cause::required(
            "metadata.annotations[kubernetes.io/service-account.name]",
        ));
    }
    if let Some(old) = old {
        causes.extend(common::immutable(secret, old, &["type"], "type"));
        causes.extend(immutable_data(secret, old, &["data"]));
    }
    causes
}

fn cells(secret: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let data = secret["data"].as_object().map_or(0, |d| d.len());
    vec![
        secret["metadata"]["name"].clone(),
        secret["type"].clone(),
        json!(data),
        table::age(secret, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_is_folded_into_data() {
        let mut secret = json!({"metadata": {"name": "db"}, "data": {"user": "YWRtaW4="},
            "stringData": {"password": "s3cret"}});
        defaults(&mut secret);
        assert_eq!(secret["type"], "Opaque");
        assert_eq!(secret["data"]["password"], "czNjcmV0");
        assert!(secret.get("stringData").is_none());
        assert!(validate(&secret, None).is_empty());
        assert_eq!(
            &cells(&secret, jiff::Timestamp::now())[1..3],
            &[json!("Opaque"), json!(2)]
        );
    }

    #[test]
    fn type_rules() {
        let tls = json!({"metadata": {"name": "cert"}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": "eA=="}});
        assert_eq!(validate(&tls, None)[0].field, "data[tls.key]");
        let mut changed = tls.clone();
        changed["type"] = json!("Opaque");
        let fields: Vec<String> = validate(&changed, Some(&tls))
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, vec!["type"]);
        assert_eq!(decoded_len(&json!("YWRtaW4=")), 5);
    }
}
