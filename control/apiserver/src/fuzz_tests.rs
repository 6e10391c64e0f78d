//! Randomized robustness check of request decoding and patch application:
//! protobuf, JSON and YAML bodies, the three patch types and server-side
//! apply, fed random and mutated inputs. Every input must give a value or an
//! error, never a panic; a decoded protobuf body must still decode the same
//! way once re-encoded as JSON.
//!
//! `cargo test -p skiff-apiserver --lib fuzz` runs a few thousand inputs;
//! `SKIFF_FUZZ_ITERATIONS=1000000 cargo test -p skiff-apiserver --lib fuzz --
//! --nocapture` the long run (each iteration tries every target). The seed
//! is `SKIFF_FUZZ_SEED` (default fixed), so a failure can be replayed.

use serde_json::{Map, Value, json};
use skiff_patch::PatchType;
use skiff_patch::managed::{Scope, Writer};

use crate::proto::tests::{Msg, envelope};

/// xorshift64*: small, deterministic, good enough to pick inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "metadata",
    "spec",
    "status",
    "name",
    "labels",
    "containers",
    "image",
    "ports",
    "containerPort",
    "protocol",
    "env",
    "value",
    "replicas",
    "template",
    "finalizers",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$deleteFromPrimitiveList/finalizers",
    "apiVersion",
    "kind",
    "data",
    "managedFields",
    "fieldsV1",
    "manager",
    "operation",
    "f:spec",
    "k:{\"name\":\"a\"}",
    "v:\"x\"",
    ".",
];
const STRINGS: &[&str] = &[
    "a",
    "b",
    "",
    "replace",
    "delete",
    "merge",
    "TCP",
    "Apply",
    "Update",
    "v1",
    "apps/v1",
    "Deployment",
    "Pod",
    "x",
    "k:{",
    "f:",
    "{}",
];

fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 4 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.below(3) == 0),
        2 => json!(rng.below(100) as i64 - 10),
        3 | 4 => json!(rng.pick(STRINGS)),
        5 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
        _ => object(rng, depth + 1),
    }
}

fn object(rng: &mut Rng, depth: usize) -> Value {
    let mut map = Map::new();
    for _ in 0..rng.below(5) {
        map.insert(rng.pick(KEYS).to_string(), value(rng, depth + 1));
    }
    Value::Object(map)
}

/// A plausible object to patch: a Deployment with lists merged by key.
fn deployment(rng: &mut Rng) -> Value {
    let mut base = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["x"]},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "a", "image": "x", "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]}
        ]}}}
    });
    if rng.below(2) == 0 {
        json_patch::merge(&mut base, &object(rng, 0));
    }
    base
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
            1 if !bytes.is_empty() => {
                bytes.truncate(rng.below(bytes.len()));
            }
            2 => {
                let i = rng.below(bytes.len() + 1);
                bytes.insert(i, rng.next() as u8);
            }
            _ => {
                let i = rng.below(bytes.len() + 1);
                let tail = bytes[i..].to_vec();
                bytes.extend_from_slice(&tail[..tail.len().min(8)]);
            }
        }
    }
}

/// A valid protobuf body of a random served kind, before mutation.
fn proto_seed(rng: &mut Rng) -> Vec<u8> {
    let meta = Msg::default()
        .str(1, "x")
        .str_entry(11, "k", "v")
        .msg(8, Msg::default().int(1, rng.next() % 2_000_000_000));
    match rng.below(4) {
        0 => envelope(
            "v1",
            "ConfigMap",
            Msg::default().msg(1, meta).str_entry(2, "a", "b"),
        ),
        1 => envelope(
            "v1",
            "Secret",
            Msg::default()
                .msg(1, meta)
                .msg(2, Msg::default().str(1, "p").bytes(2, &[0, 255])),
        ),
        2 => {
            let container = Msg::default()
                .str(1, "c")
                .str(2, "i")
                .msg(6, Msg::default().int(3, 80));
            let template = Msg::default().msg(2, Msg::default().msg(2, container));
            envelope(
                "apps/v1",
                "Deployment",
                Msg::default()
                    .msg(1, meta)
                    .msg(2, Msg::default().int(1, 3).msg(3, template)),
            )
        }
        _ => {
            let mut random = b"k8s\0".to_vec();
            random.extend((0..rng.below(64)).map(|_| rng.next() as u8));
            random
        }
    }
}

/// A random (often contradictory) structural schema for custom resources.
fn schema(rng: &mut Rng, depth: usize) -> Value {
    let types = [
        "object", "array", "string", "integer", "number", "boolean", "bogus",
    ];
    let mut schema = json!({"type": rng.pick(&types)});
    let keys = ["spec", "status", "name", "replicas", "data"];
    for _ in 0..rng.below(6) {
        match rng.below(12) {
            0 if depth < 3 => {
                let key = *rng.pick(&keys);
                schema["properties"][key] = self::schema(rng, depth + 1);
            }
            1 if depth < 3 => schema["items"] = self::schema(rng, depth + 1),
            2 => schema["required"] = json!([rng.pick(&keys)]),
            3 => schema["enum"] = json!([value(rng, 1), value(rng, 1)]),
            4 => schema["minimum"] = value(rng, 0),
            5 => schema["maximum"] = value(rng, 0),
            6 => schema["pattern"] = json!(rng.pick(&["^[a-z]+$", "(", "a{2,}", "", "\\d"])),
            7 => schema["maxLength"] = value(rng, 0),
            8 if depth < 3 => {
                schema["additionalProperties"] = if rng.below(2) == 0 {
                    json!(rng.below(2) == 0)
                } else {
                    self::schema(rng, depth + 1)
                }
            }
            9 => schema["x-kubernetes-preserve-unknown-fields"] = json!(rng.below(2) == 0),
            10 => schema["x-kubernetes-int-or-string"] = json!(true),
            _ => schema["default"] = value(rng, 1),
        }
    }
    schema
}

