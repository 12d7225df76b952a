//! The one sanitizer for failure texts, notifications, audit details and log lines: no token,
//! password or secret may reach the database, a notification or a log.
//!
//! It is built against families of secrets, not examples. Each family is found by a small
//! hand-written scanner over the text (no regular expressions), every scanner reports the spans it
//! considers secret, and each merged span is replaced by one [`REDACTED`]:
//!
//! 1. **URL userinfo**, any scheme: `scheme://user:secret@host` keeps the user and the host;
//!    `scheme://secret@host` (a token as the user) loses the whole userinfo; the same inside a
//!    query string, URL-encoded (`https%3A%2F%2Fuser%3Asecret%40host`).
//! 2. **Secret-bearing names, in any syntax**: `name: value`, `name=value`, `name = value`,
//!    `"name":"value"`, `'name': 'value'`, escaped JSON (`\"name\":\"value\"`), URL-encoded
//!    (`name%3Dvalue`, `%22name%22%3A%22value%22`), query strings, XML (`<name>value</name>`),
//!    Ruby's and Perl's hashes (`"name" => "value"`, `:name => 'value'`) and JSON arrays of
//!    values. A name is split into word parts at camelCase boundaries and at `-`, `_`, `.` and
//!    spaces, compared case-insensitively and without the digits a part ends with (a part that
//!    is only a number is left out): `password2`, `pwd_2` and Azure's `key1` are secret like
//!    `password`, `pwd` and `key`, `keySize_2` is harmless like `keySize`. It names a secret when
//!    any part ends with `secret(s)`, or when its last part, or its last two or three parts
//!    written together, is one of [`SECRET_LAST_PARTS`] (`certificatePassword`, `access_token`,
//!    `x-api-key`, `AccountKey`, `Session-Id`, `connection_string`), or when its last part,
//!    written as one word, ends with one of [`SECRET_SUFFIXES`] (`accesstoken`, `CLIENTSECRET`,
//!    `storageaccountkey`). Harmless Graph names keep their value because their last part is not
//!    such a word: `sessionTimeout`, `keySize`, `tokenLifetime`, `passwordRequired`,
//!    `signInFrequency`, `assignments`. `code` is a secret only as `code=` (an OAuth
//!    authorization code), never as Graph's `"code": "Forbidden"`. In a connection string's
//!    `Name=value;…` list (the name after a `;`, or a `;Name=` after the value) an unquoted
//!    value runs to the next `;` or the end of the line, spaces, commas and `&` included:
//!    `Password=correct horse battery staple;Encrypt=true` keeps `Encrypt=true` only.
//! 3. **Cookies**: after a `Cookie` or `Set-Cookie` name, every cookie's value, whatever the
//!    cookie is called; the attributes of `Set-Cookie` (`Path`, `Expires`, …) stay readable.
//! 4. **JSON objects that mark a secret**: in an object holding `"isEncrypted": true` or a
//!    non-null `"secretReferenceValueId"` (Intune OMA settings), the `value` is redacted.
//! 5. **Name/value pairs**: `{"name": "client_secret", "value": "…"}` in either order, with `key`
//!    for `name`, keys in any case, in any quoting, with `=>`, or YAML's `- name: PASSWORD value:
//!    …`: the value (a string, or an array or object whole) of a pair whose name is a secret's
//!    identifier ([`is_secret_pair_name`]: not a display name with spaces such as `Windows LAPS
//!    password`). Only members of one object pair (a brace in another member's string, in any
//!    quoting, opens or closes none); outside objects only neighbours.
//!    `{"name": "displayName", "value": …}` keeps its value.
//! 6. **Authorization**: the scheme and the credential after an `Authorization` name (`Bearer`,
//!    `Basic`, `SharedKey`, any scheme); a bare `Bearer <token>` anywhere; a bare `Basic`,
//!    `Negotiate`, `NTLM`, `PoP` or `SharedKey` followed by something credential-shaped (for
//!    `SharedKey account:signature`, the signature). In a URL the space may be `%20` or `+`.
//!    An auth-param credential (`Digest username="…", response="…"`, any scheme) goes whole,
//!    to the end of the header's line (of its query parameter in a URL).
//! 7. **Tokens and keys anywhere**: JWT-shaped words (`eyJ…` with a dot; one wrapped over lines
//!    or split by spaces loses the pieces that read as encoded data, never the words after it
//!    nor a full stop), PEM blocks
//!    (`-----BEGIN …-----` to `-----END …-----`, or to the end when the end is missing), and
//!    words of at least [`OPAQUE_MIN_CHARS`] characters mixing letters and digits (GUID-built
//!    Graph ids excepted).
//! 8. **Long base64 or hex runs after a secret name** without a separator: `the client secret is
//!    <run>`, `AccountKey <run>`; a run of at least [`LONG_RUN_MIN_CHARS`] among the next words.
//!
//! Whitespace is collapsed first and the result is capped at [`MAX_CHARS`] ([`redact`], for log
//! fields, has no cap but reads only the first [`SCAN_LIMIT`] characters; a cut is marked with
//! `…` either way, never silent). The output is a fixed point: sanitizing it again changes
//! nothing, so a message may safely pass through the sanitizer at several layers.
//! `tests/sanitizer.rs` checks each family with property tests: a random secret embedded in each
//! shape must leave no 8-character substring of itself in the output.

/// What replaces every secret.
pub const REDACTED: &str = "[REDACTED]";

/// The longest sanitized text, in characters (the ellipsis included).
pub const MAX_CHARS: usize = 300;

/// Marks a text that was cut at [`MAX_CHARS`].
const ELLIPSIS: char = '…';

/// Input beyond this many characters is never looked at: [`sanitize`] keeps far less, and
/// [`redact`] ends a text cut here with an ellipsis.
const SCAN_LIMIT: usize = 4096;

/// A word of at least this many characters that mixes letters and digits is treated as a secret.
pub const OPAQUE_MIN_CHARS: usize = 40;

/// A base64 or hex run at least this long among the words after a secret name is a secret.
pub const LONG_RUN_MIN_CHARS: usize = 32;

/// How many words after a secret name are searched for a long run.
const LOOKAHEAD_WORDS: usize = 3;

/// The longest quoted name of a `name`/`value` pair that is read.
const MAX_PAIR_NAME_CHARS: usize = 64;

/// The longest array or object read as the value of a `name`/`value` pair; an unclosed one is
/// redacted this far.
const MAX_BRACKETED_CHARS: usize = 1024;

/// How many pieces of a JWT split over lines are joined: a 2,000-character token wrapped at 64.
const MAX_JWT_PIECES: usize = 32;

/// The shortest piece of base64url that is joined to a JWT split over lines or by spaces: a
/// shorter one cannot be told from a word (`Request`, `Unauthorized`).
const ENCODED_MIN_CHARS: usize = 16;

/// The longest gap between two pieces of a JWT split over lines (indentation, escaped breaks).
const MAX_GAP_CHARS: usize = 16;

/// Last word parts (or the last two or three parts written together) that make a name secret.
pub const SECRET_LAST_PARTS: &[&str] = &[
    "password",
    "passwords",
    "passwd",
    "pwd",
    "passphrase",
    "token",
    "tokens",
    "key",
    "apikey",
    "sig",
    "signature",
    "cookie",
    "credential",
    "credentials",
    "connectionstring",
    "session",
    "sessionid",
    "assertion",
    "authorization",
];

/// Secret words that a name written as one word may end with (`clientsecret`, `ACCESSTOKEN`,
/// `Adminpassword`): nothing marks where its parts meet. Only words that no ordinary word ends
/// with: not `key` (`monkey`) nor `session` (`possession`), but the keys that say what they open.
const SECRET_SUFFIXES: &[&str] = &[
    "secret",
    "secrets",
    "password",
    "passwords",
    "passwd",
    "pwd",
    "passphrase",
    "token",
    "tokens",
    "credential",
    "credentials",
    "signature",
    "connectionstring",
    "sessionid",
    "apikey",
    "accesskey",
    "accountkey",
    "privatekey",
    "sharedkey",
    "secretkey",
    "signingkey",
    "masterkey",
    "subscriptionkey",
];

/// Bare authorization schemes whose credential is redacted wherever it looks like one.
const BARE_SCHEMES: &[&str] = &[
    "basic",
    "negotiate",
    "ntlm",
    "pop",
    "sharedkey",
    "sharedkeylite",
];

/// `Set-Cookie` attributes, whose values are not cookie values.
const COOKIE_ATTRIBUTES: &[&str] = &[
    "path",
    "domain",
    "expires",
    "max-age",
    "samesite",
    "secure",
    "httponly",
    "priority",
    "partitioned",
];

/// How many times redaction (and the cap) may run over its own output before the text is left as
/// it is. Scanners report overlapping spans independently, and a cut can leave a new shape (half
/// of a PEM end line), so one round can reveal work for another. A round only ever puts markers
/// in place of text, so the rounds settle quickly; the bound keeps the cost fixed, and the
/// idempotence property tests check that the output is settled.
const MAX_ROUNDS: usize = 4;

/// Returns `input` with secrets redacted, whitespace collapsed and the length capped.
pub fn sanitize(input: &str) -> String {
    settle(input, truncate)
}

/// Returns `input` with secrets redacted and whitespace collapsed, without the length cap: for
/// the fields of a log line, each redacted on its own. Only the first [`SCAN_LIMIT`] characters
/// are read; a longer text ends with an ellipsis where it was cut.
pub fn redact(input: &str) -> String {
    settle(input, str::to_owned)
}

/// Collapses whitespace, then redacts and applies `finish` until the text no longer changes, so
/// that the output is a fixed point: sanitizing it again changes nothing.
fn settle(input: &str, finish: impl Fn(&str) -> String) -> String {
    let (mut text, mut line_breaks) = collapse_whitespace(input);
    let mut out = String::new();
    for _ in 0..MAX_ROUNDS {
        let next = finish(&Spans::find(&text, &line_breaks).replace_in(&text));
        if next.chars().eq(text.iter().copied()) {
            return next;
        }
        // The output holds no line break: a token wrapped over lines is gone by now.
        text = next.chars().collect();
        line_breaks.clear();
        out = next;
    }
    out
}

