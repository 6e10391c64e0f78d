//! Generated object names, as the API server's `generateName` makes them.

/// Letters and digits that never spell words or look alike (Kubernetes'
/// choice for generated names).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `<base>-<5 random characters>`.
pub fn with_suffix(base: &str) -> String {
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{base}-{suffix}")
}

/// Encode `value` with the same alphabet (for `pod-template-hash`).
pub fn encode(mut value: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(ALPHABET[(value % ALPHABET.len() as u32) as usize]);
        value /= ALPHABET.len() as u32;
        if value == 0 {
            break;
        }
    }
    String::from_utf8(out).expect("alphabet is ASCII")
}

#[cfg(test)]
mod tests {
    #[test]
    fn suffixes_are_five_safe_characters() {
        let name = super::with_suffix("web-abc");
        let suffix = name.strip_prefix("web-abc-").unwrap();
        assert_eq!(suffix.len(), 5);
        assert!(suffix.bytes().all(|b| super::ALPHABET.contains(&b)));
        assert_ne!(super::with_suffix("x"), super::with_suffix("x"));
    }

    #[test]
    fn hashes_encode_deterministically() {
        assert_eq!(super::encode(0), "b");
        assert_eq!(super::encode(123456), super::encode(123456));
        assert_ne!(super::encode(1), super::encode(2));
    }
}
