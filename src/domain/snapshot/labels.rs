//! Readable words for Graph's machine names: property labels (`passwordMinimumLength` reads
//! "Password minimum length"), settings catalog ids without a captured display name, and
//! `@odata.type` names.

/// Single words that read as an acronym or a brand spelling, looked up in lower case.
const SPECIAL_WORDS: &[(&str, &str)] = &[
    ("aad", "AAD"),
    ("apn", "APN"),
    ("api", "API"),
    ("apns", "APNs"),
    ("cc", "CC"),
    ("csp", "CSP"),
    ("dns", "DNS"),
    ("eap", "EAP"),
    ("eas", "EAS"),
    ("fips", "FIPS"),
    ("guid", "GUID"),
    ("http", "HTTP"),
    ("https", "HTTPS"),
    ("id", "ID"),
    ("ids", "IDs"),
    ("ie", "IE"),
    ("imei", "IMEI"),
    ("ios", "iOS"),
    ("ip", "IP"),
    ("ipad", "iPad"),
    ("iphone", "iPhone"),
    ("ipv4", "IPv4"),
    ("ipv6", "IPv6"),
    ("lan", "LAN"),
    ("macos", "macOS"),
    ("mam", "MAM"),
    ("mdm", "MDM"),
    ("nfc", "NFC"),
    ("oma", "OMA"),
    ("os", "OS"),
    ("pfx", "PFX"),
    ("pin", "PIN"),
    ("pki", "PKI"),
    ("scep", "SCEP"),
    ("sim", "SIM"),
    ("smb", "SMB"),
    ("sms", "SMS"),
    ("ssid", "SSID"),
    ("ssl", "SSL"),
    ("sso", "SSO"),
    ("tls", "TLS"),
    ("tpm", "TPM"),
    ("uri", "URI"),
    ("url", "URL"),
    ("urls", "URLs"),
    ("usb", "USB"),
    ("uwp", "UWP"),
    ("vpn", "VPN"),
    ("wifi", "Wi-Fi"),
    ("win32", "Win32"),
    ("xml", "XML"),
];

/// Two camelCase words that read as one name (`wiFi`, `bitLocker`, `iOS` split as `i` + `OS`).
const SPECIAL_PAIRS: &[(&str, &str, &str)] = &[
    ("air", "drop", "AirDrop"),
    ("air", "play", "AirPlay"),
    ("bit", "locker", "BitLocker"),
    ("i", "cloud", "iCloud"),
    ("i", "message", "iMessage"),
    ("i", "os", "iOS"),
    ("i", "tunes", "iTunes"),
    ("mac", "os", "macOS"),
    ("one", "drive", "OneDrive"),
    ("smart", "screen", "SmartScreen"),
    ("wi", "fi", "Wi-Fi"),
];

/// Splits a machine name into words: at lower→upper case changes, before the last capital of an
/// acronym run (`HTTPSProxy` → `HTTPS`, `Proxy`), and at `_`, `.`, `-`, `/`, `\` and spaces.
fn words(raw: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = raw.as_bytes();
    let mut start = None::<usize>;
    for (index, &byte) in bytes.iter().enumerate() {
        if matches!(
            byte,
            b'_' | b'.' | b'-' | b' ' | b'/' | b'\\' | b'#' | b'@' | b':'
        ) {
            if let Some(from) = start.take() {
                out.push(&raw[from..index]);
            }
            continue;
        }
        let Some(from) = start else {
            start = Some(index);
            continue;
        };
        let previous = bytes[index - 1];
        let next = bytes.get(index + 1).copied();
        let boundary = byte.is_ascii_uppercase()
            && (previous.is_ascii_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase())));
        if boundary && index > from {
            out.push(&raw[from..index]);
            start = Some(index);
        }
    }
    if let Some(from) = start {
        out.push(&raw[from..]);
    }
    out
}

/// One word as it reads inside a sentence: acronyms and brands keep their spelling, a trailing
/// number after a long word stands apart (`windows10` → `windows 10`), the rest is lower case.
fn word_text(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    if let Some((_, special)) = SPECIAL_WORDS.iter().find(|(w, _)| *w == lower) {
        return (*special).to_owned();
    }
    if word.len() >= 2
        && word
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return word.to_owned();
    }
    let letters = lower.trim_end_matches(|c: char| c.is_ascii_digit());
    if letters.len() >= 4 && letters.len() < lower.len() {
        return format!("{letters} {}", &lower[letters.len()..]);
    }
    // Non-ASCII words keep their own case.
    if !word.is_ascii() {
        return word.to_owned();
    }
    lower
}

/// A readable label for a camelCase (or snake_case) machine name:
/// `passwordMinimumLength` → "Password minimum length", `osMinimumVersion` → "OS minimum version",
/// `wiFiSecurityType` → "Wi-Fi security type". The empty name reads "(unnamed)".
pub fn humanize(raw: &str) -> String {
    if raw == "@odata.type" {
        return "Type".to_owned();
    }
    let split = words(raw);
    let mut parts: Vec<String> = Vec::with_capacity(split.len());
    let mut index = 0;
    while index < split.len() {
        let word = split[index];
        if let Some(next) = split.get(index + 1) {
            let pair = SPECIAL_PAIRS
                .iter()
                .find(|(a, b, _)| word.eq_ignore_ascii_case(a) && next.eq_ignore_ascii_case(b));
            if let Some((_, _, joined)) = pair {
                parts.push((*joined).to_owned());
                index += 2;
                continue;
            }
        }
        parts.push(word_text(word));
        index += 1;
    }
    let Some(first) = parts.first_mut() else {
        return "(unnamed)".to_owned();
    };
    // Capitalise the first word unless it keeps a special spelling (iOS, macOS).
    let keeps_case = first.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && first.chars().skip(1).any(|c| c.is_ascii_uppercase());
    if !keeps_case {
        let mut chars = first.chars();
        if let Some(head) = chars.next() {
            *first = head.to_uppercase().chain(chars).collect();
        }
    }
    parts.join(" ")
}

