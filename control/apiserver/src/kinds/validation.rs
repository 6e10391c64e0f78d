//! Name and metadata checks shared by every kind, following Kubernetes'
//! rules (DNS-1123 labels and subdomains, qualified label keys).

use serde_json::Value;

use crate::error::Cause;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= DNS1123_LABEL_MAX
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= DNS1123_SUBDOMAIN_MAX && s.split('.').all(is_dns1123_label)
}

/// Check a DNS-1123 label (namespace names, container names).
pub fn dns_label(field: &str, value: &str) -> Option<Cause> {
    (!is_dns1123_label(value)).then(|| {
        Cause::invalid(
            field,
            &Value::String(value.into()),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
             and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc')",
        )
    })
}

/// Check a DNS-1035 label (Service names): a DNS-1123 label starting with a letter.
pub fn dns1035_label(field: &str, value: &str) -> Option<Cause> {
    (!is_dns1123_label(value) || !value.starts_with(|c: char| c.is_ascii_lowercase())).then(|| {
        Cause::invalid(
            field,
            &Value::String(value.into()),
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start \
             with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  \
             or 'abc-123')",
        )
    })
}

/// Check a DNS-1123 subdomain (most object names).
pub fn dns_subdomain(field: &str, value: &str) -> Option<Cause> {
    (!is_dns1123_subdomain(value)).then(|| {
        Cause::invalid(
            field,
            &Value::String(value.into()),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
             and must start and end with an alphanumeric character (e.g. 'example.com')",
        )
    })
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Validate `metadata`: name (checked by `name_check`), labels and annotations keys.
pub fn metadata(object: &Value, name_check: fn(&str, &str) -> Option<Cause>) -> Vec<Cause> {
    let meta = &object["metadata"];
    let mut causes = Vec::new();
    match meta["name"].as_str() {
        Some(name) if !name.is_empty() => causes.extend(name_check("metadata.name", name)),
        _ => causes.push(Cause::required("metadata.name")),
    }
    if let Some(labels) = meta["labels"].as_object() {
        for (key, value) in labels {
            if !is_qualified_name(key) {
                causes.push(Cause::invalid(
                    "metadata.labels",
                    &Value::String(key.clone()),
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must \
                     start and end with an alphanumeric character",
                ));
            }
            if !is_label_value(value.as_str().unwrap_or_default()) {
                causes.push(Cause::invalid(
                    "metadata.labels",
                    value,
                    "a valid label must be an empty string or consist of alphanumeric characters, \
                     '-', '_' or '.', and must start and end with an alphanumeric character",
                ));
            }
        }
    }
    if let Some(annotations) = meta["annotations"].as_object() {
        for key in annotations.keys().filter(|k| !is_qualified_name(k)) {
            causes.push(Cause::invalid(
                "metadata.annotations",
                &Value::String(key.clone()),
                "name part must consist of alphanumeric characters, '-', '_' or '.'",
            ));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns1123_label("web-1"));
        assert!(!is_dns1123_label("Web"));
        assert!(!is_dns1123_label("-a"));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
    }

    #[test]
    fn label_keys() {
        assert!(is_qualified_name("app.kubernetes.io/name"));
        assert!(is_qualified_name("tier"));
        assert!(!is_qualified_name("bad key"));
        assert!(is_label_value(""));
        assert!(!is_label_value("-x"));
    }
}
