//! Tenants as the browser sees them, and the external (Entra ID) tenant id that names them in URLs.

use serde::{Deserialize, Serialize};

use super::text::canonical_name;
use super::AppError;

/// A Microsoft Entra tenant id: a GUID, stored and compared in lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TenantExternalId(String);

impl TenantExternalId {
    /// Accepts `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits, any case).
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let raw = raw.trim();
        let groups: Vec<&str> = raw.split('-').collect();
        let lengths_ok = groups.len() == 5 && groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
        if lengths_ok
            && groups
                .iter()
                .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
        {
            Ok(Self(raw.to_ascii_lowercase()))
        } else {
            Err(AppError::NotFound("No tenant has this id.".into()))
        }
    }

    /// The canonical lower-case text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant in lists and the page header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct TenantSummary {
    /// The external GUID, used in URLs.
    pub external_id: String,
    pub display_name: String,
}

/// Longest accepted tenant display name, in characters.
pub const TENANT_NAME_MAX_CHARS: usize = 100;
/// Longest accepted app registration client id, in characters.
pub const CLIENT_ID_MAX_CHARS: usize = 100;
/// Longest accepted client secret, in characters (Entra ID's are 40).
pub const CLIENT_SECRET_MAX_CHARS: usize = 1_000;
/// Days before a client secret's expiry from which the app warns.
pub const SECRET_EXPIRY_WARNING_DAYS: i64 = 30;

/// A tenant to connect, parsed from the form or the CLI: a GUID, a bounded display name and an
/// app registration client id (no spaces or control characters, bounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTenant {
    pub external_id: TenantExternalId,
    pub display_name: String,
    pub client_id: String,
}

impl NewTenant {
    /// Validates the raw fields; the error names the field that is wrong.
    pub fn parse(tenant: &str, display_name: &str, client_id: &str) -> Result<Self, AppError> {
        Ok(Self {
            external_id: parse_tenant_field(tenant)?,
            display_name: parse_tenant_name(display_name)?,
            client_id: parse_client_id(client_id)?,
        })
    }
}

/// The tenant id as the Connect form's `tenant` field holds it.
pub fn parse_tenant_field(raw: &str) -> Result<TenantExternalId, AppError> {
    TenantExternalId::parse(raw).map_err(|_| {
        AppError::invalid(
            "tenant",
            "Enter the tenant id, a GUID like 6f1c2a3b-0000-4000-8000-00000000c0de.",
        )
    })
}

/// Whether `c` is a format character (Unicode's general category Cf, as of Unicode 16): it
/// shows as nothing or steers the text around it without being seen (zero-width spaces and
/// joiners, bidi marks, embeddings, overrides and isolates, the word joiner, the byte order
/// mark, the soft hyphen, tag characters). A name holding one looks like another name, or
/// reads backwards, so names refuse them. Listed by hand: the standard library has no
/// general category.
pub fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{600}'..='\u{605}'
            | '\u{61C}'
            | '\u{6DD}'
            | '\u{70F}'
            | '\u{890}'..='\u{891}'
            | '\u{8E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Whether `c` shows as nothing though it is neither a format character nor white space: the
/// combining grapheme joiner, Hangul and Khmer fillers, the braille blank.
fn is_blank_letter(c: char) -> bool {
    matches!(
        c,
        '\u{34F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FFA0}'
    )
}

/// Whether `name` holds a character a reader cannot see, so that it looks like another name or
/// reads backwards: a control character, a format character ([`is_format_char`]) or a blank
/// letter. Two format characters are part of some names' spelling, and pass there: a
/// zero-width joiner or non-joiner between two visible characters that are not ASCII (emoji
/// sequences such as a family, Persian's non-joiner, Indic conjuncts; between Latin letters it
/// only hides), and the tag characters that spell a subdivision flag right after the black
/// flag (🏴 + tags + the cancel tag).
pub fn hides_characters(name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    let shown_non_ascii = |at: Option<usize>| {
        at.and_then(|at| chars.get(at)).is_some_and(|&c| {
            !c.is_ascii() && !c.is_whitespace() && !is_format_char(c) && !is_blank_letter(c)
        })
    };
    let is_tag = |c: char| ('\u{E0020}'..='\u{E007F}').contains(&c);
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        if c == '\u{1F3F4}' {
            // A flag's tags: letters (E0020–E007E) ended by the cancel tag (E007F).
            let tags = chars[at + 1..].iter().take_while(|&&c| is_tag(c)).count();
            if tags > 1 && chars[at + tags] == '\u{E007F}' {
                at += tags + 1;
                continue;
            }
        }
        let hidden = match c {
            '\u{200C}' | '\u{200D}' => {
                !(shown_non_ascii(at.checked_sub(1)) && shown_non_ascii(Some(at + 1)))
            }
            c => c.is_control() || is_format_char(c) || is_blank_letter(c),
        };
        if hidden {
            return true;
        }
        at += 1;
    }
    false
}