/// Turns every run of whitespace or control characters into one space and trims both ends;
/// stops (at a word boundary) after [`SCAN_LIMIT`] characters and then ends the text with an
/// ellipsis, as [`truncate`] does, so that a cut is never silent. Also returns where the spaces
/// that stand for a line break are (ascending): a token wrapped over lines goes on after one.
fn collapse_whitespace(input: &str) -> (Vec<char>, Vec<usize>) {
    let mut out: Vec<char> = Vec::with_capacity(input.len().min(SCAN_LIMIT + 1));
    let mut line_breaks = Vec::new();
    let mut cut = false;
    for c in input.chars() {
        if c.is_whitespace() || c.is_control() {
            // Past the limit this adds at most one space: whitespace alone is not cut off.
            if out.last().is_some_and(|last| *last != ' ') {
                out.push(' ');
            }
            let breaks_line = matches!(
                c,
                '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
            );
            if breaks_line
                && out.last() == Some(&' ')
                && line_breaks.last() != Some(&(out.len() - 1))
            {
                line_breaks.push(out.len() - 1);
            }
        } else {
            if out.len() >= SCAN_LIMIT {
                // A word straddles the limit: drop its visible head too, it may be half a secret.
                while out.last().is_some_and(|last| *last != ' ') {
                    out.pop();
                }
                cut = true;
                break;
            }
            out.push(c);
        }
    }
    while out.last() == Some(&' ') {
        out.pop();
    }
    line_breaks.retain(|&at| at < out.len());
    if cut {
        out.push(ELLIPSIS);
    }
    (out, line_breaks)
}

/// Characters of a name such as `client_secret`, `x-api-key` or `settings.password`.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Characters of a token-like word: base64url, JWT dots and the `~` of Entra client secrets.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '~' | '+')
}

/// Characters of a JWT's pieces: base64url and the dots between its parts.
fn is_jwt_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Whether a piece of base64url could be an ordinary word (`expired`, `Retry`, `OK`): letters
/// only, all lower case, all upper case, or capitalised.
fn reads_as_word(piece: &[char]) -> bool {
    let Some((first, rest)) = piece.split_first() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && (rest.iter().all(char::is_ascii_lowercase) || rest.iter().all(char::is_ascii_uppercase))
        && (first.is_ascii_uppercase() || rest.iter().all(char::is_ascii_lowercase))
}

/// Whether a piece of base64url (and the dots between a JWT's parts) reads as encoded data
/// rather than text: at least [`ENCODED_MIN_CHARS`] long without its dots, not a GUID, and not
/// words and numbers joined by `-`, `_` or `.` (`Wi-Fi`, `LOG_LEVEL`, `abc-123`,
/// `Contoso.Baseline.v2`, `graph.microsoft.com`), where a word may be camelCase
/// (`ResourceNotFound`) or end in digits (`AADSTS50013`, `Windows10`). Random base64url of that
/// length is practically never such words.
/// Whether `piece` looks like encoded data rather than words ([`looks_encoded`]): the rule by
/// which a wrapped line joins an incomplete token. Public for the tests' properties.
#[doc(hidden)]
pub fn looks_encoded_text(piece: &str) -> bool {
    let chars: Vec<char> = piece.chars().collect();
    looks_encoded(&chars)
}

fn looks_encoded(piece: &[char]) -> bool {
    piece.iter().filter(|&&c| c != '.').count() >= ENCODED_MIN_CHARS
        && piece.iter().all(|&c| is_jwt_char(c))
        && !is_guid(piece)
        && !piece
            .split(|&c| matches!(c, '-' | '_' | '.'))
            .all(|word| word.is_empty() || is_word_or_number(word))
}

/// A number, a word of three letters or more (capitalised, in one case or camelCase) maybe with
/// digits after it (`AADSTS50013`, `Windows10`), or a lower-case letter and digits (`v2`,
/// `x64`).
fn is_word_or_number(word: &[char]) -> bool {
    let letters_end = run_end(word, 0, |c| c.is_ascii_alphabetic());
    let (letters, digits) = word.split_at(letters_end);
    let word_like = |letters: &[char]| {
        letters.len() >= 3
            && (letters.iter().all(char::is_ascii_uppercase)
                || reads_as_word(letters)
                || is_camel_case(letters))
    };
    !word.is_empty()
        && digits.iter().all(char::is_ascii_digit)
        && (letters.is_empty()
            || word_like(letters)
            || (letters.len() == 1 && letters[0].is_ascii_lowercase() && !digits.is_empty()))
}

/// `ResourceNotFound`, `iPhone`, `SharePoint`, `macOS`: each run of capitals ends the word or
/// starts a lower-case run of at least two letters, and lower case letters are at least twice
/// as many as capitals (random letters are half capitals).
fn is_camel_case(letters: &[char]) -> bool {
    let upper = letters.iter().filter(|c| c.is_ascii_uppercase()).count();
    let mut k = 0;
    while k < letters.len() {
        if letters[k].is_ascii_uppercase() {
            let caps_end = run_end(letters, k, |c| c.is_ascii_uppercase());
            let lower_end = run_end(letters, caps_end, |c| c.is_ascii_lowercase());
            if caps_end < letters.len() && lower_end - caps_end < 2 {
                return false;
            }
            k = caps_end;
        } else {
            k += 1;
        }
    }
    letters.len() - upper >= 2 * upper
}

/// Characters of base64 (standard and URL-safe) and hex runs.
fn is_base64_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-')
}

/// Where an unquoted value ends.
fn is_value_delimiter(c: char) -> bool {
    c == ' '
        || matches!(
            c,
            '&' | ',' | ';' | '"' | '\'' | '<' | '>' | '}' | ')' | ELLIPSIS
        )
}

/// Percent-encoded characters that end an unquoted value: `& space " ' , ; }`.
const ENCODED_DELIMITERS: &[&str] = &["%26", "%20", "%22", "%27", "%2C", "%3B", "%7D"];

/// Whether `s[at..]` starts with `pattern`, ASCII case-insensitively.
fn starts_with_ci(s: &[char], at: usize, pattern: &str) -> bool {
    let mut i = at;
    for p in pattern.chars() {
        match s.get(i) {
            Some(c) if c.eq_ignore_ascii_case(&p) => i += 1,
            _ => return false,
        }
    }
    true
}

/// Whether the characters equal `word`, ASCII case-insensitively.
fn eq_ci(chars: &[char], word: &str) -> bool {
    chars.len() == word.chars().count() && starts_with_ci(chars, 0, word)
}

/// First index at or after `from` where `pattern` starts (case-insensitively).
fn find_ci(s: &[char], from: usize, pattern: &str) -> Option<usize> {
    (from..s.len()).find(|&i| starts_with_ci(s, i, pattern))
}

fn is_marker(chars: &[char]) -> bool {
    chars.iter().copied().eq(REDACTED.chars())
}

/// End (exclusive) of the run of characters starting at `from` that satisfy `pred`.
fn run_end(s: &[char], from: usize, pred: impl Fn(char) -> bool) -> usize {
    let mut end = from;
    while end < s.len() && pred(s[end]) {
        end += 1;
    }
    end
}

/// Start of the run of characters ending (exclusively) at `to` that satisfy `pred`.
fn run_start(s: &[char], to: usize, pred: impl Fn(char) -> bool) -> usize {
    let mut start = to;
    while start > 0 && pred(s[start - 1]) {
        start -= 1;
    }
    start
}

/// `%` followed by two hex digits at `at`.
fn is_percent_escape(s: &[char], at: usize) -> bool {
    s.get(at) == Some(&'%')
        && s.get(at + 1).is_some_and(char::is_ascii_hexdigit)
        && s.get(at + 2).is_some_and(char::is_ascii_hexdigit)
}

/// A name split into lower-cased word parts: at camelCase boundaries (`clientSecret`,
/// `APIKey`) and at `-`, `_`, `.` and spaces.
fn name_parts(name: &[char]) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    for (i, &c) in name.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            continue;
        }
        if c.is_ascii_uppercase() && !current.is_empty() {
            let prev = name[i - 1];
            let next_is_lower = name.get(i + 1).is_some_and(char::is_ascii_lowercase);
            let boundary = prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_is_lower);
            if boundary {
                parts.push(std::mem::take(&mut current));
            }
        }
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// Whether a key of structured data (a JSON object's member, a form field) names a secret, by
/// the same word-part rule as in text: its value must not be stored or shown as it is.
pub fn is_secret_name(name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    secret_name(&chars).is_some_and(|kind| kind != SecretName::EqualsOnly)
}

/// Whether the `name` (or `key`) of a name/value pair (`{"name": "client_secret", "value":
/// …}`) is a secret's: an identifier that names a secret (`client_secret`, `Password`,
/// `AdminPassword`), never a display name with spaces (a policy named "Windows LAPS password"
/// holds settings, not the password). Used for pairs in text and in structured audit details.
pub fn is_secret_pair_name(name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    pair_name_is_secret(&chars)
}

fn pair_name_is_secret(name: &[char]) -> bool {
    !name.iter().any(|c| c.is_whitespace())
        && secret_name(name).is_some_and(|kind| kind != SecretName::EqualsOnly)
}

/// How a name's value is read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SecretName {
    /// Any value after `=`, `:` or an XML tag.
    Any,
    /// Only after `=`: `code=` is an OAuth code, Graph's `"code": "Forbidden"` is not.
    EqualsOnly,
    /// A scheme and a credential.
    Authorization,
    /// A list of cookies, every value secret.
    Cookie,
}

