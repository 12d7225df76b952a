//! Reading the application permissions out of an app-only access token: the `roles` claim of
//! the JWT's payload (base64url JSON).
//!
//! The claims are decoded, not verified. That is sound here: the token came over TLS from the
//! token endpoint this process itself called, and it is only read to tell an admin what the
//! app may do; nothing is granted or refused because of it (Graph enforces the permissions).

use serde_json::Value;

/// Longer than any Entra ID access token by far; a longer "token" is not read at all.
const MAX_TOKEN_CHARS: usize = 64 * 1024;

/// Why a token's claims could not be read. No variant carries any part of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("the token is not a JWT (three base64url parts separated by dots)")]
    NotJwt,
    #[error("the token's claims are not base64url")]
    NotBase64,
    #[error("the token's claims are not a JSON object")]
    NotJson,
    #[error("the token's roles claim is not a list of names")]
    BadRoles,
}

/// The `roles` claim of a JWT access token: the application permissions granted to the app,
/// sorted and without repeats. A token without the claim grants none: Entra ID leaves it out,
/// rather than sending an empty list, when no permission has been consented to.
pub fn roles(token: &str) -> Result<Vec<String>, ClaimsError> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(ClaimsError::NotJwt);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ClaimsError::NotJwt);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(ClaimsError::NotJwt);
    }
    let bytes = decode_base64url(payload).ok_or(ClaimsError::NotBase64)?;
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(ClaimsError::NotJson);
    };
    let mut roles = match claims.get("roles") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| value.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(ClaimsError::BadRoles)?,
        Some(_) => return Err(ClaimsError::BadRoles),
    };
    roles.sort_unstable();
    roles.dedup();
    Ok(roles)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding (RFC 7515 §2), as JWT parts are written.