/// A tenant's display name: non-empty, bounded, no character a reader cannot see
/// ([`hides_characters`]), and in its canonical spelling ([`canonical_name`]): the restore
/// wizard asks its owner to type it as the page shows it, one space where it holds several.
pub fn parse_tenant_name(raw: &str) -> Result<String, AppError> {
    let display_name = raw.trim();
    if display_name.is_empty() {
        return Err(AppError::invalid("name", "Enter a display name."));
    }
    if hides_characters(display_name) {
        return Err(AppError::invalid(
            "name",
            "The name cannot contain control characters or invisible formatting characters.",
        ));
    }
    let display_name = canonical_name(display_name);
    if display_name.chars().count() > TENANT_NAME_MAX_CHARS {
        return Err(AppError::invalid(
            "name",
            format!("The name is too long: at most {TENANT_NAME_MAX_CHARS} characters."),
        ));
    }
    Ok(display_name)
}

/// A client secret as typed: non-empty once trimmed, bounded, no control characters.
pub fn check_client_secret(raw: &str) -> Result<(), AppError> {
    let raw = raw.trim();
    if raw.is_empty()
        || raw.chars().count() > CLIENT_SECRET_MAX_CHARS
        || raw.chars().any(char::is_control)
    {
        return Err(AppError::invalid(
            "secret",
            format!("Enter the client secret (at most {CLIENT_SECRET_MAX_CHARS} characters)."),
        ));
    }
    Ok(())
}

/// An app registration's client id: non-empty, bounded, printable ASCII without spaces.
pub fn parse_client_id(raw: &str) -> Result<String, AppError> {
    let raw = raw.trim();
    if raw.is_empty()
        || raw.len() > CLIENT_ID_MAX_CHARS
        || !raw.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(AppError::invalid(
            "client_id",
            "Enter the app registration's client id (no spaces).",
        ));
    }
    Ok(raw.to_owned())
}

/// A calendar day (`YYYY-MM-DD`), as a client secret's expiry is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Day(pub time::Date);

impl Day {
    /// Parses `YYYY-MM-DD` (what an `<input type="date">` sends). Read by hand rather than with
    /// `time`'s format descriptions: the browser checks this field too, and their parser would
    /// add its weight to the bundle.
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let invalid = || AppError::invalid("expires_on", "Enter a date as YYYY-MM-DD.");
        let number = |text: &str, digits: usize| {
            (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse::<u16>().ok())
                .flatten()
        };
        let mut parts = raw.trim().split('-');
        let (Some(year), Some(month), Some(day), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let (Some(year), Some(month), Some(day)) =
            (number(year, 4), number(month, 2), number(day, 2))
        else {
            return Err(invalid());
        };
        let month = u8::try_from(month)
            .ok()
            .and_then(|m| time::Month::try_from(m).ok())
            .ok_or_else(invalid)?;
        let day = u8::try_from(day).map_err(|_| invalid())?;
        time::Date::from_calendar_date(i32::from(year), month, day)
            .map(Self)
            .map_err(|_| invalid())
    }

    /// The day of a timestamp, in UTC.
    pub fn of(at: super::Timestamp) -> Option<Self> {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.millis()) * 1_000_000)
            .ok()
            .map(|t| Self(t.date()))
    }

    /// Whole days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Day) -> i64 {
        (later.0 - self.0).whole_days()
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (year, month, day) = (self.0.year(), u8::from(self.0.month()), self.0.day());
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

/// Where a tenant's client secret lives, as its settings page says it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretSource {
    /// Entered in the app or the CLI and stored encrypted, on this day.
    Encrypted { set_on: Option<Day> },
    /// Read from this environment variable.
    Environment { name: String },
    /// The demo simulator's secret.
    Demo,
    /// None configured.
    Missing,
}