/// Whether a name names a secret, and how its value is read.
fn secret_name(name: &[char]) -> Option<SecretName> {
    // A number after a part says which one, not what it is: `password2`, `client_secret2`,
    // `pwd_2` and Azure's `key1` are secrets like the first. A part that is only a number
    // (`keySize_2`) is left out, so it cannot make a harmless name's last part.
    let parts = name_parts(name);
    let parts: Vec<&str> = parts
        .iter()
        .map(|part| part.trim_end_matches(|c: char| c.is_ascii_digit()))
        .filter(|part| !part.is_empty())
        .collect();
    let last = parts.last()?;
    if parts.len() == 1 && *last == "code" {
        return Some(SecretName::EqualsOnly);
    }
    if parts
        .iter()
        .any(|p| p.ends_with("secret") || p.ends_with("secrets"))
    {
        return Some(SecretName::Any);
    }
    let matched = (1..=parts.len().min(3)).find_map(|n| {
        let joined: String = parts[parts.len() - n..].concat();
        SECRET_LAST_PARTS
            .contains(&joined.as_str())
            .then_some(joined)
    });
    let Some(matched) = matched else {
        return SECRET_SUFFIXES
            .iter()
            .any(|suffix| last.ends_with(suffix))
            .then_some(SecretName::Any);
    };
    Some(match matched.as_str() {
        "authorization" => SecretName::Authorization,
        "cookie" => SecretName::Cookie,
        _ => SecretName::Any,
    })
}

/// How a separator between a name and its value is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Separator {
    Equals,
    Colon,
    /// `<name>value</name>`.
    Tag,
}

/// The separator starting at `i`, if any, and its length.
fn separator_at(s: &[char], i: usize) -> Option<(Separator, usize)> {
    match s[i] {
        // Ruby's and Perl's hashes: `"password" => "…"`, `:password => '…'`.
        '=' if s.get(i + 1) == Some(&'>') => Some((Separator::Equals, 2)),
        '=' => Some((Separator::Equals, 1)),
        ':' => Some((Separator::Colon, 1)),
        '>' => Some((Separator::Tag, 1)),
        '%' if starts_with_ci(s, i, "%3D") => Some((Separator::Equals, 3)),
        '%' if starts_with_ci(s, i, "%3A") => Some((Separator::Colon, 3)),
        _ => None,
    }
}

/// A quote around a name or a value: `"`, `'`, an escaped `\"` (any number of backslashes) or
/// the URL-encoded `%22`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    Plain(char),
    Escaped(usize),
    Encoded,
}

impl Quote {
    /// The opening quote at `at`, if one starts there.
    fn opening_at(s: &[char], at: usize) -> Option<Quote> {
        match *s.get(at)? {
            c @ ('"' | '\'') => Some(Quote::Plain(c)),
            '\\' => {
                let end = run_end(s, at, |c| c == '\\');
                (s.get(end) == Some(&'"')).then_some(Quote::Escaped(end - at))
            }
            '%' if starts_with_ci(s, at, "%22") => Some(Quote::Encoded),
            _ => None,
        }
    }

    /// The closing quote ending (exclusively) at `to`, if one does.
    fn closing_before(s: &[char], to: usize) -> Option<Quote> {
        if to == 0 {
            return None;
        }
        match s[to - 1] {
            '\'' => Some(Quote::Plain('\'')),
            '"' => {
                let backslashes = to - 1 - run_start(s, to - 1, |c| c == '\\');
                Some(if backslashes == 0 {
                    Quote::Plain('"')
                } else {
                    Quote::Escaped(backslashes)
                })
            }
            '2' if to >= 3 && starts_with_ci(s, to - 3, "%22") => Some(Quote::Encoded),
            _ => None,
        }
    }

    fn len(self) -> usize {
        match self {
            Quote::Plain(_) => 1,
            Quote::Escaped(n) => n + 1,
            Quote::Encoded => 3,
        }
    }

    /// Whether this quote is at `at`. An escaped quote is exactly its own backslashes and the
    /// `"`: in `\\\"` the last `\"` is not a `\"`.
    fn is_at(self, s: &[char], at: usize) -> bool {
        match self {
            Quote::Plain(q) => s.get(at) == Some(&q),
            Quote::Escaped(n) => {
                (at == 0 || s[at - 1] != '\\')
                    && (at..at + n).all(|i| s.get(i) == Some(&'\\'))
                    && s.get(at + n) == Some(&'"')
            }
            Quote::Encoded => starts_with_ci(s, at, "%22"),
        }
    }

    /// Where the quoted content starting at `from` ends: the index of the closing quote, or the
    /// end of the text when the quote is never closed.
    fn content_end(self, s: &[char], from: usize) -> (usize, bool) {
        let mut j = from;
        while j < s.len() {
            if let Quote::Escaped(n) = self {
                // Read a run of backslashes before a `"` as a whole: it is the closing quote, or
                // a quote (or a backslash and a quote) inside the escaped string.
                if s[j] == '\\' {
                    let run = run_end(s, j, |c| c == '\\');
                    if s.get(run) == Some(&'"') && escaped_quote_closes(n, run - j) {
                        return (run - n, true);
                    }
                    j = run;
                    continue;
                }
            } else if self.is_at(s, j) {
                return (j, true);
            }
            j += if matches!(self, Quote::Plain(_)) && s[j] == '\\' {
                2
            } else {
                1
            };
        }
        (s.len(), false)
    }
}

/// Whether `run` backslashes and a `"` close a string opened by `n` backslashes and a `"`. With
/// `n = 2^levels - 1` (`\"`, `\\\"`, …: JSON escaped again `levels` times), unescaping the run
/// `levels` times must leave each time an escaped quote and at last an even run: a bare `"` after
/// escaped backslashes (`\\\\\"` closes `\"` after a value ending in a backslash). A run that
/// unescapes to an escaped `"` is a quote inside the value.
fn escaped_quote_closes(n: usize, mut run: usize) -> bool {
    if run == n {
        return true;
    }
    if run < n || !(n + 1).is_power_of_two() {
        return false;
    }
    for _ in 0..(n + 1).trailing_zeros() {
        if run.is_multiple_of(2) {
            return false;
        }
        run = (run - 1) / 2;
    }
    run.is_multiple_of(2)
}

/// The name ending just before the separator at `sep`: `(start, end)` of the name itself.
fn name_before(s: &[char], sep: usize, kind: Separator) -> Option<(usize, usize)> {
    let mut end = sep;
    if kind != Separator::Tag {
        end = run_start(s, end, |c| c == ' ');
    }
    let quote = if kind == Separator::Tag {
        None
    } else {
        Quote::closing_before(s, end)
    };
    if let Some(q) = quote {
        end -= q.len();
    }
    let mut start = run_start(s, end, is_name_char);
    // `%26password%3D…`: the two hex digits belong to the escape, not to the name.
    if start > 0 && start + 2 <= end && is_percent_escape(s, start - 1) {
        start += 2;
    }
    if start >= end {
        return None;
    }
    match (kind, quote) {
        (Separator::Tag, _) => (start > 0 && s[start - 1] == '<').then_some((start, end)),
        (_, Some(q)) => Some((quoted_name_start(s, start, end, q).unwrap_or(start), end)),
        (_, None) => Some((title_case_start(s, start), end)),
    }
}

/// A quoted name may hold spaces (`"Client Secret"`): its start is the opening quote's end.
fn quoted_name_start(s: &[char], mut start: usize, end: usize, quote: Quote) -> Option<usize> {
    loop {
        let open_at = start.checked_sub(quote.len())?;
        if quote.is_at(s, open_at) {
            return Some(start);
        }
        if start == 0 || s[start - 1] != ' ' || end - start > 64 {
            return None;
        }
        let word_start = run_start(s, start - 1, is_name_char);
        if word_start == start - 1 {
            return None;
        }
        start = word_start;
    }
}

/// An unquoted name of Title Case words (`Client Secret: …`) takes in up to three of them.
fn title_case_start(s: &[char], mut start: usize) -> usize {
    for _ in 0..3 {
        if !s[start].is_ascii_uppercase() || start < 2 || s[start - 1] != ' ' {
            break;
        }
        let word_start = run_start(s, start - 1, is_name_char);
        if word_start == start - 1 || !s[word_start].is_ascii_uppercase() {
            break;
        }
        start = word_start;
    }
    start
}

/// The spans of the text that hold secrets.
struct Spans<'a> {
    s: &'a [char],
    /// The spaces that stand for a line break, ascending.
    line_breaks: &'a [usize],
    found: Vec<(usize, usize)>,
    /// The userinfo of each URL (`user:secret` before the `@`): already read by the userinfo
    /// scanner, so `name=value` inside a password is not read again (its value would run on
    /// over the `@` and take the host with it).
    userinfo: Vec<(usize, usize)>,
}

impl<'a> Spans<'a> {
    fn find(s: &'a [char], line_breaks: &'a [usize]) -> Self {
        let mut spans = Spans {
            s,
            line_breaks,
            found: Vec::new(),
            userinfo: Vec::new(),
        };
        spans.pem_blocks();
        spans.url_userinfo();
        spans.named_values();
        spans.words();
        spans.marked_json_values();
        spans.name_value_pairs();
        spans
    }

    /// Records `start..end` as secret, unless it is empty or already the marker.
    fn add(&mut self, start: usize, mut end: usize) {
        end = end.min(self.s.len());
        if start >= end || is_marker(&self.s[start..end]) {
            return;
        }
        self.found.push((start, end));
    }

    /// Records a span that may run to the end of the text: our own ellipsis is not content.
    fn add_to_end(&mut self, start: usize, end: usize) {
        let end = if end == self.s.len() && end > start && self.s[end - 1] == ELLIPSIS {
            end - 1
        } else {
            end
        };
        self.add(start, end);
    }

    /// The text with every span (merged with its overlapping or touching neighbours) replaced by
    /// one marker.
    fn replace_in(mut self, s: &[char]) -> String {
        self.found.sort_unstable();
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        let mut spans = self.found.into_iter().peekable();
        while let Some((start, mut end)) = spans.next() {
            while let Some(&(next_start, next_end)) = spans.peek() {
                if next_start > end {
                    break;
                }
                end = end.max(next_end);
                spans.next();
            }
            let start = start.max(i);
            out.extend(&s[i..start]);
            out.push_str(REDACTED);
            i = end.max(start);
        }
        out.extend(&s[i.min(s.len())..]);
        out
    }