pub fn encode_base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from_be_bytes([0, group[0], group[1], group[2]]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Decodes base64url, with or without trailing `=` padding; `None` for anything else.
pub fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::graph::snapshot::tests::any_json;
    use proptest::prelude::*;

    /// What `roles` answers for a readable payload whose `roles` claim is `claim`: no claim or
    /// null grants nothing, a list of names is read sorted and unique, anything else is refused.
    fn expected_roles(claim: Option<&Value>) -> Result<Vec<String>, ClaimsError> {
        let names = match claim {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(values)) => values
                .iter()
                .map(|value| match value {
                    Value::String(name) => Ok(name.clone()),
                    _ => Err(ClaimsError::BadRoles),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ClaimsError::BadRoles),
        };
        Ok(names
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect())
    }

    /// The names of a `roles` claim as Entra ID writes it, as JSON values.
    fn names() -> impl Strategy<Value = Vec<Value>> {
        proptest::collection::vec(any::<String>().prop_map(Value::String), 0..6)
    }

    fn token_with(claims: &str) -> String {
        format!(
            "{}.{}.{}",
            encode_base64url(br#"{"typ":"JWT","alg":"RS256"}"#),
            encode_base64url(claims.as_bytes()),
            encode_base64url(b"signature")
        )
    }

    #[test]
    fn reads_the_roles_claim_sorted_and_unique() {
        let token = token_with(
            r#"{"aud":"https://graph.microsoft.com","roles":["Group.Read.All","DeviceManagementConfiguration.Read.All","Group.Read.All"]}"#,
        );
        assert_eq!(
            roles(&token).unwrap(),
            ["DeviceManagementConfiguration.Read.All", "Group.Read.All"]
        );
    }

    #[test]
    fn a_token_without_roles_grants_nothing() {
        assert_eq!(
            roles(&token_with(r#"{"aud":"x"}"#)).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            roles(&token_with(r#"{"roles":null}"#)).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn what_is_not_a_readable_jwt_says_why() {
        assert_eq!(roles(""), Err(ClaimsError::NotJwt));
        assert_eq!(roles("opaque-token"), Err(ClaimsError::NotJwt));
        assert_eq!(roles("a.b.c.d"), Err(ClaimsError::NotJwt));
        assert_eq!(roles(".e30.x"), Err(ClaimsError::NotJwt));
        assert_eq!(roles("eyJ.@@@.x"), Err(ClaimsError::NotBase64));
        assert_eq!(roles(&token_with("[1,2]")), Err(ClaimsError::NotJson));
        assert_eq!(roles(&token_with("not json")), Err(ClaimsError::NotJson));
        assert_eq!(
            roles(&token_with(r#"{"roles":"Group.Read.All"}"#)),
            Err(ClaimsError::BadRoles)
        );
        assert_eq!(
            roles(&token_with(r#"{"roles":["Group.Read.All",7]}"#)),
            Err(ClaimsError::BadRoles)
        );
        let huge = format!("a.{}.c", "A".repeat(MAX_TOKEN_CHARS));
        assert_eq!(roles(&huge), Err(ClaimsError::NotJwt));
    }

    #[test]
    fn base64url_matches_known_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode_base64url(plain.as_bytes()), encoded);
            assert_eq!(decode_base64url(encoded).unwrap(), plain.as_bytes());
        }
        // The two characters base64url replaces, and padding is tolerated.
        assert_eq!(encode_base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode_base64url("-_8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode_base64url("+/8"), None);
        assert_eq!(decode_base64url("Zm9vY"), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_any_input(raw in any::<String>()) {
            let _ = roles(&raw);
        }

        #[test]
        fn never_panics_on_jwt_shaped_input(
            header in "[A-Za-z0-9_=-]{0,12}",
            payload in "[A-Za-z0-9_=+/.-]{0,64}",
            signature in "[A-Za-z0-9_-]{0,12}",
        ) {
            let _ = roles(&format!("{header}.{payload}.{signature}"));
        }

        #[test]
        fn never_panics_on_any_payload_text(claims in any::<String>()) {
            let _ = roles(&token_with(&claims));
        }

        /// Any claims object, with a `roles` claim of any JSON (or none): read when it is
        /// absent, null or a list of names, refused as `BadRoles` otherwise, and a payload nested
        /// deeper than serde_json reads is no JSON at all.
        #[test]
        fn roles_are_read_exactly_when_they_are_a_list_of_names(
            others in proptest::collection::btree_map(any::<String>(), any_json(), 0..4),
            claim in proptest::option::of(prop_oneof![
                Just(Value::Null),
                any_json(),
                names().prop_map(Value::Array),
                // A list of names with one value of any kind among them.
                (names(), any_json(), any::<prop::sample::Index>()).prop_map(
                    |(mut values, odd, at)| {
                        values.insert(at.index(values.len() + 1), odd);
                        Value::Array(values)
                    }
                ),
            ]),
        ) {
            let mut claims: serde_json::Map<String, Value> = others.into_iter().collect();
            match claim {
                Some(claim) => claims.insert("roles".to_owned(), claim),
                None => claims.remove("roles"),
            };
            let text = Value::Object(claims.clone()).to_string();
            let token = token_with(&text);
            let expected = if token.len() > MAX_TOKEN_CHARS {
                Err(ClaimsError::NotJwt)
            } else if serde_json::from_str::<Value>(&text).is_err() {
                Err(ClaimsError::NotJson)
            } else {
                expected_roles(claims.get("roles"))
            };
            prop_assert_eq!(roles(&token), expected);
        }

        #[test]
        fn base64url_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let encoded = encode_base64url(&bytes);
            prop_assert!(!encoded.contains(['+', '/', '=']));
            prop_assert_eq!(decode_base64url(&encoded), Some(bytes));
        }

        #[test]
        fn any_role_list_reads_back(names in proptest::collection::vec(any::<String>(), 0..8)) {
            let claims = serde_json::json!({ "roles": names }).to_string();
            let mut expected = names.clone();
            expected.sort_unstable();
            expected.dedup();
            prop_assert_eq!(roles(&token_with(&claims)), Ok(expected));
        }
    }
}
