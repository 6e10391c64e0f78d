use serde_json::json;

use super::*;

/// A minimal protobuf writer for building request bodies by hand.
#[derive(Default)]
pub(crate) struct Msg(pub(crate) Vec<u8>);

impl Msg {
    pub(crate) fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }
    pub(crate) fn bytes(mut self, field: u64, data: &[u8]) -> Msg {
        self.varint(field << 3 | 2);
        self.varint(data.len() as u64);
        self.0.extend_from_slice(data);
        self
    }
    pub(crate) fn str(self, field: u64, s: &str) -> Msg {
        self.bytes(field, s.as_bytes())
    }
    pub(crate) fn msg(self, field: u64, m: Msg) -> Msg {
        self.bytes(field, &m.0)
    }
    pub(crate) fn int(mut self, field: u64, v: u64) -> Msg {
        self.varint(field << 3);
        self.varint(v);
        self
    }
    pub(crate) fn entry(self, field: u64, key: &str, value: Msg) -> Msg {
        self.msg(field, Msg::default().str(1, key).msg(2, value))
    }
    pub(crate) fn str_entry(self, field: u64, key: &str, value: &str) -> Msg {
        self.msg(field, Msg::default().str(1, key).str(2, value))
    }
}

pub(crate) fn envelope(api_version: &str, kind: &str, raw: Msg) -> Vec<u8> {
    let unknown = Msg::default()
        .msg(1, Msg::default().str(1, api_version).str(2, kind))
        .bytes(2, &raw.0);
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.0);
    body
}

fn meta(name: &str) -> Msg {
    // Go writes every non-pointer field, empty or not.
    Msg::default()
        .str(1, name)
        .str(2, "")
        .str(3, "")
        .int(7, 0)
        .msg(8, Msg::default())
}

#[test]
fn configmap_as_kubectl_create_sends_it() {
    let cm = Msg::default()
        .msg(1, meta("settings").str_entry(11, "app", "web"))
        .str_entry(2, "mode", "fast")
        .str_entry(2, "empty", "");
    let object = decode_body(&envelope("v1", "ConfigMap", cm)).unwrap();
    assert_eq!(
        object,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "labels": {"app": "web"}},
            "data": {"mode": "fast", "empty": ""},
        })
    );
}

#[test]
fn secret_bytes_become_base64() {
    let secret = Msg::default()
        .msg(1, meta("creds"))
        .msg(2, Msg::default().str(1, "password").bytes(2, b"s3cret"))
        .str(3, "Opaque");
    let object = decode_body(&envelope("v1", "Secret", secret)).unwrap();
    assert_eq!(object["data"], json!({"password": "czNjcmV0"}));
    assert_eq!(object["type"], "Opaque");
}

#[test]
fn deployment_with_quantities_int_or_string_and_zero_replicas() {
    let port = Msg::default().int(3, 8080).str(4, "TCP").int(2, 0);
    let limits = Msg::default().str(1, "64Mi");
    let container = Msg::default()
        .str(1, "web")
        .str(2, "nginx")
        .str(3, "serve")
        .str(3, "--port=8080")
        .msg(6, port)
        .msg(8, Msg::default().entry(1, "memory", limits));
    let template = Msg::default()
        .msg(1, meta("").str_entry(11, "app", "web"))
        .msg(2, Msg::default().msg(2, container));
    let strategy = Msg::default().str(1, "RollingUpdate").msg(
        2,
        Msg::default()
            .msg(1, Msg::default().int(1, 1).str(3, "25%"))
            .msg(2, Msg::default().int(1, 0).int(2, 2)),
    );
    let spec = Msg::default()
        .int(1, 0)
        .msg(2, Msg::default().str_entry(1, "app", "web"))
        .msg(3, template)
        .msg(4, strategy);
    let object = decode_body(&envelope(
        "apps/v1",
        "Deployment",
        Msg::default().msg(1, meta("web")).msg(2, spec),
    ))
    .unwrap();
    let spec = &object["spec"];
    assert_eq!(spec["replicas"], 0);
    assert_eq!(spec["selector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(
        spec["strategy"]["rollingUpdate"],
        json!({"maxUnavailable": "25%", "maxSurge": 2})
    );
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(container["command"], json!(["serve", "--port=8080"]));
    assert_eq!(
        container["ports"],
        json!([{"containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(container["resources"]["limits"]["memory"], "64Mi");
    assert_eq!(
        spec["template"]["metadata"],
        json!({"labels": {"app": "web"}})
    );
    // The result decodes as the typed kind.
    crate::decode::decode_as::<k8s_openapi::api::apps::v1::Deployment>(
        &object,
        crate::decode::FieldValidation::Strict,
    )
    .unwrap();
}

#[test]
fn embedded_structs_are_spread_into_their_parent() {
    // `kubectl create job --from=cronjob/…` sends the template's volumes and
    // env references; their Go structs embed VolumeSource and
    // LocalObjectReference, which JSON inlines.
    let config_map = Msg::default().msg(1, Msg::default().str(1, "settings"));
    let volume = Msg::default()
        .str(1, "config")
        .msg(2, Msg::default().msg(19, config_map));
    let key_ref = Msg::default()
        .msg(1, Msg::default().str(1, "creds"))
        .str(2, "token");
    let env = Msg::default()
        .str(1, "TOKEN")
        .msg(3, Msg::default().msg(4, key_ref));
    let container = Msg::default()
        .str(1, "main")
        .str(2, "hello.wasm")
        .msg(7, env);
    let pod = Msg::default()
        .msg(1, meta("p"))
        .msg(2, Msg::default().msg(1, volume).msg(2, container));
    let value = decode_body(&envelope("v1", "Pod", pod)).expect("decodes");
    assert_eq!(
        value["spec"]["volumes"][0],
        json!({"name": "config", "configMap": {"name": "settings"}})
    );
    assert_eq!(
        value["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"],
        json!({"name": "creds", "key": "token"})
    );
}

#[test]
fn times_are_rfc3339() {
    let ev = Msg::default()
        .msg(1, meta("e"))
        .msg(6, Msg::default().int(1, 1_700_000_000));
    let object = decode_body(&envelope("v1", "Event", ev)).unwrap();
    assert_eq!(object["firstTimestamp"], "2023-11-14T22:13:20Z");
}

#[test]
fn bad_bodies_are_refused_not_panicked_on() {
    assert_eq!(decode_body(b"nope").unwrap_err().code(), 400);
    let mut truncated = envelope("v1", "ConfigMap", Msg::default().msg(1, meta("x")));
    truncated.truncate(truncated.len() - 3);
    assert_eq!(decode_body(&truncated).unwrap_err().code(), 400);
    let unknown_kind = envelope("example.com/v1", "Widget", Msg::default());
    assert_eq!(decode_body(&unknown_kind).unwrap_err().code(), 415);
    // A string field holding a number's wire type.
    let wrong = envelope(
        "v1",
        "ConfigMap",
        Msg::default().msg(1, Msg::default().int(1, 5)),
    );
    assert_eq!(decode_body(&wrong).unwrap_err().code(), 400);
}

#[test]
fn every_schema_message_type_is_described() {
    for (name, fields) in SCHEMA.iter() {
        for field in fields.values() {
            let mut types = vec![&field.ty];
            if let Type::Map(k, v) = &field.ty {
                types = vec![k.as_ref(), v.as_ref()];
            }
            for ty in types {
                if let Type::Message(inner) = ty {
                    assert!(
                        SCHEMA.contains_key(inner),
                        "{name}.{} uses unknown {inner}",
                        field.name
                    );
                }
            }
        }
    }
}