impl SecretSource {
    /// The secret as the settings page describes it (never the secret itself).
    pub fn describe(&self) -> String {
        match self {
            Self::Encrypted { set_on: Some(day) } => format!("Stored encrypted, set on {day}"),
            Self::Encrypted { set_on: None } => "Stored encrypted".to_owned(),
            Self::Environment { name } => format!("Read from the environment variable {name}"),
            Self::Demo => {
                "The demo simulator's own (the demo draws a new one at every start)".to_owned()
            }
            Self::Missing => "None yet".to_owned(),
        }
    }
}

/// Why a client secret cannot be entered in the app: the server has no key to encrypt it with.
pub const NO_SECRET_KEY: &str = "Client secrets cannot be stored: the server has no secret key \
                                 (--secret-key-file or TENANTATLAS_SECRET_KEY_FILE).";

/// A tenant's connection as its owner sees it on the settings page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    pub tenant: TenantSummary,
    pub client_id: Option<String>,
    pub secret: SecretSource,
    /// When the client secret expires, as its owner entered it.
    pub secret_expires_on: Option<Day>,
    /// Days left until that expiry, when it is within [`SECRET_EXPIRY_WARNING_DAYS`] (or past).
    pub expiry_warning_days: Option<i64>,
    /// A disconnected tenant keeps its data and starts no run.
    pub disconnected: bool,
    /// Whether a secret can be entered here: the server has a secret key.
    pub can_store_secrets: bool,
}

/// What every member of a tenant is told about its connection, in a banner above its pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TenantStatus {
    /// A disconnected tenant keeps its data and starts no run.
    pub disconnected: bool,
    /// Days left until the client secret expires, when that is within
    /// [`SECRET_EXPIRY_WARNING_DAYS`] (negative once it has expired).
    pub expiry_warning_days: Option<i64>,
}

/// The warning a secret expiring on `expires_on` deserves on `today`: the days left, when they
/// are [`SECRET_EXPIRY_WARNING_DAYS`] or fewer (negative once past).
pub fn expiry_warning(expires_on: Option<Day>, today: Option<Day>) -> Option<i64> {
    let left = today?.days_until(expires_on?);
    (left <= SECRET_EXPIRY_WARNING_DAYS).then_some(left)
}