    /// `-----BEGIN …-----` to `-----END …-----`, or to the end of the text.
    fn pem_blocks(&mut self) {
        let s = self.s;
        let mut from = 0;
        while let Some(begin) = find_ci(s, from, "-----BEGIN") {
            let label_start = begin + "-----BEGIN".len();
            let Some(label_end) =
                find_ci(s, label_start, "-----").filter(|e| e - label_start <= 64)
            else {
                from = label_start;
                continue;
            };
            let body_start = run_end(s, label_end, |c| c == '-');
            let end = find_ci(s, body_start, "-----END").unwrap_or(s.len());
            let trimmed_start = run_end(s, body_start, |c| c == ' ');
            let trimmed_end = run_start(s, end, |c| c == ' ').max(trimmed_start);
            self.add_to_end(trimmed_start, trimmed_end);
            from = end.max(body_start);
            if from >= s.len() {
                break;
            }
            from += 1;
        }
    }

    /// `scheme://user:secret@host` and `scheme://secret@host`, also URL-encoded inside a query
    /// string (`https%3A%2F%2Fuser%3Asecret%40host`).
    fn url_userinfo(&mut self) {
        let s = self.s;
        let mut from = 0;
        while let Some(at) = find_ci(s, from, "://") {
            let authority = at + 3;
            let end = run_end(s, authority, |c| {
                !(c == ' '
                    || matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '\\' | '`')
                    || c == ELLIPSIS)
            });
            if let Some(at_sign) = (authority..end).rev().find(|&i| s[i] == '@') {
                self.userinfo.push((authority, at_sign));
                let colon = (authority..at_sign).find(|&i| s[i] == ':');
                match colon {
                    Some(colon) => self.add(colon + 1, at_sign),
                    None => self.add(authority, at_sign),
                }
            }
            from = authority;
        }
        let mut from = 0;
        while let Some(at) = find_ci(s, from, "%3A%2F%2F") {
            let authority = at + "%3A%2F%2F".len();
            let mut end = authority;
            while end < s.len()
                && !is_value_delimiter(s[end])
                && !["%2F", "%3F", "%23", "%26", "%22", "%20"]
                    .iter()
                    .any(|d| starts_with_ci(s, end, d))
            {
                end += 1;
            }
            if let Some(at_sign) = (authority..end)
                .rev()
                .find(|&i| starts_with_ci(s, i, "%40"))
            {
                self.userinfo.push((authority, at_sign));
                match (authority..at_sign).find(|&i| starts_with_ci(s, i, "%3A")) {
                    Some(colon) => self.add(colon + 3, at_sign),
                    None => self.add(authority, at_sign),
                }
            }
            from = authority;
        }
    }

    /// `name=value`, `name: value`, `"name":"value"`, `name%3Dvalue`, `<name>value</name>`.
    fn named_values(&mut self) {
        let s = self.s;
        let mut i = 0;
        while i < s.len() {
            if let Some(&(_, at_sign)) = self.userinfo.iter().find(|(a, b)| (*a..*b).contains(&i)) {
                i = at_sign;
                continue;
            }
            let Some((kind, len)) = separator_at(s, i) else {
                i += 1;
                continue;
            };
            let value_start = i + len;
            // `scheme://user:secret@host:port`: the user is not a name (the userinfo scanner
            // reads it), nor is the host before its port.
            let userinfo = |start: usize| {
                let after_at_sign = |at: usize| {
                    (s[at] == '@' && start == at + 1)
                        || (starts_with_ci(s, at, "%40") && start == at + 3)
                };
                kind == Separator::Colon
                    && ((start >= 3 && s[start - 3..start] == [':', '/', '/'])
                        || (start >= 9 && starts_with_ci(s, start - 9, "%3A%2F%2F"))
                        || self.userinfo.iter().any(|&(_, at)| after_at_sign(at)))
            };
            // A secret's name before `://` (`password://ab@cd`, `sig0://app:pw@host`) is read as
            // a name, not as a scheme: its whole value goes, host and all. An absurd URL loses
            // more than it must; a password split at `@` keeps no half.
            if let Some((start, end)) =
                name_before(s, i, kind).filter(|(start, _)| !userinfo(*start))
            {
                if let Some(name) = secret_name(&s[start..end]) {
                    let accepted = match name {
                        SecretName::EqualsOnly => kind == Separator::Equals,
                        _ => true,
                    };
                    if accepted {
                        let place = list_place(s, (start, end), i, len);
                        self.value(value_start, kind, name, place);
                    }
                }
            }
            i = value_start;
        }
    }

    /// Records the value of a secret name that starts at `k`; `place` says whether the name
    /// stands in a connection string's `Name=value;…` list.
    fn value(&mut self, k: usize, separator: Separator, name: SecretName, place: ListPlace) {
        let s = self.s;
        if separator == Separator::Tag {
            // `<password>…</password>`; without a closing tag, an unquoted value.
            let end = match (k..s.len()).find(|&j| s[j] == '<') {
                Some(end) => end,
                None => unquoted_value_end(s, k),
            };
            self.add_to_end(k, end);
            return;
        }
        let k = whitespace_end(s, k);
        if k >= s.len() {
            return;
        }
        let starts_with_marker = starts_with_ci(s, k, REDACTED);
        if starts_with_marker && self.marker_is_whole_value(k) {
            return;
        }
        if let Some(quote) = Quote::opening_at(s, k) {
            let content_start = k + quote.len();
            let (content_end, _) = quote.content_end(s, content_start);
            self.add_to_end(content_start, content_end);
            return;
        }
        if !starts_with_marker {
            match s[k] {
                '[' => return self.array_values(k + 1),
                '{' => return,
                _ => {}
            }
        }
        if name == SecretName::Cookie && separator == Separator::Colon {
            return self.cookie_values(k);
        }
        let word_end = unquoted_value_end(s, k);
        let kept = |end: usize| {
            end <= k
                || matches!(
                    &s[k..end],
                    ['n', 'u', 'l', 'l'] | ['t', 'r', 'u', 'e'] | ['f', 'a', 'l', 's', 'e']
                )
        };
        let mut end = if name == SecretName::Authorization {
            self.authorization_end(k, word_end)
        } else {
            self.list_value_end(k, place, true).unwrap_or(word_end)
        };
        if kept(end) && name != SecretName::Authorization {
            // The next round reads the text without its line breaks: a value kept here (empty
            // or `true` before a line break) that it would read as a list's value goes now, so
            // that the output is settled.
            if let Some(whole) = self.list_value_end(k, place, false).filter(|&e| !kept(e)) {
                end = whole;
            }
        }
        if kept(end) {
            return;
        }
        self.add_to_end(k, end);
    }

    /// Where the value of an `Authorization` name starting at `k` (its first word ending at
    /// `word_end`) ends: `Authorization: Bearer abc` loses the scheme and the credential
    /// together; an auth-param credential (`Digest username="…", response="…"`, any scheme) goes
    /// whole, to the end of the header's line.
    fn authorization_end(&self, k: usize, word_end: usize) -> usize {
        let s = self.s;
        if !s[k..word_end]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == '-')
        {
            return word_end;
        }
        let Some(space) = space_len(s, word_end) else {
            return word_end;
        };
        let credential = word_end + space;
        if starts_auth_param(s, credential) {
            // In a URL (`%20` after the scheme) the header ends with its query parameter.
            let encoded = space > 1;
            let end = self.line_end(credential, true, |c| encoded && matches!(c, '&' | ' '));
            return run_start(s, end, |c| c == ' ').max(credential);
        }
        let credential_end = unquoted_value_end(s, credential);
        if credential_end > credential && !is_marker(&s[credential..credential_end]) {
            credential_end
        } else {
            word_end
        }
    }

    /// Where a value starting at `k` ends when its name stands in a connection string's
    /// `Name=value;…` list (issue 9 §6): at the next `;` or the end of the line, so that a
    /// password with spaces, commas or `&` (`Password=correct horse battery staple;`) goes
    /// whole. A name at the head of a list is one whose value a `;Name=` follows. `None` when
    /// the name is in no list: its value ends as any unquoted value. `breaks` says whether a
    /// line break ends the line (only the first round knows where they are).
    fn list_value_end(&self, k: usize, place: ListPlace, breaks: bool) -> Option<usize> {
        let s = self.s;
        let end = match place {
            ListPlace::None => return None,
            ListPlace::Inside => self.line_end(k, breaks, |c| c == ';'),
            ListPlace::MaybeHead => {
                Some(self.line_end(k, breaks, |c| c == ';')).filter(|&end| {
                    s.get(end) == Some(&';') && self.list_goes_on_or_ends(end + 1, breaks)
                })?
            }
        };
        Some(run_start(s, end, |c| c == ' ').max(k))
    }

    /// Whether what follows the `;` before `at` is a connection string's next pair (`;Name=`,
    /// spaces allowed), or the end of the list: of the text, of its line or of a quoted string
    /// (`"Server=x;Password=ab cd;"`).
    fn list_goes_on_or_ends(&self, at: usize, breaks: bool) -> bool {
        let s = self.s;
        let start = run_end(s, at, |c| c == ' ');
        let line_break = breaks && (at..start).any(|j| self.is_line_break(j));
        line_break
            || matches!(s.get(start).copied(), None | Some('"' | '\'' | ELLIPSIS))
            || list_pair_at(s, start)
    }

    /// The first index at or after `k` where `stop` holds, a line break (when `breaks`) or our
    /// own ellipsis is, or the text ends.
    fn line_end(&self, k: usize, breaks: bool, stop: impl Fn(char) -> bool) -> usize {
        let s = self.s;
        let mut j = k;
        while j < s.len()
            && s[j] != ELLIPSIS
            && !stop(s[j])
            && !(breaks && s[j] == ' ' && self.is_line_break(j))
        {
            j += 1;
        }
        j
    }

    /// Whether the space at `j` stands for a line break.
    fn is_line_break(&self, j: usize) -> bool {
        self.line_breaks.binary_search(&j).is_ok()
    }

    /// Whether the marker at `k` is followed by the end of a value (the value is already gone).
    fn marker_is_whole_value(&self, k: usize) -> bool {
        let after = k + REDACTED.chars().count();
        after >= self.s.len() || unquoted_value_end(self.s, after) == after
    }

    /// The elements of a JSON array after a secret name, up to its `]`.
    fn array_values(&mut self, mut k: usize) {
        let s = self.s;
        loop {
            k = run_end(s, k, |c| c == ' ');
            let Some(&c) = s.get(k) else { return };
            if c == ']' || c == '{' || c == '[' {
                return;
            }
            if let Some(quote) = Quote::opening_at(s, k) {
                let content_start = k + quote.len();
                let (content_end, closed) = quote.content_end(s, content_start);
                self.add_to_end(content_start, content_end);
                if !closed {
                    return;
                }
                k = content_end + quote.len();
            } else {
                let end = run_end(s, k, |c| !matches!(c, ',' | ']' | ' ' | ELLIPSIS));
                if !matches!(&s[k..end], ['n', 'u', 'l', 'l']) {
                    self.add(k, end);
                }
                k = end;
            }
            k = run_end(s, k, |c| c == ' ');
            if s.get(k) != Some(&',') {
                return;
            }
            k += 1;
        }
    }

    /// `a=1; b=2` after `Cookie:`, or `id=1; Path=/; HttpOnly` after `Set-Cookie:`.
    fn cookie_values(&mut self, mut k: usize) {
        let s = self.s;
        let is_cookie_name_char = |c: char| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '!' | '#' | '$' | '%' | '&' | '*' | '+' | '-' | '.' | '^' | '_' | '|' | '~'
                )
        };
        loop {
            k = run_end(s, k, |c| c == ' ');
            let name_end = run_end(s, k, is_cookie_name_char);
            if name_end == k {
                return;
            }
            let name = &s[k..name_end];
            let attribute = COOKIE_ATTRIBUTES.iter().any(|a| eq_ci(name, a));
            let mut next = name_end;
            if s.get(name_end) == Some(&'=') {
                let value_start = name_end + 1;
                let value_end = if attribute && eq_ci(name, "expires") {
                    (value_start..s.len())
                        .find(|&j| s[j] == ';')
                        .unwrap_or(s.len())
                        .min(value_start + 29)
                } else {
                    run_end(s, value_start, |c| !matches!(c, ';' | ',' | ' ' | ELLIPSIS))
                };
                if !attribute {
                    self.add_to_end(value_start, value_end);
                }
                next = value_end;
            } else if !attribute {
                return;
            }
            next = run_end(s, next, |c| c == ' ');
            match s.get(next) {
                Some(';') | Some(',') => k = next + 1,
                _ => return,
            }
        }
    }

    /// Bare authorization schemes, JWT-shaped words, opaque words, and long runs after a
    /// secret name that has no separator.
    fn words(&mut self) {
        let s = self.s;
        let mut i = 0;
        while i < s.len() {
            // A JWT may start inside a word: after a dot, a dash, a `%22` or a written-out
            // line break (`\n`).
            if s[i..].starts_with(&['e', 'y', 'J']) {
                let boundary = i == 0
                    || !s[i - 1].is_ascii_alphanumeric()
                    || (i >= 3 && is_percent_escape(s, i - 3))
                    || (i >= 2 && s[i - 2] == '\\' && matches!(s[i - 1], 'n' | 'r' | 't'));
                if let Some(end) = boundary.then(|| self.jwt_end(i)).flatten() {
                    self.add(i, end);
                    i = end;
                    continue;
                }
            }
            if is_token_char(s[i]) && (i == 0 || !is_token_char(s[i - 1])) {
                let word_end = run_end(s, i, is_token_char);
                if is_opaque(&s[i..word_end]) {
                    self.add(i, word_end);
                }
                // Also when opaque: `Basic+<credential>` is one word, and its credential may
                // run on past it (`/`).
                self.word_followers(i, word_end);
            }
            i += 1;
        }
    }

    /// Where the JWT starting at `start` ends, if the word there is one (it holds a dot, or the
    /// pieces joined to it do).
    ///
    /// A token wrapped over lines (or `\n` written out in escaped JSON) or split by spaces goes
    /// on only while it lacks a part (fewer than two dots, or a dot at its end), and only into
    /// pieces that read as encoded data ([`looks_encoded`]): never a word, a number, a GUID
    /// or a dotted name, so a token cut short (`Assertion eyJ…w is not valid`) keeps the
    /// sentence after it. A whole token is never extended after a space (`Bearer eyJ… 401
    /// Unauthorized`); after a line break only by pieces of encoded data without a dot (the
    /// rest of a wrapped signature), so the next line's `Request failed` stays. A piece
    /// followed by `:` or `=` is the next name, never a part.
    fn jwt_end(&self, start: usize) -> Option<usize> {
        let s = self.s;
        let first_end = run_end(s, start, is_token_char);
        let mut dots = s[start..first_end].iter().filter(|&&c| c == '.').count();
        let whole = |dots: usize, end: usize| dots >= 3 || (dots == 2 && s[end - 1] != '.');
        let mut end = first_end;
        for _ in 0..MAX_JWT_PIECES {
            let Some((next, line_break)) = self.gap_end(end) else {
                break;
            };
            let next_end = run_end(s, next, is_jwt_char);
            if next_end == next || matches!(s.get(next_end), Some(':' | '=')) {
                break;
            }
            let fits = |piece_end: usize| {
                let piece = &s[next..piece_end];
                let piece_dots = piece.iter().filter(|&&c| c == '.').count();
                let fits = if whole(dots, end) {
                    line_break && piece_dots == 0 && looks_encoded(piece)
                } else {
                    dots + piece_dots <= 2 && looks_encoded(piece)
                };
                fits.then_some(piece_dots)
            };
            if let Some(piece_dots) = fits(next_end) {
                dots += piece_dots;
                end = next_end;
            } else if let Some(piece_dots) = ends_in_full_stop(s, next_end)
                .then(|| fits(next_end - 1))
                .flatten()
            {
                // The last piece of a wrapped token ending a sentence (`…DuPphZDg. Retry`).
                dots += piece_dots;
                end = next_end - 1;
                break;
            } else {
                break;
            }
        }
        // A whole token ending a sentence (`eyJ….sig. Retry`) keeps its full stop.
        if ends_in_full_stop(s, end) && whole(dots - 1, end - 1) {
            end -= 1;
        }
        (dots > 0).then_some(end)
    }

    /// The end of a gap at `k` between two pieces of a wrapped token: spaces and line breaks
    /// written out (`\n`, `\r`, `\t`, escaped any number of times), and whether it breaks a line.
    fn gap_end(&self, k: usize) -> Option<(usize, bool)> {
        let s = self.s;
        let mut j = k;
        let mut line_break = false;
        while j < s.len() && j - k < MAX_GAP_CHARS {
            if s[j] == ' ' {
                line_break |= self.line_breaks.binary_search(&j).is_ok();
                j += 1;
                continue;
            }
            let escape_end = run_end(s, j, |c| c == '\\');
            match s.get(escape_end) {
                Some('n' | 'r') if escape_end > j => line_break = true,
                Some('t') if escape_end > j => {}
                _ => break,
            }
            j = escape_end + 1;
        }
        (j > k).then_some((j, line_break))
    }

    /// What follows a word: a bearer credential, another scheme's credential, or a long run
    /// after a secret name.
    fn word_followers(&mut self, start: usize, end: usize) {
        let s = self.s;
        // The scheme and its credential: `Bearer abc`, `Bearer%20abc` or a form's `Bearer+abc`
        // (one word, `+` being a token character).
        let is_scheme = |w: &[char]| eq_ci(w, "bearer") || BARE_SCHEMES.iter().any(|b| eq_ci(w, b));
        let plus = (start..end)
            .find(|&j| s[j] == '+')
            .filter(|&plus| is_scheme(&s[start..plus]));
        let scheme_and_credential = match (plus, space_len(s, end)) {
            (Some(plus), _) => Some((plus, plus + 1)),
            (None, Some(space)) => Some((end, end + space)),
            (None, None) => None,
        };
        if let Some((scheme_end, next_start)) = scheme_and_credential {
            let scheme = &s[start..scheme_end];
            let next_end = unquoted_value_end(s, next_start);
            let mut credential_start = next_start;
            // `SharedKey account:signature` (`account%3Asignature` in a URL): the account stays
            // readable.
            if eq_ci(scheme, "sharedkey") || eq_ci(scheme, "sharedkeylite") {
                let account_end = run_end(s, next_start, is_name_char);
                if account_end > next_start {
                    if s.get(account_end) == Some(&':') {
                        credential_start = account_end + 1;
                    } else if starts_with_ci(s, account_end, "%3A") {
                        credential_start = account_end + 3;
                    }
                }
            }
            let credential = &s[credential_start..next_end];
            if next_end > next_start
                && (eq_ci(scheme, "bearer")
                    || (BARE_SCHEMES.iter().any(|b| eq_ci(scheme, b))
                        && looks_like_credential(credential)))
            {
                self.add(credential_start, next_end);
                return;
            }
        }
        // Names inside the word (`settings.clientSecret`) count from the last name run.
        let name_start = run_start(s, end, is_name_char).max(start);
        if secret_name(&s[name_start..end]).is_some() && !followed_by_separator(s, end) {
            self.long_runs_after(end);
        }
    }

    /// Long base64 or hex runs among the next words after a secret name.
    fn long_runs_after(&mut self, mut k: usize) {
        let s = self.s;
        // The rest of the name's own word is a path or a query, not a value: skip it.
        k = run_end(s, k, |c| c != ' ') + 1;
        for _ in 0..LOOKAHEAD_WORDS {
            if k >= s.len() {
                return;
            }
            let word_end = run_end(s, k, |c| c != ' ');
            let trim = |c: char| {
                matches!(
                    c,
                    '"' | '\''
                        | '('
                        | ')'
                        | '['
                        | ']'
                        | '{'
                        | '}'
                        | '<'
                        | '>'
                        | ','
                        | ';'
                        | ':'
                        | '.'
                        | '`'
                )
            };
            let inner_start = run_end(s, k, trim).min(word_end);
            let inner_end = run_start(s, word_end, trim).max(inner_start);
            let inner = &s[inner_start..inner_end];
            if is_long_run(inner) {
                self.add(inner_start, inner_end);
            }
            if word_end >= s.len() {
                return;
            }
            k = word_end + 1;
        }
    }

    /// `{"isEncrypted": true, "value": "…"}` and `{"secretReferenceValueId": "…", "value": "…"}`.
    fn marked_json_values(&mut self) {
        let s = self.s;
        for (key, needs_true) in [
            ("\"isEncrypted\"", true),
            ("\"secretReferenceValueId\"", false),
        ] {
            let mut from = 0;
            while let Some(at) = find_ci(s, from, key) {
                from = at + 1;
                let mut k = run_end(s, at + key.len(), |c| c == ' ');
                if s.get(k) != Some(&':') {
                    continue;
                }
                k = run_end(s, k + 1, |c| c == ' ');
                let marked = if needs_true {
                    starts_with_ci(s, k, "true") || starts_with_ci(s, k, "\"true\"")
                } else {
                    !starts_with_ci(s, k, "null")
                };
                if marked {
                    if let Some(open) = enclosing_object_start(s, at) {
                        self.object_values(open);
                    }
                }
            }
        }
    }

    /// `{"name": "client_secret", "value": "…"}` (Graph's key/value pairs, HAR headers, form
    /// fields), in either order, with `key` for `name`, in any quoting, Ruby's `=>` and YAML's
    /// `- name: PASSWORD value: …`: a pair whose name is a secret's ([`is_secret_pair_name`])
    /// loses its value.
    ///
    /// One pass: each open object (`{`) reads one pair at a time from its own members, and an
    /// object that closes with half a pair drops it (a nested `{"value": 8}` is not the value of
    /// the enclosing object's `name`). A string holding a brace (`"description": "a } b"`) is
    /// read past, so it closes no object. Outside any object only neighbours pair: a value right
    /// after its name (or a name right after its value) with at most a comma, `;` or `&` between,
    /// so `name: AdminPassword conflicts; value: Contoso` in a sentence is no pair.
    fn name_value_pairs(&mut self) {
        let s = self.s;
        let mut open = vec![Pair::default()];
        // Where the last member read outside any object ends.
        let mut outside_end = None;
        let mut i = 0;
        while i < s.len() {
            if let Some(len) = brace_at(s, i, '{', "%7B") {
                open.push(Pair::default());
                i += len;
                continue;
            }
            if let Some(len) = brace_at(s, i, '}', "%7D") {
                if open.len() > 1 {
                    self.finish_pair(open.pop());
                }
                i += len;
                continue;
            }
            let Some((member, k)) = pair_key(s, i) else {
                i = string_with_brace_end(s, i).unwrap_or(i + 1);
                continue;
            };
            let outside = open.len() == 1;
            if outside && !outside_end.is_some_and(|end| are_neighbours(s, end, i)) {
                let pair = std::mem::take(&mut open[0]);
                self.finish_pair(Some(pair));
            }
            let pair = open.last_mut().expect("the outermost pair stays");
            let end = match member {
                PairMember::Name => {
                    let Some((secret, end)) = pair_name(s, k) else {
                        i = k;
                        continue;
                    };
                    let done = pair.name(secret);
                    self.finish_pair(done);
                    i = end;
                    end
                }
                PairMember::Value => {
                    let Some((span, next)) = pair_value(s, k) else {
                        i = k;
                        continue;
                    };
                    let done = pair.value(span);
                    self.finish_pair(done);
                    i = next;
                    span.1
                }
            };
            if outside {
                outside_end = Some(end);
            }
        }
        while let Some(pair) = open.pop() {
            self.finish_pair(Some(pair));
        }
    }

    /// Redacts the values of a pair whose name names a secret.
    fn finish_pair(&mut self, pair: Option<Pair>) {
        if let Some(Pair {
            secret: Some(true),
            values,
        }) = pair
        {
            for (start, end) in values {
                self.add_to_end(start, end);
            }
        }
    }

    /// Every `"value"` member of the object opening at `open` (its own members, not nested ones).
    fn object_values(&mut self, open: usize) {
        let s = self.s;
        let mut depth = 0usize;
        let mut k = open;
        while k < s.len() {
            match s[k] {
                '"' => {
                    let (end, closed) = Quote::Plain('"').content_end(s, k + 1);
                    if !closed {
                        return;
                    }
                    let key = &s[k + 1..end];
                    k = end + 1;
                    let colon = run_end(s, k, |c| c == ' ');
                    if depth == 1 && eq_ci(key, "value") && s.get(colon) == Some(&':') {
                        let v = run_end(s, colon + 1, |c| c == ' ');
                        if s.get(v) == Some(&'"') {
                            let (v_end, _) = Quote::Plain('"').content_end(s, v + 1);
                            self.add_to_end(v + 1, v_end);
                        } else if !matches!(s.get(v), Some('{' | '[')) {
                            let v_end =
                                run_end(s, v, |c| !matches!(c, ',' | '}' | ']' | ' ' | ELLIPSIS));
                            if !matches!(&s[v..v_end], ['n', 'u', 'l', 'l']) {
                                self.add(v, v_end);
                            }
                        }
                    }
                    continue;
                }
                '{' | '[' => depth += 1,
                '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
            k += 1;
        }
    }
}