/// Prefixes of settings catalog definition ids that say nothing to a reader.
const SETTING_ID_PREFIXES: &[&str] = &[
    "device_vendor_msft_policy_config_",
    "user_vendor_msft_policy_config_",
    "device_vendor_msft_",
    "user_vendor_msft_",
    "vendor_msft_",
    "com.apple.",
    "com.microsoft.",
];

/// A readable name for a settings catalog definition id when no display name was captured: the
/// part after its parent's id (children repeat it), without the vendor prefix.
/// `device_vendor_msft_policy_config_defender_allowarchivescanning` → "Defender allowarchivescanning".
pub fn setting_id_label(id: &str, parent: Option<&str>) -> String {
    let mut rest = id;
    if let Some(parent) = parent {
        if let Some(tail) = id
            .strip_prefix(parent)
            .and_then(|t| t.strip_prefix('_'))
            .filter(|t| !t.is_empty())
        {
            rest = tail;
        }
    }
    if rest.len() == id.len() {
        for prefix in SETTING_ID_PREFIXES {
            if let Some(tail) = id.strip_prefix(prefix).filter(|t| !t.is_empty()) {
                rest = tail;
                break;
            }
        }
    }
    humanize(rest)
}

/// A readable name for a choice option without a captured display name: option ids repeat the
/// setting's id (`…_allowarchivescanning_1`), so the part after it is what differs.
pub fn choice_label(value: &str, setting_id: &str) -> String {
    match value
        .strip_prefix(setting_id)
        .and_then(|t| t.strip_prefix('_'))
        .filter(|t| !t.is_empty())
    {
        Some(tail) => humanize(tail),
        None => value.to_owned(),
    }
}

/// `#microsoft.graph.windows10GeneralConfiguration` (with or without `#`) without its namespace.
pub fn odata_type_name(raw: &str) -> &str {
    let raw = raw.trim_start_matches('#');
    raw.strip_prefix("microsoft.graph.").unwrap_or(raw)
}

/// A readable name for an `@odata.type`: "Windows 10 general configuration".
pub fn odata_type_label(raw: &str) -> String {
    humanize(odata_type_name(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_reads_as_a_sentence() {
        assert_eq!(humanize("passwordMinimumLength"), "Password minimum length");
        assert_eq!(humanize("osMinimumVersion"), "OS minimum version");
        assert_eq!(humanize("roleScopeTagIds"), "Role scope tag IDs");
        assert_eq!(
            humanize("storageRequireEncryption"),
            "Storage require encryption"
        );
        assert_eq!(humanize("wiFiSecurityType"), "Wi-Fi security type");
        assert_eq!(
            humanize("bitLockerEncryptDevice"),
            "BitLocker encrypt device"
        );
        assert_eq!(humanize("iosDeviceFeatures"), "iOS device features");
        assert_eq!(humanize("HTTPSProxyURL"), "HTTPS proxy URL");
        assert_eq!(humanize("enableVPNOnDemand"), "Enable VPN on demand");
        assert_eq!(
            humanize("windows10EndpointProtection"),
            "Windows 10 endpoint protection"
        );
        assert_eq!(humanize("macOSCompliancePolicy"), "macOS compliance policy");
        assert_eq!(humanize("@odata.type"), "Type");
        assert_eq!(humanize("ipv4Address"), "IPv4 address");
        assert_eq!(humanize(""), "(unnamed)");
        assert_eq!(humanize("__"), "(unnamed)");
        assert_eq!(humanize("größe"), "Größe");
    }

    #[test]
    fn setting_ids_lose_their_prefixes() {
        assert_eq!(
            setting_id_label(
                "device_vendor_msft_policy_config_defender_allowarchivescanning",
                None
            ),
            "Defender allowarchivescanning"
        );
        assert_eq!(
            setting_id_label(
                "device_vendor_msft_bitlocker_requiredeviceencryption_systemdrives",
                Some("device_vendor_msft_bitlocker_requiredeviceencryption")
            ),
            "Systemdrives"
        );
        assert_eq!(setting_id_label("plain", None), "Plain");
        assert_eq!(
            choice_label("device_vendor_x_1", "device_vendor_x"),
            "1".to_owned()
        );
        assert_eq!(
            choice_label("other_value", "device_vendor_x"),
            "other_value"
        );
    }

    #[test]
    fn odata_types_read_without_namespace() {
        assert_eq!(
            odata_type_label("#microsoft.graph.windows10GeneralConfiguration"),
            "Windows 10 general configuration"
        );
        assert_eq!(
            odata_type_name("microsoft.graph.omaSettingString"),
            "omaSettingString"
        );
    }
}