/// The expiry warning in words: "expires in 12 days", "expires today", "expired 3 days ago".
pub fn expiry_words(days_left: i64) -> String {
    match days_left {
        0 => "expires today".to_owned(),
        1 => "expires tomorrow".to_owned(),
        -1 => "expired yesterday".to_owned(),
        left if left > 0 => format!("expires in {left} days"),
        left => format!("expired {} days ago", -left),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_guids_case_insensitively() {
        let id = TenantExternalId::parse(" 6F1C2A3B-0000-4000-8000-00000000C0DE ").unwrap();
        assert_eq!(id.as_str(), "6f1c2a3b-0000-4000-8000-00000000c0de");
    }

    #[test]
    fn new_tenants_are_bounded_and_name_the_wrong_field() {
        let ok = NewTenant::parse(
            " 6F1C2A3B-0000-4000-8000-00000000C0DE ",
            " Contoso ",
            "app-1",
        )
        .unwrap();
        assert_eq!(
            ok.external_id.as_str(),
            "6f1c2a3b-0000-4000-8000-00000000c0de"
        );
        assert_eq!(ok.display_name, "Contoso");
        let guid = "6f1c2a3b-0000-4000-8000-00000000c0de";
        let long_name = "n".repeat(TENANT_NAME_MAX_CHARS + 1);
        let long_id = "c".repeat(CLIENT_ID_MAX_CHARS + 1);
        for (tenant, name, client, field) in [
            ("contoso", "C", "a", "tenant"),
            (guid, "", "a", "name"),
            (guid, "a\u{7}b", "a", "name"),
            (guid, "Contoso\u{200B}", "a", "name"),
            (guid, "\u{202E}osotnoC", "a", "name"),
            (guid, "Con\u{2067}toso\u{2069}", "a", "name"),
            (guid, "\u{FEFF}Contoso", "a", "name"),
            (guid, long_name.as_str(), "a", "name"),
            (guid, "C", "", "client_id"),
            (guid, "C", "a b", "client_id"),
            (guid, "C", long_id.as_str(), "client_id"),
        ] {
            let error = NewTenant::parse(tenant, name, client).unwrap_err();
            assert!(
                error.field_message(field).is_some(),
                "{tenant} {name} {client}: {error:?}"
            );
        }
    }

    #[test]
    fn tenant_names_are_stored_as_the_page_shows_them() {
        for (raw, stored) in [
            ("Contoso  Ltd", "Contoso Ltd"),
            ("Contoso\u{A0}Ltd", "Contoso Ltd"),
            (" Contoso \u{202F}  Ltd ", "Contoso Ltd"),
            ("Cafe\u{301}", "Caf\u{E9}"),
        ] {
            assert_eq!(parse_tenant_name(raw).unwrap(), stored, "{raw:?}");
        }
        // Control characters stay refused, inside as at the ends' trim.
        for bad in ["Contoso\tLtd", "Contoso\nLtd", "Contoso\u{85}Ltd"] {
            assert!(parse_tenant_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn format_characters_are_the_invisible_ones() {
        for hidden in [
            '\u{AD}',
            '\u{61C}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{202E}',
            '\u{2060}',
            '\u{2064}',
            '\u{2066}',
            '\u{2069}',
            '\u{FEFF}',
            '\u{E0001}',
            '\u{E007F}',
        ] {
            assert!(is_format_char(hidden), "{:X}", hidden as u32);
        }
        for shown in [
            'a', 'é', 'İ', ' ', '\u{301}', '\u{2013}', '\u{2065}', '✓', 'Ж',
        ] {
            assert!(!is_format_char(shown), "{:X}", shown as u32);
        }
    }

    #[test]
    fn names_that_hide_characters_are_told_from_names_that_spell_with_them() {
        for hidden in [
            "Base\u{200D}line",
            "Base\u{200C}line",
            "\u{200D}👩",
            "👩\u{200D}",
            "Baseline\u{3164}",
            "Base\u{34F}line",
            "Baseline\u{E0041}",
            "🏴\u{E0067}\u{E0062}",
            "\u{E0067}\u{E0062}\u{E007F}",
            "bell\u{7}",
        ] {
            assert!(hides_characters(hidden), "{hidden:?}");
        }
        for spelled in [
            "Family 👨\u{200D}👩\u{200D}👧",
            "❤\u{FE0F}\u{200D}🔥 team",
            "گزارش\u{200C}ها",
            "क्\u{200D}ष",
            "Scotland 🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F} office",
            "Café Ünïcode – 2026 ✓",
        ] {
            assert!(!hides_characters(spelled), "{spelled:?}");
            assert!(parse_tenant_name(spelled).is_ok(), "{spelled:?}");
        }
    }

    #[test]
    fn days_parse_print_and_count() {
        let day = Day::parse("2026-12-01").unwrap();
        assert_eq!(day.to_string(), "2026-12-01");
        assert_eq!(day.days_until(Day::parse("2026-12-31").unwrap()), 30);
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "2026-1-01",
            "26-01-01",
            "2026-01-01-01",
            "+026-01-01",
            "",
        ] {
            assert!(Day::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Day::parse(" 2028-02-29 ").unwrap().to_string(),
            "2028-02-29"
        );
        assert_eq!(
            Day::of(crate::domain::Timestamp(1_795_712_245_000))
                .unwrap()
                .to_string(),
            "2026-11-26"
        );
    }

    #[test]
    fn the_warning_starts_thirty_days_before_expiry() {
        let day = |raw| Day::parse(raw).ok();
        let today = day("2026-11-01");
        assert_eq!(expiry_warning(day("2026-12-01"), today), Some(30));
        assert_eq!(expiry_warning(day("2026-12-02"), today), None);
        assert_eq!(expiry_warning(day("2026-10-30"), today), Some(-2));
        assert_eq!(expiry_warning(None, today), None);
        assert_eq!(expiry_words(30), "expires in 30 days");
        assert_eq!(expiry_words(0), "expires today");
        assert_eq!(expiry_words(-2), "expired 2 days ago");
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [
            "",
            "contoso",
            "6f1c2a3b00004000800000000000c0de",
            "6f1c2a3b-0000-4000-8000-00000000c0dg",
        ] {
            assert!(
                TenantExternalId::parse(bad).is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}