/// A `name`/`value` pair being read: whether its name names a secret (`None` before its name
/// is read) and the spans of its values.
#[derive(Default)]
struct Pair {
    secret: Option<bool>,
    values: Vec<(usize, usize)>,
}

impl Pair {
    fn is_whole(&self) -> bool {
        self.secret.is_some() && !self.values.is_empty()
    }

    /// Takes a name. A pair that is already whole is returned to be finished, and the name
    /// begins the next pair (a YAML list of `- name: … value: …`).
    fn name(&mut self, secret: bool) -> Option<Pair> {
        let done = self.is_whole().then(|| std::mem::take(self));
        self.secret = Some(secret);
        done
    }

    /// Takes a value; as [`Pair::name`].
    fn value(&mut self, span: (usize, usize)) -> Option<Pair> {
        let done = self.is_whole().then(|| std::mem::take(self));
        self.values.push(span);
        done
    }
}

/// Which member of a pair a key names.
#[derive(Clone, Copy)]
enum PairMember {
    Name,
    Value,
}

/// The quote opening at `at`, unless `at` is inside an escaped quote (the `"` of `\"`, or a
/// backslash after the first).
fn opening_quote(s: &[char], at: usize) -> Option<Quote> {
    if at > 0 && s[at - 1] == '\\' {
        return None;
    }
    Quote::opening_at(s, at)
}

