//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), which
//! kubectl's typed clients send for `kubectl create namespace|configmap|
//! secret|deployment|job|…`.
//!
//! The body is the magic `k8s\0` and a `runtime.Unknown` whose `typeMeta`
//! names the kind and whose `raw` is the object's protobuf encoding. The
//! object is decoded generically, driven by `schema.txt`: for each message
//! of the served groups (and apimachinery's meta/v1, runtime, resource and
//! intstr packages) its fields' numbers, JSON names and types, derived from
//! Kubernetes' `generated.proto` files by `scripts/gen-proto-schema`. The
//! result is the JSON the same object would have been sent as, so the rest of
//! the server (decoding into the typed kind, defaults, validation) is shared.
//!
//! Kubernetes writes every non-pointer field of a Go struct, so zero values
//! arrive that JSON's `omitempty` would have left out: empty strings, `false`
//! and `0` are dropped, except for the optional counts where 0 is a choice
//! (`replicas: 0`).

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};

const MAGIC: &[u8] = b"k8s\0";
/// Deeper nesting than any built-in kind needs is refused, not recursed into.
const MAX_DEPTH: usize = 64;

const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";

/// Fields of embedded Go structs (`json:",inline"`): protobuf nests them under
/// a field named after the type, JSON spreads their fields into the parent.
const INLINE: &[&str] = &[
    "localObjectReference",
    "volumeSource",
    "persistentVolumeSource",
    "ephemeralContainerCommon",
    "ingressRuleValue",
];

/// Optional numbers whose zero is meaningful (Go pointers): kept as sent.
const ZERO_KEPT: &[&str] = &[
    "replicas",
    "parallelism",
    "completions",
    "backoffLimit",
    "backoffLimitPerIndex",
    "maxFailedIndexes",
    "activeDeadlineSeconds",
    "ttlSecondsAfterFinished",
    "startingDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "terminationGracePeriodSeconds",
    "revisionHistoryLimit",
    "gracePeriodSeconds",
    "value",
];

/// Optional booleans whose `false` is a choice.
const FALSE_KEPT: &[&str] = &[
    "suspend",
    "immutable",
    "automountServiceAccountToken",
    "allowVolumeExpansion",
    "enableServiceLinks",
    "allowPrivilegeEscalation",
    "runAsNonRoot",
    "readOnlyRootFilesystem",
    "privileged",
    "hostUsers",
    "publishNotReadyAddresses",
    "ready",
    "serving",
    "terminating",
];

#[derive(Debug)]
enum Type {
    Scalar(&'static str),
    Message(&'static str),
    Map(Box<Type>, Box<Type>),
}

#[derive(Debug)]
struct Field {
    name: &'static str,
    ty: Type,
    repeated: bool,
}

type Schema = HashMap<&'static str, HashMap<u64, Field>>;

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| parse_schema(include_str!("schema.txt")));

fn parse_type(text: &'static str) -> Type {
    if let Some(inner) = text.strip_prefix("map<").and_then(|t| t.strip_suffix('>')) {
        let (key, value) = inner.split_once(',').unwrap_or((inner, "string"));
        return Type::Map(Box::new(parse_type(key)), Box::new(parse_type(value)));
    }
    if text.contains('.') {
        Type::Message(text)
    } else {
        Type::Scalar(text)
    }
}

fn parse_schema(text: &'static str) -> Schema {
    let mut schema = Schema::new();
    for line in text.lines() {
        let mut parts = line.split(' ');
        let Some(message) = parts.next().filter(|m| !m.is_empty()) else {
            continue;
        };
        let fields = parts
            .filter_map(|field| {
                let mut pieces = field.splitn(3, ':');
                let number = pieces.next()?.parse().ok()?;
                let name = pieces.next()?;
                let ty = pieces.next()?;
                let (repeated, ty) = match ty.strip_prefix('*') {
                    Some(ty) => (true, ty),
                    None => (false, ty),
                };
                Some((
                    number,
                    Field {
                        name,
                        ty: parse_type(ty),
                        repeated,
                    },
                ))
            })
            .collect();
        schema.insert(message, fields);
    }
    schema
}

/// The protobuf message of a kind in a group-version: the package is
/// `k8s.io.api.<first label of the group, or core>.<version>`.
fn message_name(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = group
        .split('.')
        .next()
        .filter(|g| !g.is_empty())
        .unwrap_or("core");
    format!("k8s.io.api.{package}.{version}.{kind}")
}

/// Decode a protobuf request body into the JSON object it encodes.
pub fn decode_body(body: &[u8]) -> ApiResult<Value> {
    let bad = |detail: String| {
        ApiError::BadRequest(format!(
            "the request body is not a valid protobuf object: {detail}"
        ))
    };
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("it does not start with the k8s\\0 magic".into()))?;
    let unknown = message(envelope, UNKNOWN, 0).map_err(bad)?;
    if unknown["contentEncoding"]
        .as_str()
        .is_some_and(|e| !e.is_empty())
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "protobuf content encoding {} is not supported",
            unknown["contentEncoding"]
        )));
    }
    let api_version = unknown["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or_default();
    let kind = unknown["typeMeta"]["kind"].as_str().unwrap_or_default();
    if kind.is_empty() || api_version.is_empty() {
        return Err(bad("typeMeta needs apiVersion and kind".into()));
    }
    let name = message_name(api_version, kind);
    if !SCHEMA.contains_key(name.as_str()) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "{kind} in version {api_version:?} cannot be decoded from protobuf; send it as JSON"
        )));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(unknown["raw"].as_str().unwrap_or_default())
        .map_err(|e| bad(e.to_string()))?;
    let mut object = message(&raw, &name, 0).map_err(bad)?;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