fn one_round(rng: &mut Rng) {
    // Custom resources against random schemas; printer-column paths.
    let mut custom = object(rng, 0);
    let outcome = crate::crd::schema::check_object(&schema(rng, 0), &mut custom);
    let _ = (outcome.causes.len(), outcome.unknown.len());
    let mut path = rng
        .pick(&[
            ".spec.replicas",
            ".status.conditions[?(@.type==\"Ready\")].status",
            ".spec['a.b'][0]",
            ".items[*].name",
            "{.metadata.name}",
        ])
        .as_bytes()
        .to_vec();
    mutate(rng, &mut path);
    let path = String::from_utf8_lossy(&path);
    let _ = crate::crd::jsonpath::select(&custom, &path);
    let mut target = custom.clone();
    let _ = crate::crd::jsonpath::set(&mut target, &path, value(rng, 1));

    // Protobuf bodies.
    let mut body = proto_seed(rng);
    if rng.below(4) != 0 {
        mutate(rng, &mut body);
    }
    if let Ok(object) = crate::proto::decode_body(&body) {
        let as_json = serde_json::to_vec(&object).expect("a JSON value serializes");
        let again: Value = serde_json::from_slice(&as_json).expect("and parses back");
        assert_eq!(again, object);
    }

    // JSON and YAML bodies.
    let mut text = serde_json::to_vec(&object(rng, 0)).expect("serializes");
    mutate(rng, &mut text);
    for media in ["application/json", "application/yaml"] {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(media),
        );
        let _ = crate::request::body_value(&headers, &text);
    }

    // Patches of every type against a Deployment.
    let original = deployment(rng);
    let patch = object(rng, 0);
    let raw = serde_json::to_vec(&patch).expect("serializes");
    let kind = *rng.pick(&["Deployment", "Pod", "Widget"]);
    for patch_type in [PatchType::JsonMerge, PatchType::StrategicMerge] {
        let _ = skiff_patch::apply_patch(kind, &original, patch_type, &raw);
    }
    let ops: Vec<Value> = (0..rng.below(4))
        .map(|_| {
            json!({
                "op": rng.pick(&["add", "remove", "replace", "move", "copy", "test", "bogus"]),
                "path": rng.pick(&["/spec/replicas", "/metadata/labels/app", "/spec/template/spec/containers/0", "/x/y", "", "/spec/template/spec/containers/-"]),
                "from": rng.pick(&["/metadata", "/spec/replicas", "/nope"]),
                "value": value(rng, 2),
            })
        })
        .collect();
    let raw_ops = serde_json::to_vec(&ops).expect("serializes");
    let _ = skiff_patch::apply_patch(kind, &original, PatchType::Json, &raw_ops);
    let mut raw_mutated = raw;
    mutate(rng, &mut raw_mutated);
    let _ = skiff_patch::apply_patch(kind, &original, PatchType::StrategicMerge, &raw_mutated);

    // Server-side apply and managedFields bookkeeping, with random (even
    // malformed) managedFields on the live object.
    let schema = skiff_patch::Schema::for_kind(kind);
    let mut live = original;
    if rng.below(2) == 0
        && let Some(metadata) = live.get_mut("metadata").and_then(Value::as_object_mut)
    {
        metadata.insert(
            "managedFields".into(),
            json!([{
                "manager": rng.pick(&["a", "b"]), "operation": rng.pick(&["Apply", "Update", "x"]),
                "fieldsV1": object(rng, 0), "subresource": rng.pick(&["", "status"]),
            }]),
        );
    }
    let writer = Writer {
        manager: ["a", "b", "c"][rng.below(3)],
        subresource: "",
        api_version: "apps/v1",
        now: "2026-01-01T00:00:00Z",
        scope: *rng.pick(&[Scope::Main, Scope::Status]),
    };
    let config = deployment(rng);
    let _ = skiff_patch::managed::apply(&schema, Some(&live), &config, &writer, rng.below(2) == 0);
    let _ = skiff_patch::managed::apply(&schema, Some(&live), &patch, &writer, true);
    let _ = skiff_patch::managed::record_update(&schema, Some(&live), &config, &writer);
}

#[test]
fn fuzz_decoders_and_patches_never_panic() {
    let iterations: u64 = std::env::var("SKIFF_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let seed: u64 = std::env::var("SKIFF_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_cafe);
    let mut rng = Rng(seed.max(1));
    for _ in 0..iterations {
        one_round(&mut rng);
    }
    println!("fuzz: {iterations} iterations from seed {seed} ran clean");
}