/// A `{` (or `}`) at `at`, plain or URL-encoded, and its length.
fn brace_at(s: &[char], at: usize, brace: char, encoded: &str) -> Option<usize> {
    if s[at] == brace {
        Some(1)
    } else if starts_with_ci(s, at, encoded) {
        Some(3)
    } else {
        None
    }
}

/// A `name`, `key` or `value` key starting at `at`, quoted in any way or bare (YAML, Ruby's
/// `:name =>`), followed by `:`, `=>` or `%3A`: which member it is, and where its value starts
/// (after spaces, `%20` in a URL).
fn pair_key(s: &[char], at: usize) -> Option<(PairMember, usize)> {
    let quote = opening_quote(s, at);
    let word_start = match quote {
        Some(q) => at + q.len(),
        None if s[at].is_ascii_alphabetic() && (at == 0 || !is_name_char(s[at - 1])) => at,
        None => return None,
    };
    let (word, member) = [
        ("name", PairMember::Name),
        ("key", PairMember::Name),
        ("value", PairMember::Value),
    ]
    .into_iter()
    .find(|(word, _)| starts_with_ci(s, word_start, word))?;
    let mut k = word_start + word.len();
    match quote {
        Some(q) if q.is_at(s, k) => k += q.len(),
        Some(_) => return None,
        None if s.get(k).is_some_and(|&c| is_name_char(c)) => return None,
        None => {}
    }
    k = run_end(s, k, |c| c == ' ');
    let separator = if s.get(k) == Some(&':') {
        1
    } else if starts_with_ci(s, k, "=>") {
        2
    } else if starts_with_ci(s, k, "%3A") {
        3
    } else {
        return None;
    };
    let mut value = k + separator;
    loop {
        if s.get(value) == Some(&' ') {
            value += 1;
        } else if starts_with_ci(s, value, "%20") {
            value += 3;
        } else {
            return Some((member, value));
        }
    }
}

/// The name of a pair at `k`, quoted (at most [`MAX_PAIR_NAME_CHARS`]) or bare (`CLIENT_SECRET`,
/// Ruby's `:password`): whether it names a secret, and where it ends.
fn pair_name(s: &[char], k: usize) -> Option<(bool, usize)> {
    let names_secret = pair_name_is_secret;
    if let Some(q) = opening_quote(s, k) {
        let start = k + q.len();
        let limit = (start + MAX_PAIR_NAME_CHARS).min(s.len());
        let end = (start..limit).find(|&j| q.is_at(s, j))?;
        return Some((names_secret(&s[start..end]), end + q.len()));
    }
    let start = if s.get(k) == Some(&':') { k + 1 } else { k };
    let end = run_end(s, start, is_name_char);
    (end > start).then(|| (names_secret(&s[start..end]), end))
}

/// The value of a pair at `k`: its span, and where reading goes on (after a string: its text,
/// `}` and `name:` included, is not read as members). An array or an object is the value whole,
/// brackets included; reading goes on inside it, whose own pairs are read too.
fn pair_value(s: &[char], k: usize) -> Option<((usize, usize), usize)> {
    if let Some(q) = opening_quote(s, k) {
        let start = k + q.len();
        let (end, closed) = q.content_end(s, start);
        let next = if closed { end + q.len() } else { end };
        return Some(((start, end), next));
    }
    match s.get(k) {
        None => return None,
        Some('{' | '[') => return Some(((k, bracketed_end(s, k)), k)),
        Some(_) => {}
    }
    let end = unquoted_value_end(s, k);
    (end > k && !matches!(&s[k..end], ['n', 'u', 'l', 'l'])).then_some(((k, end), end))
}