/// A protobuf wire value.
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or("truncated varint")?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("truncated field".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u64, Wire<'a>), String> {
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                Wire::Bytes(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok((key >> 3, wire))
    }
}

/// Decode one message of type `name` into a JSON object.
fn message(bytes: &[u8], name: &str, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("nesting too deep".into());
    }
    let fields = SCHEMA
        .get(name)
        .ok_or_else(|| format!("no schema for message {name}"))?;
    let mut out = Map::new();
    let mut reader = Reader { bytes };
    while !reader.bytes.is_empty() {
        let (number, wire) = reader.field()?;
        let Some(field) = fields.get(&number) else {
            continue; // unknown fields are skipped, as protobuf readers do
        };
        match &field.ty {
            Type::Map(key_type, value_type) => {
                let Wire::Bytes(entry) = wire else {
                    return Err(format!(
                        "{}: a map entry must be length-delimited",
                        field.name
                    ));
                };
                let (key, value) = map_entry(entry, key_type, value_type, depth)?;
                let key = match key {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.entry(field.name)
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .expect("maps are objects")
                    .insert(key, value);
            }
            ty if field.repeated => {
                let values = repeated(wire, ty, depth)?;
                out.entry(field.name)
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .expect("lists are arrays")
                    .extend(values);
            }
            ty => {
                let value = single(wire, ty, depth)?;
                out.insert(field.name.to_string(), value);
            }
        }
    }
    for key in INLINE {
        if let Some(Value::Object(inner)) = out.remove(*key) {
            out.extend(inner);
        }
    }
    Ok(special(name, out))
}

fn map_entry(
    bytes: &[u8],
    key_type: &Type,
    value_type: &Type,
    depth: usize,
) -> Result<(Value, Value), String> {
    let mut key = zero(key_type);
    let mut value = zero(value_type);
    let mut reader = Reader { bytes };
    while !reader.bytes.is_empty() {
        match reader.field()? {
            (1, wire) => key = single(wire, key_type, depth)?,
            (2, wire) => value = single(wire, value_type, depth)?,
            _ => {}
        }
    }
    Ok((key, value))
}

fn zero(ty: &Type) -> Value {
    match ty {
        Type::Scalar("string" | "bytes") => json!(""),
        Type::Scalar("bool") => json!(false),
        Type::Scalar(_) => json!(0),
        _ => Value::Null,
    }
}

fn repeated(wire: Wire, ty: &Type, depth: usize) -> Result<Vec<Value>, String> {
    match (wire, ty) {
        // Packed numbers: one length-delimited run of values.
        (Wire::Bytes(bytes), Type::Scalar(s)) if !matches!(*s, "string" | "bytes") => {
            let mut reader = Reader { bytes };
            let mut values = Vec::new();
            while !reader.bytes.is_empty() {
                let wire = match *s {
                    "double" | "fixed64" | "sfixed64" => {
                        Wire::Fixed64(u64::from_le_bytes(reader.take(8)?.try_into().expect("8")))
                    }
                    "float" | "fixed32" | "sfixed32" => {
                        Wire::Fixed32(u32::from_le_bytes(reader.take(4)?.try_into().expect("4")))
                    }
                    _ => Wire::Varint(reader.varint()?),
                };
                values.push(scalar(wire, s)?);
            }
            Ok(values)
        }
        (wire, ty) => Ok(vec![single(wire, ty, depth)?]),
    }
}

fn single(wire: Wire, ty: &Type, depth: usize) -> Result<Value, String> {
    match ty {
        Type::Scalar(s) => scalar(wire, s),
        Type::Message(name) => match wire {
            Wire::Bytes(bytes) => message(bytes, name, depth + 1),
            _ => Err(format!("{name} must be length-delimited")),
        },
        Type::Map(..) => Err("nested map".into()),
    }
}

fn scalar(wire: Wire, ty: &str) -> Result<Value, String> {
    Ok(match (ty, wire) {
        ("string", Wire::Bytes(b)) => {
            json!(std::str::from_utf8(b).map_err(|_| "a string field is not UTF-8".to_string())?)
        }
        ("bytes", Wire::Bytes(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        ("bool", Wire::Varint(v)) => json!(v != 0),
        ("int32", Wire::Varint(v)) => json!(v as i64 as i32),
        ("int64", Wire::Varint(v)) => json!(v as i64),
        ("uint32" | "uint64", Wire::Varint(v)) => json!(v),
        ("sint32" | "sint64", Wire::Varint(v)) => json!((v >> 1) as i64 ^ -((v & 1) as i64)),
        ("double", Wire::Fixed64(v)) => json!(f64::from_bits(v)),
        ("fixed64", Wire::Fixed64(v)) => json!(v),
        ("float", Wire::Fixed32(v)) => json!(f32::from_bits(v)),
        ("fixed32", Wire::Fixed32(v)) => json!(v),
        (ty, _) => return Err(format!("wire type does not match a {ty} field")),
    })
}

/// Messages with their own JSON form; other messages drop zero values.
fn special(name: &str, mut fields: Map<String, Value>) -> Value {
    let take =
        |fields: &mut Map<String, Value>, key: &str| fields.remove(key).unwrap_or(Value::Null);
    match name {
        QUANTITY => take(&mut fields, "string"),
        INT_OR_STRING => match take(&mut fields, "type").as_i64() {
            Some(1) => json!(take(&mut fields, "strVal").as_str().unwrap_or_default()),
            _ => json!(take(&mut fields, "intVal").as_i64().unwrap_or(0)),
        },
        TIME | MICRO_TIME => {
            let seconds = take(&mut fields, "seconds").as_i64().unwrap_or(0);
            let nanos = take(&mut fields, "nanos").as_i64().unwrap_or(0);
            if seconds == 0 && nanos == 0 {
                return Value::Null;
            }
            let Ok(at) = jiff::Timestamp::new(seconds, nanos as i32) else {
                return Value::Null;
            };
            let format = if name == TIME {
                "%Y-%m-%dT%H:%M:%SZ"
            } else {
                "%Y-%m-%dT%H:%M:%S.%6fZ"
            };
            json!(at.strftime(format).to_string())
        }
        DURATION => {
            let nanos = take(&mut fields, "duration").as_i64().unwrap_or(0);
            json!(format!("{}s", nanos as f64 / 1e9))
        }
        RAW_EXTENSION | FIELDS_V1 => {
            let key = if name == RAW_EXTENSION { "raw" } else { "Raw" };
            let raw = take(&mut fields, key);
            base64::engine::general_purpose::STANDARD
                .decode(raw.as_str().unwrap_or_default())
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or(Value::Null)
        }
        _ => {
            fields.retain(|key, value| match value {
                Value::String(s) => !s.is_empty(),
                Value::Bool(b) => *b || FALSE_KEPT.contains(&key.as_str()),
                Value::Number(n) => n.as_f64() != Some(0.0) || ZERO_KEPT.contains(&key.as_str()),
                Value::Null => false,
                _ => true,
            });
            Value::Object(fields)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