/// The end (after its closing bracket) of the array or object opening at `at`, strings read
/// past; at most [`MAX_BRACKETED_CHARS`] on, where an unclosed one is cut.
fn bracketed_end(s: &[char], at: usize) -> usize {
    let limit = (at + MAX_BRACKETED_CHARS).min(s.len());
    let s = &s[..limit];
    let mut depth = 0usize;
    let mut j = at;
    while j < limit {
        match s[j] {
            q @ ('"' | '\'') if !is_escaped(s, j) => {
                let (end, closed) = Quote::Plain(q).content_end(s, j + 1);
                if !closed {
                    return limit;
                }
                j = end;
            }
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    limit
}

/// Whether only the closing quote of the first, spaces and at most one `,`, `;` or `&` (or
/// `%2C`, `%3B`, `%26`, spaces as `%20`, in a URL) lie between the end of one member and the key
/// of the next, outside any object.
fn are_neighbours(s: &[char], end: usize, next: usize) -> bool {
    let mut j = end;
    if let Some(q) = Quote::opening_at(s, j) {
        j += q.len();
    }
    let mut separators = 0;
    while j < next {
        if s[j] == ' ' {
            j += 1;
        } else if starts_with_ci(s, j, "%20") {
            j += 3;
        } else if matches!(s[j], ',' | ';' | '&') {
            separators += 1;
            j += 1;
        } else if ["%2C", "%3B", "%26"]
            .iter()
            .any(|e| starts_with_ci(s, j, e))
        {
            separators += 1;
            j += 3;
        } else {
            return false;
        }
    }
    j == next && separators <= 1
}

/// The end of a quoted string at `at` (in any quoting: `"`, `'`, `\"`, `%22`) that holds a brace
/// and is a JSON member's (a `,`, `:`, `}` or `]` follows it), so that its braces open and close
/// no object. Not when a pair's key lies inside: then the quote is a stray one (an apostrophe)
/// and the "string" is text with a pair in it.
fn string_with_brace_end(s: &[char], at: usize) -> Option<usize> {
    let q = opening_quote(s, at)?;
    let (end, closed) = q.content_end(s, at + q.len());
    if !closed {
        return None;
    }
    let content = at + q.len()..end;
    let holds_brace = content.clone().any(|j| {
        matches!(s[j], '{' | '}') || starts_with_ci(s, j, "%7B") || starts_with_ci(s, j, "%7D")
    });
    let after = whitespace_end(s, end + q.len());
    let member_ends = matches!(s.get(after), Some(',' | ':' | '}' | ']'))
        || ["%2C", "%3A", "%7D", "%5D"]
            .iter()
            .any(|e| starts_with_ci(s, after, e));
    (holds_brace && member_ends && !content.into_iter().any(|j| pair_key(s, j).is_some()))
        .then_some(end + q.len())
}

/// Whether the word ending at `end` ends in a full stop: a `.` at the end of the text or before
/// a space, a quote or a bracket. In a token it is punctuation unless the token goes on after it
/// (a wrap right after a part's dot).
fn ends_in_full_stop(s: &[char], end: usize) -> bool {
    end > 0 && s[end - 1] == '.' && s.get(end).is_none_or(|&c| !is_token_char(c))
}

/// The length of the space at `k` between a scheme and its credential: ` `, or `%20` in a URL.
fn space_len(s: &[char], k: usize) -> Option<usize> {
    if s.get(k) == Some(&' ') {
        Some(1)
    } else if starts_with_ci(s, k, "%20") {
        Some(3)
    } else {
        None
    }
}

/// The end of the spaces at `k` before a value: plain, URL-encoded (`%20`, `%09`, `%0A`, `%0D`)
/// or a form body's `+`.
fn whitespace_end(s: &[char], mut k: usize) -> usize {
    loop {
        match s.get(k) {
            Some(' ' | '+') => k += 1,
            Some('%')
                if ["%20", "%09", "%0A", "%0D"]
                    .iter()
                    .any(|e| starts_with_ci(s, k, e)) =>
            {
                k += 3
            }
            _ => return k,
        }
    }
}

/// Where a `name=value` stands in a connection string's `Name=value;…` list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ListPlace {
    /// Not after a plain `=` (`:`, `%3D`, `=>`, a tag), or in a query string (`?name=`,
    /// `&name=`, `%26name=`).
    None,
    /// After a `;` (spaces allowed): inside a list.
    Inside,
    /// After a plain `=` elsewhere: the head of a list when a `;Name=` follows its value (or a
    /// `;` that ends the text, its line or a quoted string).
    MaybeHead,
}

/// Where the name starting at `name_start`, with the separator at `sep` (`sep_len` long), stands
/// in a connection string's `Name=value;…` list.
fn list_place(s: &[char], name: (usize, usize), sep: usize, sep_len: usize) -> ListPlace {
    let (name_start, name_end) = name;
    if s[sep] != '=' || sep_len != 1 || s.get(sep + 1) == Some(&'>') {
        return ListPlace::None;
    }
    let before = run_start(s, name_start, |c| c == ' ');
    if before > 0 && s[before - 1] == ';' {
        return ListPlace::Inside;
    }
    // A query string's name is one word right after its `?` or `&` (`A Pwd` is Title Case
    // words, not a query's).
    let in_query = !s[name_start..name_end].contains(&' ')
        && ((name_start > 0 && matches!(s[name_start - 1], '?' | '&'))
            || (name_start >= 3
                && (starts_with_ci(s, name_start - 3, "%26")
                    || starts_with_ci(s, name_start - 3, "%3F"))));
    if in_query {
        ListPlace::None
    } else {
        ListPlace::MaybeHead
    }
}

/// Whether a connection string's next pair starts at `start`: a name of at most 64 characters
/// (words of name characters with single spaces between, `User Id`), spaces and a plain `=`.
fn list_pair_at(s: &[char], start: usize) -> bool {
    if !s.get(start).is_some_and(char::is_ascii_alphabetic) {
        return false;
    }
    let mut end = start;
    loop {
        end = run_end(s, end, is_name_char);
        if s.get(end) == Some(&' ') && s.get(end + 1).is_some_and(|&c| is_name_char(c)) {
            end += 1;
        } else {
            break;
        }
        if end - start > 64 {
            return false;
        }
    }
    let sep = run_end(s, end, |c| c == ' ');
    end - start <= 64 && s.get(sep) == Some(&'=') && s.get(sep + 1) != Some(&'>')
}

/// Whether an auth-param (`name=value` or `name="value"`, RFC 9110 §11.2) starts at `at`, as in
/// `Digest username="admin", response="…"`: a token, `=` (`%3D` in a URL) and a value. Not
/// base64 with its padding (`abc=`, `abc==`, `abc%3D%3D`).
fn starts_auth_param(s: &[char], at: usize) -> bool {
    let name_end = run_end(s, at, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
    });
    if name_end == at {
        return false;
    }
    let value = if s.get(name_end) == Some(&'=') {
        name_end + 1
    } else if starts_with_ci(s, name_end, "%3D") {
        name_end + 3
    } else {
        return false;
    };
    match s.get(value) {
        Some('"') => true,
        Some(&c) => !is_value_delimiter(c) && c != '=' && !starts_with_ci(s, value, "%3D"),
        None => false,
    }
}

/// Where an unquoted value starting at `k` ends.
fn unquoted_value_end(s: &[char], k: usize) -> usize {
    let mut end = k;
    while end < s.len() && !is_value_delimiter(s[end]) {
        if s[end] == '%' && ENCODED_DELIMITERS.iter().any(|d| starts_with_ci(s, end, d)) {
            break;
        }
        end += 1;
    }
    end
}

/// Whether a separator (after an optional closing quote and spaces) follows `end`.
fn followed_by_separator(s: &[char], end: usize) -> bool {
    let mut k = end;
    if let Some(q) = Quote::opening_at(s, k) {
        k += q.len();
    }
    k = run_end(s, k, |c| c == ' ');
    k < s.len() && separator_at(s, k).is_some()
}

/// A word of [`OPAQUE_MIN_CHARS`] or more that mixes letters and digits, unless it is built of
/// GUIDs (Graph ids such as `{guid}_{guid}`).
fn is_opaque(word: &[char]) -> bool {
    word.len() >= OPAQUE_MIN_CHARS
        && word.iter().any(|c| c.is_ascii_digit())
        && word.iter().any(|c| c.is_ascii_alphabetic())
        && !is_built_of_guids(word)
}

/// A base64 or hex run of at least [`LONG_RUN_MIN_CHARS`] (`=` only as trailing padding). Not a
/// GUID (a tenant or policy id), and not an identifier or a path of them such as
/// `deviceManagement/configurationPolicies`: letters and `/` only, never two capitals in a row,
/// which random base64 practically never is.
fn is_long_run(word: &[char]) -> bool {
    let body_end = run_start(word, word.len(), |c| c == '=');
    let body = &word[..body_end];
    let identifier = body.iter().all(|&c| c.is_ascii_alphabetic() || c == '/')
        && !body
            .windows(2)
            .any(|w| w[0].is_ascii_uppercase() && w[1].is_ascii_uppercase());
    word.len() >= LONG_RUN_MIN_CHARS
        && body.iter().all(|&c| c != '=' && is_base64_char(c))
        && !is_guid(word)
        && !identifier
}

/// `{guid}_{guid}`, `{guid}.{n}`: at least one GUID, the other pieces short.
fn is_built_of_guids(word: &[char]) -> bool {
    let mut pieces = word.split(|c| matches!(c, '_' | '.'));
    pieces.clone().any(is_guid) && pieces.all(|piece| piece.len() < 16 || is_guid(piece))
}

/// `0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0`.
fn is_guid(piece: &[char]) -> bool {
    piece.len() == 36
        && piece.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// A credential after a bare scheme such as `Basic`: base64-like, and not an ordinary word
/// (`Basic authentication` stays readable). In a URL or a form body base64's own `+`, `/` and
/// `=` are percent-encoded (`%2B`, `%2F`, `%3D`): they are judged as the characters they stand
/// for, and stay part of the credential.
fn looks_like_credential(word: &[char]) -> bool {
    let word = &decode_base64_escapes(word);
    if is_marker(word)
        || word.len() < 8
        || !word
            .iter()
            .all(|&c| is_base64_char(c) || c == '.' || c == '~')
    {
        return false;
    }
    let symbol_or_digit = word.iter().any(|c| !c.is_ascii_alphabetic());
    let inner_upper = word[1..].iter().any(char::is_ascii_uppercase);
    let lower = word.iter().any(char::is_ascii_lowercase);
    symbol_or_digit || (inner_upper && lower)
}

/// `word` with `%2B`, `%2F` and `%3D` (any case) decoded to `+`, `/` and `=`; other characters,
/// other escapes included, as they are.
fn decode_base64_escapes(word: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(word.len());
    let mut k = 0;
    while k < word.len() {
        let decoded = [("%2B", '+'), ("%2F", '/'), ("%3D", '=')]
            .iter()
            .find(|(escape, _)| starts_with_ci(word, k, escape));
        match decoded {
            Some(&(_, c)) => {
                out.push(c);
                k += 3;
            }
            None => {
                out.push(word[k]);
                k += 1;
            }
        }
    }
    out
}

/// The `{` of the JSON object holding the key at `at`, walking back over strings and nested
/// objects and arrays.
fn enclosing_object_start(s: &[char], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = at;
    while j > 0 {
        j -= 1;
        match s[j] {
            '"' if !is_escaped(s, j) => {
                // Walk back to the opening quote of this string.
                loop {
                    j = j.checked_sub(1)?;
                    if s[j] == '"' && !is_escaped(s, j) {
                        break;
                    }
                }
            }
            '}' | ']' => depth += 1,
            '[' if depth == 0 => return None,
            '{' if depth == 0 => return Some(j),
            '{' | '[' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Whether the character at `at` is preceded by an odd number of backslashes.
fn is_escaped(s: &[char], at: usize) -> bool {
    (at - run_start(s, at, |c| c == '\\')) % 2 == 1
}

/// Caps the text at [`MAX_CHARS`] characters, never cutting a redaction marker in half.
fn truncate(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= MAX_CHARS {
        return text.to_owned();
    }
    let mut cut = MAX_CHARS - 1;
    let marker: Vec<char> = REDACTED.chars().collect();
    for back in 1..marker.len() {
        if cut >= back && chars[cut - back..].starts_with(&marker) {
            cut -= back;
            break;
        }
    }
    let mut out: String = chars[..cut].iter().collect();
    out.truncate(out.trim_end().len());
    out.push(ELLIPSIS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_named_like_a_secret_keeps_its_port() {
        // Found by tests/sanitizer.rs: the host `pwd` before its port was read as `pwd: value`.
        for host in ["pwd:00", "token:5432", "secret:1"] {
            let out = sanitize(&format!("https://app:0_AA_0-A_0aaA~~a@{host}/path?x=1"));
            assert_eq!(out, format!("https://app:[REDACTED]@{host}/path?x=1"));
        }
        // A secret name elsewhere in the URL is still read.
        let out = sanitize("https://app:0_AA_0-A_0aaA~~a@h:1/p?pwd=hunter22");
        assert!(!out.contains("hunter22"), "{out}");
    }

    #[test]
    fn a_scheme_named_like_a_secret_takes_the_whole_url() {
        // Found in review: read as a URL scheme, `password://ab@cdefghijklmnop` kept the part
        // of the password after `@` as a host. A secret's name before `://` is a name.
        for (input, expected) in [
            ("password://ab@cdefghijklmnop", "password:[REDACTED]"),
            ("pwd://Tr0ub4dor:x@horse-battery-staple", "pwd:[REDACTED]"),
            ("sig0://app:0_AA_0-A_0aaA~~a@h/path?x=1", "sig0:[REDACTED]"),
            ("password://hunter22", "password:[REDACTED]"),
        ] {
            assert_eq!(sanitize(input), expected, "{input}");
        }
        // A real scheme keeps its host.
        assert_eq!(
            sanitize("https://app:pw@host.example/x"),
            "https://app:[REDACTED]@host.example/x"
        );
    }

    #[test]
    fn a_password_that_looks_like_name_value_keeps_the_host() {
        // Found by tests/sanitizer.rs: `KEY=` inside the password took the host with it.
        for password in ["($aA(;_($aa0KEY=", "x;token=abc", "a:password=b"] {
            let out = sanitize(&format!("see https://app:{password}@a/ now"));
            assert_eq!(out, "see https://app:[REDACTED]@a/ now");
        }
    }

    #[test]
    fn redacts_query_string_secrets_but_keeps_the_rest() {
        let out = sanitize("POST /token?client_id=abc&client_secret=s3cr3t&scope=x");
        assert_eq!(
            out,
            "POST /token?client_id=abc&client_secret=[REDACTED]&scope=x"
        );
    }

    #[test]
    fn redacts_json_secrets_and_keeps_graph_error_codes() {
        let out = sanitize(r#"{"error":{"code":"Forbidden","accessToken":"abc def","x":1}}"#);
        assert_eq!(
            out,
            r#"{"error":{"code":"Forbidden","accessToken":"[REDACTED]","x":1}}"#
        );
    }

    #[test]
    fn redacts_authorization_headers_and_bearer_tokens() {
        assert_eq!(
            sanitize("Authorization: Bearer abc.def"),
            "Authorization: [REDACTED]"
        );
        assert_eq!(
            sanitize("sent bearer   xyz, then"),
            "sent bearer [REDACTED], then"
        );
    }

    #[test]
    fn redacts_jwts_and_oauth_codes() {
        let out = sanitize("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln in text, code=0.AXYZ");
        assert_eq!(out, "token [REDACTED] in text, code=[REDACTED]");
    }

    #[test]
    fn collapses_whitespace_and_caps_length() {
        assert_eq!(sanitize("  a \n\t b\r\n"), "a b");
        let long = "word ".repeat(200);
        let out = sanitize(&long);
        assert_eq!(out.chars().count(), MAX_CHARS);
        assert!(out.ends_with(ELLIPSIS));
        assert_eq!(sanitize(&out), out);
    }

    #[test]
    fn redact_marks_where_it_stopped_reading() {
        let long = format!("{} password=hunter2", "word ".repeat(1000));
        let out = redact(&long);
        assert!(out.ends_with(&format!("word{ELLIPSIS}")), "{out}");
        assert!(out.chars().count() <= SCAN_LIMIT + 1);
        // A word across the limit goes whole: its head may be half a secret.
        assert_eq!(redact(&"a".repeat(SCAN_LIMIT + 1)), ELLIPSIS.to_string());
        // Whitespace after the limit cuts nothing off.
        let exact = "a".repeat(SCAN_LIMIT);
        assert_eq!(redact(&format!("{exact} \n ")), exact);
    }

    #[test]
    fn never_cuts_a_marker_in_half() {
        let text = format!("{} password=hunter2 tail", "x".repeat(MAX_CHARS - 15));
        let out = sanitize(&text);
        assert!(!out.contains("hunter2"));
        assert!(out.ends_with("password=…"), "{out}");
        assert_eq!(sanitize(&out), out);
    }

    #[test]
    fn names_split_into_parts() {
        let parts = |n: &str| name_parts(&n.chars().collect::<Vec<_>>());
        assert_eq!(parts("clientSecret"), ["client", "secret"]);
        assert_eq!(parts("x-ms-client-secret"), ["x", "ms", "client", "secret"]);
        assert_eq!(parts("APIKey"), ["api", "key"]);
        assert_eq!(parts("oauth2Token"), ["oauth2", "token"]);
        assert_eq!(parts("Account Key"), ["account", "key"]);
        assert_eq!(parts("settings.password"), ["settings", "password"]);
    }

    #[test]
    fn secret_names_by_parts() {
        let secret = |n: &str| secret_name(&n.chars().collect::<Vec<_>>()).is_some();
        for name in [
            "client_secret",
            "secretText",
            "x-ms-client-secret",
            "certificatePassword",
            "access_token",
            "x-api-key",
            "AccountKey",
            "preSharedKey",
            "connection_string",
            "Session-Id",
            "sig",
            "Set-Cookie",
            // Written as one word.
            "accesstoken",
            "refreshtoken",
            "clientsecret",
            "CLIENTSECRET",
            "Adminpassword",
            "apikey",
            "storageaccountkey",
            // Numbered: a second password or key is as secret as the first.
            "password2",
            "clientSecret2",
            "client_secret2",
            "pwd_2",
            "key1",
            "AccountKey1",
            "access-token-12",
        ] {
            assert!(secret(name), "{name}");
        }
        for name in [
            "assignments",
            "signInFrequency",
            "sessionTimeout",
            "keySize",
            "tokenLifetime",
            "passwordMinimumLength",
            "passwordRequired",
            "displayName",
            "tokenlifetime",
            "passwordrequired",
            "keysize",
            "monkey",
            "possession",
            // A number in or after a harmless name leaves it harmless.
            "keySize2",
            "keySize_2",
            "tokenLifetime2",
            "password2Length",
            "passwordMinimumLength_1",
            "sha256Thumbprint",
            "monkey1",
            "2",
            "_2",
        ] {
            assert!(!secret(name), "{name}");
        }
    }

    #[test]
    fn marked_json_objects_lose_their_value() {
        let text =
            r#"[{"omaUri":"./Vendor/x","value":"hunter22","isEncrypted":true},{"value":"kept"}]"#;
        assert_eq!(
            sanitize(text),
            r#"[{"omaUri":"./Vendor/x","value":"[REDACTED]","isEncrypted":true},{"value":"kept"}]"#
        );
    }

    #[test]
    fn graph_ids_built_of_guids_stay_readable() {
        let id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0_1a2b3c4d-4b5a-6978-8796-a5b4c3d2e1f0";
        assert_eq!(sanitize(id), id);
    }
}
