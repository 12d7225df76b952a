//! Property tests for the one sanitizer: secrets never survive, the length is capped, no input
//! panics and sanitizing twice changes nothing.

use proptest::prelude::*;
use tenantatlas::server::sanitize::{
    is_secret_name, looks_encoded_text, sanitize, MAX_CHARS, REDACTED,
};

/// Free text around the secret: any printable or whitespace character, including quotes,
/// separators and non-ASCII letters.
fn noise() -> impl Strategy<Value = String> {
    prop::string::string_regex("[ -~\\t\\n\\r\u{e9}\u{4e2d}\u{1f600}]{0,120}").expect("valid regex")
}

/// A secret value: long and random enough never to occur in the noise by chance.
fn secret() -> impl Strategy<Value = String> {
    prop::string::string_regex("[A-Za-z0-9~._%-]{12,48}")
        .expect("valid regex")
        .prop_map(|s| format!("Zq{s}"))
}

fn b64url(min: usize, max: usize) -> impl Strategy<Value = String> {
    prop::string::string_regex(&format!("[A-Za-z0-9_-]{{{min},{max}}}")).expect("valid regex")
}

/// A JWT as Entra issues them: three base64url parts, the header starting `eyJ`.
fn jwt() -> impl Strategy<Value = String> {
    (b64url(10, 40), b64url(10, 200), b64url(10, 90))
        .prop_map(|(h, p, s)| format!("eyJ{h}.{p}.{s}"))
}

/// Every way a secret is written next to its name in query strings, JSON, headers and logs.
fn embedded_secret() -> impl Strategy<Value = (String, String)> {
    let keys = prop::sample::select(vec![
        "client_secret",
        "access_token",
        "refresh_token",
        "id_token",
        "password",
        "sig",
        "code",
        "assertion",
        "client_assertion",
        "clientSecret",
        "accessToken",
        "Password",
    ]);
    let shapes = prop::sample::select(vec![
        "?{k}={v}&next=1",
        "&{k}={v}",
        "{k}={v}",
        "\"{k}\":\"{v}\"",
        "\"{k}\": \"{v}\"",
        "'{k}': '{v}'",
        "{k}: {v}",
        "{k} = {v}",
        "Authorization: Bearer {v}",
        "authorization=Bearer {v}",
        "\"Authorization\": \"Bearer {v}\"",
        "Bearer {v}",
    ]);
    (keys, shapes, secret()).prop_map(|(k, shape, v)| {
        let text = shape.replace("{k}", k).replace("{v}", &v);
        // `code` is only a secret as `code=`: Graph's JSON `"code": "Forbidden"` stays readable.
        let text = if k == "code" && !shape.contains("{k}=") && !shape.contains("Bearer") {
            format!("code={v}")
        } else {
            text
        };
        (text, v)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn named_secrets_never_survive(
        before in noise(), after in noise(), (embedded, secret) in embedded_secret()
    ) {
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        prop_assert!(!out.contains(&secret), "{secret} survived in {out}");
    }

    #[test]
    fn jwts_never_survive_in_any_part(before in noise(), after in noise(), token in jwt()) {
        let text = format!("{before} {token} {after}");
        let out = sanitize(&text);
        for part in token.split('.') {
            prop_assert!(!out.contains(part), "{part} of a JWT survived in {out}");
        }
    }

    #[test]
    fn secrets_never_survive_in_json_error_bodies(token in jwt(), secret in secret()) {
        let body = format!(
            r#"{{"error":{{"code":"InternalServerError","message":"upstream said Authorization: Bearer {token}","innerError":{{"client_secret":"{secret}"}}}}}}"#
        );
        let out = sanitize(&body);
        prop_assert!(!out.contains(&token[..20]));
        prop_assert!(!out.contains(&secret));
        prop_assert!(out.contains("InternalServerError"));
    }

    #[test]
    fn output_is_capped_and_never_panics(input in any::<String>()) {
        let out = sanitize(&input);
        prop_assert!(out.chars().count() <= MAX_CHARS);
        prop_assert!(!out.contains("  "));
        prop_assert_eq!(out.trim(), out.as_str());
    }

    #[test]
    fn long_inputs_are_capped(input in prop::string::string_regex("[ -~]{280,2000}").expect("valid")) {
        prop_assert!(sanitize(&input).chars().count() <= MAX_CHARS);
    }

    #[test]
    fn sanitizing_is_idempotent(input in any::<String>()) {
        let once = sanitize(&input);
        prop_assert_eq!(sanitize(&once), once);
    }

    #[test]
    fn sanitizing_long_ascii_is_idempotent(
        input in prop::string::string_regex(
            "([ -~]|password=|\\[REDACTED\\]|Bearer |eyJ|\"|\u{2026}){0,400}"
        ).expect("valid regex")
    ) {
        let once = sanitize(&input);
        prop_assert_eq!(sanitize(&once), once);
    }

    #[test]
    fn sanitizing_text_with_secrets_is_idempotent(
        before in noise(), after in noise(), (embedded, _) in embedded_secret(), token in jwt()
    ) {
        let text = format!("{before} {embedded} {token} {after} {before}");
        let once = sanitize(&text);
        prop_assert_eq!(sanitize(&once), once);
    }
}

// ---------------------------------------------------------------------------------------------
// Families of secrets. Each test embeds a random secret of 16–64 characters in one family's
// shapes, between random text, and asserts that no 8-character piece of it survives.
// ---------------------------------------------------------------------------------------------

/// Every 8-character piece of `secret` that appears in `out`.
fn leaked_pieces(secret: &str, out: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .map(|w| w.iter().collect::<String>())
        .filter(|piece| out.contains(piece.as_str()))
        .collect()
}

/// Fails the property when any 8-character piece of `secret` is in `out`.
fn assert_no_piece(secret: &str, text: &str, out: &str) -> Result<(), TestCaseError> {
    let leaked = leaked_pieces(secret, out);
    prop_assert!(
        leaked.is_empty(),
        "{leaked:?} of {secret:?} survived\n in: {text}\nout: {out}"
    );
    Ok(())
}

/// A random secret of 16–64 characters drawn from `alphabet` (a regex character class body).
fn secret_of(alphabet: &str) -> impl Strategy<Value = String> {
    prop::string::string_regex(&format!("[{alphabet}]{{16,64}}")).expect("valid regex")
}

/// What an unquoted value may hold: everything but the characters that end one.
const UNQUOTED: &str = "A-Za-z0-9._~+/=!*$#@:^|?-";
/// What a quoted value may hold: any printable character but the quotes and the backslash.
const QUOTED: &str = " !#-&(-\\[\\]-~";
/// What a password in URL userinfo may hold (RFC 3986 unreserved, sub-delims, `%`).
const USERINFO: &str = "A-Za-z0-9._~!$&()*+,;=%-";
/// Base64 and base64url.
const BASE64: &str = "A-Za-z0-9+/=_-";

/// Base64 that surely holds `+` or `/` and ends in `=` padding, as a Shared Key signature does.
fn padded_base64() -> impl Strategy<Value = String> {
    prop::string::string_regex("[A-Za-z0-9+/]{4,30}[+/][A-Za-z0-9+/]{4,30}={1,2}")
        .expect("valid regex")
}

/// `credential` as a URL or a form body writes it: `+`, `/` and `=` percent-encoded.
fn percent_encode_base64(credential: &str) -> String {
    credential
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// Free text around a shape, without the characters that would glue it to the shape's name.
fn spaced_noise() -> impl Strategy<Value = String> {
    noise()
}

/// Word parts that come before the secret part of a name.
fn prefix_parts() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "client",
            "x",
            "ms",
            "account",
            "shared",
            "access",
            "refresh",
            "certificate",
            "pre",
            "api",
            "primary",
            "storage",
            "app",
            "id",
            "sas",
            "proxy",
            "db",
            "admin",
            "user",
        ]),
        0..3,
    )
}

/// A name's word parts, written in one of the ways names are written.
fn write_name(parts: &[&str], style: u8) -> String {
    let title = |p: &str| {
        let mut c = p.chars();
        c.next()
            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
            .unwrap_or_default()
    };
    match style % 7 {
        0 => parts
            .iter()
            .enumerate()
            .map(|(i, p)| if i == 0 { p.to_string() } else { title(p) })
            .collect(),
        1 => parts.iter().map(|p| title(p)).collect(),
        2 => parts.join("_"),
        3 => parts.join("-"),
        4 => parts.join("."),
        5 => parts.join("_").to_ascii_uppercase(),
        _ => parts.iter().map(|p| title(p)).collect::<Vec<_>>().join("-"),
    }
}

/// A secret-bearing name: its last part is a secret word, or any part is `secret`.
fn secret_name() -> impl Strategy<Value = String> {
    let last = prop::sample::select(vec![
        "password",
        "passwd",
        "pwd",
        "token",
        "key",
        "apikey",
        "sig",
        "signature",
        "credential",
        "credentials",
        "session",
        "sessionid",
        "secret",
    ]);
    let by_last = (prefix_parts(), last, any::<u8>()).prop_map(|(mut parts, last, style)| {
        parts.push(last);
        write_name(&parts, style)
    });
    let two_words = (
        prefix_parts(),
        prop::sample::select(vec![
            ["connection", "string"],
            ["api", "key"],
            ["session", "id"],
            ["pass", "word"],
        ]),
        any::<u8>(),
    )
        .prop_map(|(mut parts, last, style)| {
            parts.extend(last);
            write_name(&parts, style)
        });
    let with_secret = (
        prefix_parts(),
        prop::sample::select(vec!["text", "value", "id", "name", "ref", "hint"]),
        any::<u8>(),
    )
        .prop_map(|(mut parts, tail, style)| {
            parts.push("secret");
            parts.push(tail);
            write_name(&parts, style)
        });
    // Written as one word, as environment variables and some SDKs do: `clientsecret`,
    // `ACCESSTOKEN`, `Refreshtoken`. Only words no ordinary word ends with (not `key`: `monkey`).
    let run_together = (
        prefix_parts(),
        prop::sample::select(vec![
            "secret",
            "secrets",
            "token",
            "tokens",
            "password",
            "passwd",
            "pwd",
            "passphrase",
            "credential",
            "credentials",
            "signature",
            "apikey",
            "sessionid",
            "connectionstring",
            "accountkey",
            "accesskey",
            "privatekey",
        ]),
        0u8..3,
    )
        .prop_map(|(mut parts, last, case)| {
            parts.push(last);
            let word = parts.concat();
            match case {
                0 => word,
                1 => word.to_ascii_uppercase(),
                _ => word[..1].to_ascii_uppercase() + &word[1..],
            }
        });
    prop_oneof![by_last, two_words, with_secret, run_together]
}

/// `name` and `value` in one of the syntaxes a secret is written in, and whether the value must
/// be quoted-safe (`true`) or unquoted-safe.
fn named_shapes() -> impl Strategy<Value = (&'static str, bool)> {
    prop::sample::select(vec![
        ("{n}: {v}", false),
        ("{n}:{v}", false),
        ("{n}={v}", false),
        ("{n} = {v}", false),
        ("\"{n}\":\"{v}\"", true),
        ("\"{n}\": \"{v}\"", true),
        ("{\"{n}\" : \"{v}\", \"x\": 1}", true),
        ("'{n}': '{v}'", true),
        ("{\\\"{n}\\\":\\\"{v}\\\"}", true),
        ("{n}%3D{v}", false),
        ("{n}%3d{v}%26next%3D1", false),
        ("%22{n}%22%3A%22{v}%22", false),
        ("?a=1&{n}={v}&b=2", false),
        ("https://host.example/path?{n}={v}", false),
        ("https%3A%2F%2Fhost%2Fp%3Fx%3D1%26{n}%3D{v}", false),
        ("Server=tcp:db;{n}={v};Encrypt=true", false),
        ("<{n}>{v}</{n}>", false),
        ("{n}: \"{v}\"", true),
        ("\"{n}\": [\"{v}\"]", true),
        ("{n}=\"{v}\"", true),
        // An encoded space (`%20`, or `+` in a form body) after an encoded separator.
        ("{n}%3A%20{v}", false),
        ("%22{n}%22%3A%20%22{v}%22", false),
        ("%22{n}%22%3A+%22{v}%22", false),
        // Ruby's and Perl's hashes.
        ("\"{n}\" => \"{v}\"", true),
        ("'{n}' => '{v}'", true),
        ("{:{n} => '{v}'}", true),
        ("{n}=>{v}", false),
        ("{n} => {v}", false),
    ])
}

/// A `name`/`value` pair in the syntaxes it is written in (`{nk}` and `{vk}` the keys, `{n}` the
/// pair's name, `{v}` its value), and whether the value must be quoted-safe.
fn pair_shapes() -> impl Strategy<Value = (&'static str, bool)> {
    prop::sample::select(vec![
        ("{\"{nk}\":\"{n}\",\"{vk}\":\"{v}\"}", true),
        ("{\"{vk}\":\"{v}\",\"{nk}\":\"{n}\"}", true),
        ("{ \"{nk}\" : \"{n}\" , \"{vk}\" : \"{v}\" }", true),
        ("[{\"{nk}\": \"Accept\", \"{vk}\": \"1\"}, {\"{vk}\": \"{v}\", \"{nk}\": \"{n}\"}]", true),
        // A brace inside another member's string (`{note}`, in any quoting) opens or closes no
        // object.
        ("{\"@odata.type\":\"#microsoft.graph.keyValuePair\",\"{nk}\":\"{n}\",\"description\":\"{note}\",\"{vk}\":\"{v}\"}", true),
        ("{\"{vk}\":\"{v}\",\"description\":\"{note}\",\"{nk}\":\"{n}\"}", true),
        ("{\\\"{nk}\\\":\\\"{n}\\\",\\\"note\\\":\\\"{note}\\\",\\\"{vk}\\\":\\\"{v}\\\"}", true),
        ("{\\\"{vk}\\\": \\\"{v}\\\", \\\"note\\\": \\\"{note}\\\", \\\"{nk}\\\": \\\"{n}\\\"}", true),
        ("{'{nk}': '{n}', 'note': '{note}', '{vk}': '{v}'}", true),
        ("{'{vk}': '{v}', 'note': '{note}', '{nk}': '{n}'}", true),
        ("%7B%22{nk}%22%3A%22{n}%22%2C%22note%22%3A%22{enote}%22%2C%22{vk}%22%3A%22{v}%22%7D", false),
        ("{\\\"{nk}\\\":\\\"{n}\\\",\\\"{vk}\\\":\\\"{v}\\\"}", true),
        ("{\\\"{vk}\\\": \\\"{v}\\\", \\\"{nk}\\\": \\\"{n}\\\"}", true),
        ("{'{nk}': '{n}', '{vk}': '{v}'}", true),
        ("{\"{nk}\" => \"{n}\", \"{vk}\" => \"{v}\"}", true),
        ("{:{nk} => :{n}, :{vk} => '{v}'}", true),
        ("env:\n- {nk}: {n}\n  {vk}: {v}\n- {nk}: LOG_LEVEL\n  {vk}: debug", false),
        ("%7B%22{nk}%22%3A%22{n}%22%2C%22{vk}%22%3A%22{v}%22%7D", false),
        // URL-encoded without braces: neighbours across an encoded separator.
        ("%22{nk}%22%3A%22{n}%22%2C%22{vk}%22%3A%22{v}%22", false),
        ("%22{vk}%22%3A%22{v}%22%26%22{nk}%22%3A%22{n}%22", false),
        ("%22{nk}%22%3A%20%22{n}%22%3B%20%22{vk}%22%3A%20%22{v}%22", false),
        // A value that is an array or an object goes whole.
        ("{\"{nk}\":\"{n}\",\"{vk}\":[\"{v}\"]}", true),
        ("{\"{vk}\": [\"x\", \"{v}\"], \"{nk}\": \"{n}\"}", true),
        ("{\"{nk}\":\"{n}\",\"{vk}\":{\"text\":\"{v}\",\"n\":1}}", true),
        ("{\"{vk}\":{\"a\":{\"b\":[\"{v}\"]}},\"{nk}\":\"{n}\"}", true),
        ("{'{nk}': '{n}', '{vk}': ['{v}']}", true),
    ])
}

/// A word of an ordinary failure message: words, numbers, GUIDs, Graph URLs and paths, dotted
/// names, camelCase codes.
fn ordinary_word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "the", "policy", "failed", "with", "Graph", "returned", "404", "Not", "Found",
            "retry", "after", "30", "seconds", "device", "configuration", "Windows", "10",
            "Contoso", "tenant", "token", "expired", "password", "reset", "required",
            "name", "value", "key", "secret", "rotation", "is", "due", "OK", "session",
            "authentication", "disabled", "ResourceNotFound", "Wi-Fi", "v1.0", "PT1H",
            "e.g.", "(see", "above)", "[1]", "display", "sig", "accesstoken", "clientsecret",
            "deviceManagement/configurationPolicies", "tokenLifetime", "keySize",
            "401", "Unauthorized", "Request", "Contoso.Baseline.v2", "graph.microsoft.com",
            "AADSTS50013", "Windows10", "InvalidAuthenticationToken", "SharePoint",
            "deviceManagementConfigurationPolicy", "LOG_LEVEL", "x64-based",
        ]).prop_map(str::to_owned),
        "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        "https://graph\\.microsoft\\.com/beta/deviceManagement/(deviceConfigurations|configurationPolicies)/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}(\\?\\$select=id,name&\\$top=25)?",
        "[a-z]{3,10}-[0-9]{1,5}",
        "[0-9]{1,6}",
        "[A-Z][a-z]{2,9}(\\.[A-Z][a-z]{2,9}){1,2}(\\.v[0-9])?",
        // A capitalised word, not an authorization scheme (`Pop <credential>`).
        "[A-Z][a-z]{2,9}".prop_filter("not a scheme", |w| {
            !["Basic", "Bearer", "Negotiate", "Ntlm", "Pop", "Sharedkey", "Sharedkeylite"]
                .contains(&w.as_str())
        }),
    ]
}

/// A display name as admins write them, ending in a word that would name a secret in an
/// identifier: `Windows LAPS password`, `Contoso Wi-Fi key`.
fn display_name() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop::sample::select(vec![
                "Windows",
                "LAPS",
                "Contoso",
                "Kiosk",
                "Baseline",
                "local",
                "admin",
                "Wi-Fi",
                "BitLocker",
                "recovery",
                "Entra",
                "app",
                "[Prod]",
                "-",
            ]),
            1..4,
        ),
        prop::sample::select(vec![
            "password",
            "Password",
            "secret",
            "key",
            "token",
            "Credentials",
            "PIN password",
        ]),
    )
        .prop_map(|(words, last)| format!("{} {last}", words.join(" ")))
}

/// `token` wrapped as a terminal, a log viewer or a base64 encoder wraps it: the first line
/// holds `first` characters (what is left of the line it starts on), every other line `width`.
/// Also the length of the last line, its dots not counted.
fn wrap_token(token: &str, first: usize, width: usize, gap: &str) -> (String, usize) {
    let mut lines = vec![&token[..first.min(token.len())]];
    let mut from = first.min(token.len());
    while from < token.len() {
        let to = (from + width).min(token.len());
        lines.push(&token[from..to]);
        from = to;
    }
    let last = lines.last().map_or(0, |l| l.replace('.', "").len());
    (lines.join(gap), last)
}

/// A note with braces in it, as the string of another member (`"description": "a } b"`).
fn brace_note() -> impl Strategy<Value = String> {
    prop::string::string_regex("[a-z ,]{0,8}[{}][a-z ,{}\\[\\]]{0,8}").expect("valid regex")
}

/// `shape` with its keys, name, value and note (`{note}`, or URL-encoded `{enote}`) in place.
fn write_pair(
    shape: &str,
    name_key: &str,
    value_key: &str,
    name: &str,
    value: &str,
    note: &str,
) -> String {
    let encoded_note = note
        .replace(' ', "%20")
        .replace(',', "%2C")
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace('[', "%5B")
        .replace(']', "%5D");
    shape
        .replace("{nk}", name_key)
        .replace("{vk}", value_key)
        .replace("{n}", name)
        .replace("{v}", value)
        .replace("{note}", note)
        .replace("{enote}", &encoded_note)
}

/// `token` cut at `cuts` and its pieces joined by `gap`. A cut falls after the `eyJ` that marks
/// a JWT (a cut inside it leaves nothing to tell the pieces from other words).
fn split_token(token: &str, cuts: &[prop::sample::Index], gap: &str) -> String {
    let mut at: Vec<usize> = cuts.iter().map(|c| 3 + c.index(token.len() - 3)).collect();
    at.sort_unstable();
    at.dedup();
    let mut out = String::new();
    let mut from = 0;
    for cut in at {
        out.push_str(&token[from..cut]);
        out.push_str(gap);
        from = cut;
    }
    out.push_str(&token[from..]);
    out
}

/// Where a JWT appears in text.
fn jwt_shapes() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "{t}",
        "\"{t}\"",
        "<{t}>",
        "({t})",
        "'{t}'",
        "[{t}]",
        "token:\n{t}",
        "token:\n  {t}\n",
        "\"id_token\": \"{t}\"",
        "Authorization: Bearer {t}",
        "access_token={t}&state=1",
    ])
}

fn unquoted_secret() -> impl Strategy<Value = String> {
    secret_of(UNQUOTED)
}

fn quoted_secret() -> impl Strategy<Value = String> {
    secret_of(QUOTED)
        .prop_map(|s| s.trim().to_owned())
        .prop_filter("long enough", |s| s.len() >= 16)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn userinfo_credentials_never_survive(
        before in spaced_noise(), after in spaced_noise(),
        scheme in prop_oneof![
            prop::sample::select(vec![
                "https", "http", "postgres", "postgresql", "mysql", "mongodb+srv", "redis",
                "rediss", "amqps", "ftp", "sftp", "smb", "ldap", "git+ssh", "s3", "jdbc:postgresql",
            ]).prop_map(str::to_owned),
            // A random scheme that is no secret's name: a secret's name before `://` takes
            // the whole URL with it, host and all (`sig0://…`, `key1://…`), so the host
            // would not stay.
            "[a-z]{3,8}[0-9]".prop_filter("a scheme, not a secret's name", |s| !is_secret_name(s)),
        ],
        user in prop::sample::select(vec![
            "app", "sa", "postgres", "admin", "x-access-token", "user.name", "svc_backup", "A1",
        ]),
        host in "[a-z0-9.-]{1,20}(:[0-9]{2,5})?",
        secret in secret_of(USERINFO),
        shape in prop::sample::select(vec![
            "{s}://{u}:{p}@{h}/path?x=1",
            "{s}://{u}:{p}@{h}",
            "{s}://{p}@{h}/",
            "\"url\":\"{s}://{u}:{p}@{h}/db\"",
            "connect to {s}://{u}:{p}@{h} failed",
            "({s}://{u}:{p}@{h})",
            "redirect_uri={s}%3A%2F%2F{u}%3A{pe}%40{h}%2Fcb&state=1",
        ]),
    ) {
        // Inside a query string a password's reserved characters would be encoded twice
        // (`%2526`); the test keeps its unreserved characters, which travel as they are.
        let secret = if shape.contains("{pe}") {
            secret.chars().filter(|c| c.is_ascii_alphanumeric() || "-._~".contains(*c)).collect()
        } else {
            secret
        };
        prop_assume!(secret.len() >= 16);
        let embedded = shape
            .replace("{s}", &scheme)
            .replace("{u}", user)
            .replace("{pe}", &secret)
            .replace("{p}", &secret)
            .replace("{h}", &host);
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        assert_no_piece(&secret, &text, &out)?;
        prop_assert!(out.contains(&host), "the host stays readable: {out}");
    }

    #[test]
    fn values_of_secret_names_never_survive_in_any_syntax(
        before in spaced_noise(), after in spaced_noise(),
        name in secret_name(),
        (shape, quoted) in named_shapes(),
        unquoted in unquoted_secret(),
        quoted_value in quoted_secret(),
    ) {
        let secret = if quoted { quoted_value } else { unquoted };
        let embedded = shape.replace("{n}", &name).replace("{v}", &secret);
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        assert_no_piece(&secret, &text, &out)?;
    }

    #[test]
    fn numbered_secret_names_never_survive(
        before in spaced_noise(), after in spaced_noise(),
        name in secret_name(),
        // A second password or key (`password2`, `client_secret_2`, Azure's `key1`).
        joint in prop::sample::select(vec!["", "_", "-"]),
        number in "[0-9]{1,3}",
        (shape, quoted) in named_shapes(),
        unquoted in unquoted_secret(),
        quoted_value in quoted_secret(),
    ) {
        let secret = if quoted { quoted_value } else { unquoted };
        let name = format!("{name}{joint}{number}");
        let embedded = shape.replace("{n}", &name).replace("{v}", &secret);
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        assert_no_piece(&secret, &text, &out)?;
    }

    #[test]
    fn quoted_names_with_spaces_are_names_too(
        parts in prefix_parts(),
        last in prop::sample::select(vec!["Password", "Secret", "Key", "Token", "Signature"]),
        secret in quoted_secret(),
    ) {
        let mut words: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
        words.push(last.into());
        let name = words.join(" ");
        let text = format!("{{\"{name}\": \"{secret}\", \"Title {name}\": 1}}");
        let out = sanitize(&text);
        assert_no_piece(&secret, &text, &out)?;
    }

    #[test]
    fn every_cookie_value_is_redacted(
        before in spaced_noise(), after in spaced_noise(),
        names in prop::collection::vec("[A-Za-z][A-Za-z0-9_]{0,12}", 3),
        others in prop::collection::vec("[A-Za-z0-9]{1,12}", 2),
        secret in secret_of("!#-+\\--:<-\\[\\]-~"),
        shape in prop::sample::select(vec![
            "Cookie: {a}={x}; {b}={v}; {c}={y}",
            "cookie: {b}={v}",
            "Set-Cookie: {b}={v}; Path=/; Secure; HttpOnly; SameSite=Lax",
            "set-cookie: {b}={v}; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Max-Age=3600",
            "Set-Cookie: {b}=\"{v}\"; Domain=.example.com",
            "\"Cookie\": \"{a}={x}; {b}={v}\"",
            "headers: {\"set-cookie\": [\"{b}={v}; path=/\"]}",
        ]),
    ) {
        let embedded = shape
            .replace("{a}", &names[0]).replace("{b}", &names[1]).replace("{c}", &names[2])
            .replace("{x}", &others[0]).replace("{y}", &others[1])
            .replace("{v}", &secret);
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        assert_no_piece(&secret, &text, &out)?;
    }

    #[test]
    fn values_of_objects_marked_secret_never_survive(
        before in spaced_noise(), after in spaced_noise(),
        secret in quoted_secret(),
        marker in prop::sample::select(vec![
            "\"isEncrypted\":true",
            "\"isEncrypted\": true",
            "\"secretReferenceValueId\":\"3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b\"",
        ]),
        value_first in any::<bool>(),
        nested in any::<bool>(),
        name in "[A-Za-z ]{1,30}",
    ) {
        let value = format!("\"value\":\"{secret}\"");
        let members = if value_first {
            format!("\"displayName\":\"{name}\",{value},\"omaUri\":\"./Device/Vendor/MSFT/{name}\",{marker}")
        } else {
            format!("\"displayName\":\"{name}\",{marker},\"omaUri\":\"./Device/Vendor/MSFT/x\",{value}")
        };
        let object = format!("{{\"@odata.type\":\"#microsoft.graph.omaSettingString\",{members}}}");
        let body = if nested {
            format!("{{\"omaSettings\":[{{\"value\":\"kept\"}},{object}],\"id\":\"x\"}}")
        } else {
            object
        };
        let text = format!("{before} {body} {after}");
        let out = sanitize(&text);
        assert_no_piece(&secret, &text, &out)?;
    }

    #[test]
    fn authorization_credentials_never_survive(
        before in spaced_noise(), after in spaced_noise(),
        scheme in prop_oneof![
            prop::sample::select(vec!["Bearer", "Basic", "Negotiate", "NTLM", "PoP", "SharedKey", "Digest", "MAC"])
                .prop_map(str::to_owned),
            "[A-Z][A-Za-z0-9-]{2,12}",
        ],
        header in prop::sample::select(vec!["Authorization", "authorization", "Proxy-Authorization", "x-ms-authorization"]),
        credential in secret_of("A-Za-z0-9._~+/=-"),
        shape in prop::sample::select(vec![
            "{h}: {s} {c}",
            "{h}={s} {c}",
            "\"{h}\": \"{s} {c}\"",
            "\"{h}\":\"{s} {c}\"",
            "{h}={s}%20{c}",
            "{h}%3A%20{s}%20{c}",
        ]),
    ) {
        let embedded = shape.replace("{h}", header).replace("{s}", &scheme).replace("{c}", &credential);
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        assert_no_piece(&credential, &text, &out)?;
    }

    #[test]
    fn bare_scheme_credentials_never_survive(
        before in spaced_noise(), after in spaced_noise(),
        scheme in prop::sample::select(vec![
            "Bearer", "bearer", "Basic", "basic", "Negotiate", "NTLM", "PoP", "SharedKey", "SharedKeyLite",
        ]),
        credential in prop_oneof![secret_of(BASE64), padded_base64()],
        account in "[a-z0-9]{3,24}",
        shape in prop::sample::select(vec![
            "sent {s} {c}", "sent {s}%20{c}", "sent {s}+{c}", "sent {s} {a}:{c}",
            // In a URL or a form body the credential's own `+`, `/` and `=` are encoded too.
            "sent {s}%20{e}", "sent {s}+{e}", "sent {s}%20{a}%3A{e}",
        ]),
    ) {
        // Only Shared Key puts the storage account before its signature (`SharedKey acct:sig`).
        let shape = if shape.contains("{a}") && !scheme.starts_with("SharedKey") {
            "sent {s} {c}"
        } else {
            shape
        };
        let encoded = percent_encode_base64(&credential);
        let embedded = shape
            .replace("{s}", scheme)
            .replace("{a}", &account)
            .replace("{c}", &credential)
            .replace("{e}", &encoded);
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        assert_no_piece(&credential, &text, &out)?;
        assert_no_piece(&encoded, &text, &out)?;
    }

    #[test]
    fn jwts_never_survive_anywhere(
        before in spaced_noise(), after in spaced_noise(), token in jwt(),
        shape in prop::sample::select(vec![
            "{t}", "\"{t}\"", "({t})", "<{t}>", "x={t}", "https://h/cb#id={t}&state=1",
            "%22{t}%22", "\"foo\":\"{t}\"", "[{t}]", "upstream said {t}.",
        ]),
    ) {
        let embedded = shape.replace("{t}", &token);
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        assert_no_piece(&token, &text, &out)?;
    }

    #[test]
    fn values_in_escaped_json_never_survive(
        before in spaced_noise(), after in spaced_noise(),
        name in secret_name(),
        // Quotes and backslashes inside the value, escaped once more at every level.
        secret in secret_of(" !#-&(-\\[\\]-~\"\\\\"),
        levels in 1usize..=3,
    ) {
        let json_string = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut body = format!("{{{}:{},\"x\":1}}", json_string(&name), json_string(&secret));
        // A body logged with `{:?}` (once, or again inside another `{:?}`).
        for _ in 1..levels {
            body = format!("{body:?}");
        }
        let text = format!("{before} body={body} {after}");
        let out = sanitize(&text);
        assert_no_piece(&secret, &text, &out)?;
    }

    #[test]
    fn pem_blocks_never_survive(
        before in spaced_noise(), after in spaced_noise(),
        label in prop::sample::select(vec!["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "CERTIFICATE"]),
        body in secret_of("A-Za-z0-9+/"),
        split in 1usize..16,
        newline in prop::sample::select(vec!["\n", "\r\n", "\\n", " "]),
        closed in any::<bool>(),
    ) {
        let (head, tail) = body.split_at(split.min(body.len()));
        let end = if closed { format!("{newline}-----END {label}-----") } else { String::new() };
        let text = format!("{before} -----BEGIN {label}-----{newline}{head}{newline}{tail}==={end} {after}");
        let out = sanitize(&text);
        assert_no_piece(head, &text, &out)?;
        assert_no_piece(tail, &text, &out)?;
        assert_no_piece(&body, &text, &out)?;
    }

    #[test]
    fn long_runs_after_secret_names_never_survive(
        before in spaced_noise(), after in spaced_noise(),
        name in secret_name(),
        run in prop_oneof![
            "[A-Za-z0-9+/]{32,64}={0,2}",
            "[A-Za-z0-9_-]{32,64}",
            "[0-9a-f]{32,64}",
            "[0-9A-F]{32,64}",
        ],
        shape in prop::sample::select(vec![
            "{n} {r}", "{n} is {r}", "the {n} was {r}.", "{n} ({r})", "{n} \"{r}\"", "{n} of app: {r}",
        ]),
    ) {
        let embedded = shape.replace("{n}", &name).replace("{r}", &run);
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        assert_no_piece(&run, &text, &out)?;
    }

    #[test]
    fn values_of_pairs_named_secret_never_survive(
        before in spaced_noise(), after in spaced_noise(),
        name in secret_name(),
        name_key in prop::sample::select(vec!["name", "Name", "key", "Key"]),
        value_key in prop::sample::select(vec!["value", "Value"]),
        (shape, quoted) in pair_shapes(),
        unquoted in unquoted_secret(),
        quoted_value in quoted_secret(),
        note in brace_note(),
    ) {
        let secret = if quoted { quoted_value } else { unquoted };
        let embedded = write_pair(shape, name_key, value_key, &name, &secret, &note);
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        assert_no_piece(&secret, &text, &out)?;
    }

    #[test]
    fn pairs_with_harmless_names_keep_their_value(
        name in prop::sample::select(vec![
            "displayName", "omaUri", "description", "Accept", "Content-Type", "LOG_LEVEL",
            "tokenLifetime", "passwordRequired", "keySize", "sessionTimeout", "tokentype",
            "passwordlength", "keysize",
        ]),
        name_key in prop::sample::select(vec!["name", "Name"]),
        value_key in prop::sample::select(vec!["value", "Value"]),
        value in prop_oneof![
            prop::sample::select(vec![
                "Contoso", "true", "14", "PT1H", "application/json", "debug", "notConfigured",
                "./Device/Vendor/MSFT/Policy/Config/DeviceLock/MinDevicePasswordLength",
            ]).prop_map(str::to_owned),
            "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        ],
        (shape, _) in pair_shapes(),
        note in brace_note(),
    ) {
        let text = write_pair(shape, name_key, value_key, name, &value, &note);
        let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
        prop_assume!(collapsed.chars().count() <= MAX_CHARS);
        prop_assert_eq!(sanitize(&text), collapsed);
    }

    #[test]
    fn jwts_wrapped_over_lines_never_survive(
        before in spaced_noise(), after in spaced_noise(), token in jwt(),
        // A wrap is as wide as a terminal, a log viewer or a base64 encoder makes it; the first
        // line holds what is left of the line the token starts on.
        first in 3usize..=80, width in 40usize..=80,
        // Real line breaks, and line breaks written out in JSON (once or twice escaped).
        gap in prop::sample::select(vec!["\n", "\r\n", "\n    ", "\n\t", " \n ", "\\n", "\\r\\n", "\\\\n"]),
        shape in jwt_shapes(),
        // The token ends a sentence: its full stop is no part's dot.
        end in prop::sample::select(vec!["", ".", ". Retry", ". Request failed"]),
    ) {
        let (wrapped, last) = wrap_token(&token, first, width, gap);
        let embedded = shape.replace("{t}", &format!("{wrapped}{end}"));
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        // A last line shorter than 16 characters (dots not counted) cannot be told from a word
        // (`Request`), nor one that happens to read as words (`ntgE_-_qhoxuRqk4768`: a camelCase
        // word and a word with digits): only the lines before it must go.
        let last_line = if token.len() > first { wrapped.rsplit(gap).next().unwrap_or("") } else { "" };
        let kept = if last < 16 || !looks_encoded_text(last_line) { last_line.len() } else { 0 };
        assert_no_piece(&token[..token.len() - kept], &text, &out)?;
    }

    #[test]
    fn jwts_split_by_spaces_never_survive(
        before in spaced_noise(), after in spaced_noise(), token in jwt(),
        cut in any::<prop::sample::Index>(),
        gap in prop::sample::select(vec![" ", "  ", "\t", " \t "]),
        shape in jwt_shapes(),
    ) {
        let split = split_token(&token, &[cut], gap);
        let embedded = shape.replace("{t}", &split);
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        let (head, tail) = split.split_once(gap).expect("one cut");
        assert_no_piece(head, &text, &out)?;
        // A whole token (the cut in its signature) is never extended after a space: what
        // follows is the sentence going on (`eyJ… 401 Unauthorized`). Nor is a piece that
        // cannot be told from words (shorter than 16 characters, or, rarely for random
        // base64url, only words and numbers between its `-`, `_` and `.`: `0.-Aaaaaa_a0_aAaa0`,
        // which proptest once drew), the rule by which a wrapped line joins a token. Any other
        // tail goes.
        let whole = head.matches('.').count() >= 2 && !head.ends_with('.');
        if !whole && looks_encoded_text(tail) {
            assert_no_piece(tail, &text, &out)?;
        }
    }

    #[test]
    fn text_after_a_jwt_comes_out_unchanged(
        lead in prop::sample::select(vec![
            "Assertion ", "Bearer ", "token=", "id_token: ", "upstream said ", "AADSTS50013: Assertion ",
        ]),
        token in jwt(),
        // Whole, or cut short after its header as Entra's errors cut it.
        cut_short in any::<bool>(),
        cut in 0usize..12,
        gap in prop::sample::select(vec![" ", "\n", "\r\n", "\n  "]),
        words in prop::collection::vec(ordinary_word(), 1..8),
    ) {
        let token = if cut_short {
            let (header, payload) = token.split_once('.').expect("a JWT has parts");
            format!("{header}.{}", &payload[..cut.min(payload.len())])
        } else {
            token
        };
        // As many words as fit under the cap.
        let mut words = words;
        let fits = |words: &[String]| {
            format!("{lead}{REDACTED} {}", words.join(" ")).chars().count() <= MAX_CHARS
        };
        while words.len() > 1 && !fits(&words) {
            words.pop();
        }
        let words = words.join(" ");
        let text = format!("{lead}{token}{gap}{words}");
        let expected = format!("{lead}{REDACTED} {words}");
        prop_assume!(expected.chars().count() <= MAX_CHARS);
        prop_assert_eq!(sanitize(&text), expected);
    }

    #[test]
    fn pairs_named_for_display_or_apart_keep_their_value(
        display in display_name(),
        name in secret_name(),
        // Not `key`: `key: …` is a secret's name of its own.
        name_key in prop::sample::select(vec!["name", "Name"]),
        value_key in prop::sample::select(vec!["value", "Value"]),
        value in prop_oneof![
            prop::sample::select(vec!["8", "true", "14", "Contoso-Kiosk-Profile", "notConfigured"])
                .prop_map(str::to_owned),
            "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        ],
        words in prop::collection::vec(
            prop::sample::select(vec!["conflicts", "with", "the", "policy", "failed", "(see", "above)"]),
            1..4,
        ),
        shape in prop::sample::select(vec![
            // A Settings Catalog policy's `name` is its display name.
            "{\"{nk}\":\"{d}\",\"settings\":[{\"id\":\"0\",\"{vk}\":{v}}]}",
            "{\"{nk}\":\"{d}\",\"{vk}\":\"{v}\"}",
            "{'{nk}': '{d}', '{vk}': '{v}'}",
            // A value in a nested object is not the value of the enclosing object's name.
            "{\"{nk}\":\"{n}\",\"settings\":[{\"{vk}\":\"{v}\"}]}",
            "{\"{nk}\":\"{n}\",\"children\":[{\"id\":1},{\"{vk}\":{v}}]}",
            "{\"settings\":{\"{vk}\":\"{v}\"},\"{nk}\":\"{n}\"}",
            // Outside any object, a name and a value with words between are no pair.
            "failed: {nk}: {n} {w}; {vk}: {v}",
            "{vk}: {v} {w} {nk}: {n}",
        ]),
    ) {
        let text = shape
            .replace("{nk}", name_key)
            .replace("{vk}", value_key)
            .replace("{d}", &display)
            .replace("{n}", &name)
            .replace("{w}", &words.join(" "))
            .replace("{v}", &value);
        prop_assume!(text.chars().count() <= MAX_CHARS);
        prop_assert_eq!(sanitize(&text), text);
    }

    #[test]
    fn ordinary_text_comes_out_unchanged(
        words in prop::collection::vec(ordinary_word(), 1..30),
        // A whole JWT among the words, ended by a space or a line break: only it goes.
        token in prop::option::of((jwt(), any::<prop::sample::Index>(), prop::sample::select(vec![" ", "\n", "\r\n"]))),
    ) {
        // As many words as fit under the cap.
        let mut kept: Vec<&str> = Vec::new();
        for word in &words {
            let len: usize = kept.iter().map(|w| w.chars().count() + 1).sum();
            if len + word.chars().count() + REDACTED.len() + 1 > MAX_CHARS {
                break;
            }
            kept.push(word);
        }
        let (text, expected) = match &token {
            None => (kept.join(" "), kept.join(" ")),
            Some((token, at, gap)) => {
                let (before, after) = kept.split_at(at.index(kept.len() + 1));
                let join = |head: &str, tail: &str| {
                    [head, tail].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(" ")
                };
                let text = join(&before.join(" "), &format!("{token}{gap}{}", after.join(" ")));
                let expected = join(&before.join(" "), &join(REDACTED, &after.join(" ")));
                (text.trim_end().to_owned(), expected)
            }
        };
        prop_assert_eq!(sanitize(&text), expected, "from {}", text);
    }

    #[test]
    fn harmless_graph_names_come_out_unchanged(
        pairs in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "assignments", "signInFrequency", "sessionTimeout", "keySize", "tokenLifetime",
                    "passwordMinimumLength", "passwordRequired", "displayName", "keyUsage",
                    "passwordExpirationDays", "tokenType", "signatureAlgorithm", "sessionControls",
                    // Written as one word: the last word is not a secret's.
                    "tokenlifetime", "passwordrequired", "keysize", "sessiontimeout", "tokentype",
                    // A number after a harmless name leaves it harmless.
                    "keySize2", "keySize_2", "tokenLifetime2", "sessionTimeout_1",
                ]),
                prop_oneof![
                    prop::sample::select(vec![
                        "0", "8", "14", "3600", "2048", "true", "false", "null", "PT1H", "P90D",
                        "days", "hours", "notConfigured", "required", "digitalSignature", "[]",
                    ]).prop_map(str::to_owned),
                    "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                    "[0-9]{1,6}",
                ],
                prop::sample::select(vec![
                    "{n}: {v}", "{n}={v}", "\"{n}\":\"{v}\"", "\"{n}\": {v}", "{n}%3D{v}",
                    "<{n}>{v}</{n}>", "'{n}': '{v}'",
                ]),
            ),
            1..6,
        ),
        joiner in prop::sample::select(vec![", ", "&", " ", "; "]),
    ) {
        let text = pairs
            .iter()
            .map(|(n, v, shape)| shape.replace("{n}", n).replace("{v}", v))
            .collect::<Vec<_>>()
            .join(joiner);
        prop_assume!(text.chars().count() <= MAX_CHARS);
        prop_assert_eq!(sanitize(&text), text);
    }

    #[test]
    fn sanitizing_text_with_every_family_is_idempotent(
        pieces in prop::collection::vec(
            prop_oneof![
                noise(),
                Just("https://u:p@h/x".to_owned()),
                Just("Cookie: a=1; b=2".to_owned()),
                Just("Set-Cookie: id=x; Path=/".to_owned()),
                Just("{\"isEncrypted\":true,\"value\":\"v\"}".to_owned()),
                Just("-----BEGIN PRIVATE KEY-----".to_owned()),
                Just("-----END PRIVATE KEY-----".to_owned()),
                Just("Authorization: Basic dXNlcjpwYXNz".to_owned()),
                Just("%3D".to_owned()),
                Just("%22".to_owned()),
                Just("\\\"".to_owned()),
                Just("\\\\\\\"".to_owned()),
                Just("%20".to_owned()),
                Just("+".to_owned()),
                Just("password%3A".to_owned()),
                Just("Bearer%20".to_owned()),
                Just("SharedKey a:".to_owned()),
                Just("<password>".to_owned()),
                Just("[REDACTED]".to_owned()),
                Just("…".to_owned()),
                Just("clientSecret".to_owned()),
                Just("AccountKey ".to_owned()),
                Just("0123456789abcdef0123456789abcdef".to_owned()),
                Just("eyJhbGciOiJIUzI1NiJ9.e30.x".to_owned()),
                prop::sample::select(vec![":", "=", "\"", "'", " ", "[", "]", "{", "}", "@", "://", ";", ","]).prop_map(str::to_owned),
            ],
            0..40,
        )
    ) {
        let text: String = pieces.concat();
        let once = sanitize(&text);
        prop_assert_eq!(sanitize(&once), once.clone(), "from {}", text);
    }
}

/// A password as connection strings hold it: letters, digits, spaces, commas, `&` and `!`
/// (unquoted: ADO.NET quotes a value only for a `;` or a leading quote), trimmed and with single
/// spaces, as whitespace collapsing writes it.
fn connection_string_password() -> impl Strategy<Value = String> {
    prop::string::string_regex("[A-Za-z0-9 ,&!]{16,64}")
        .expect("valid regex")
        .prop_map(|s| {
            s.split(' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .prop_filter("long enough", |s| s.len() >= 16)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Issue 9 §6: in a connection string an unquoted value runs to the next `;` (or the end of
    /// the line), spaces and commas included: `Password=correct horse battery staple;` kept
    /// `horse battery staple` when the value ended at the first space.
    #[test]
    fn connection_string_passwords_never_survive(
        before in spaced_noise(), after in spaced_noise(),
        name in prop::sample::select(vec!["Password", "password", "Pwd", "PWD", "AccountKey"]),
        secret in connection_string_password(),
        (shape, readable) in prop::sample::select(vec![
            ("Server=x;{n}={v};Encrypt=true", Some(";Encrypt=true")),
            ("{n}={v};Server=x", Some(";Server=x")),
            ("failed: {n}={v};\n", None),
            ("Server=x;User Id=sa;{n}={v};Encrypt=true", Some(";Encrypt=true")),
            ("Server=x; User Id=sa; {n}={v}; Encrypt=true", Some("; Encrypt=true")),
            ("User Id=sa;{n}={v};Server=x", Some(";Server=x")),
            ("Server=x;User Id=sa;{n}={v}", None),
            ("connect failed: Server=x;User Id=sa;{n}={v}\n", None),
            ("\"Server=x;{n}={v};Encrypt=true\"", Some(";Encrypt=true")),
        ]),
    ) {
        let embedded = shape.replace("{n}", name).replace("{v}", &secret);
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        assert_no_piece(&secret, &text, &out)?;
        // What follows the password stays readable, unless the cap cut it off.
        if let Some(readable) = readable {
            if !out.ends_with('\u{2026}') {
                prop_assert!(out.contains(readable), "{readable} is kept\n in: {text}\nout: {out}");
            }
        }
    }

    /// Issue 9 §6: an auth-param credential (`Digest username="…", response="…"`, any scheme)
    /// goes whole after an `Authorization` or `Proxy-Authorization` name, not only its first
    /// parameter's name.
    #[test]
    fn auth_param_credentials_never_survive(
        before in spaced_noise(), after in spaced_noise(),
        header in prop::sample::select(vec![
            "Authorization", "authorization", "Proxy-Authorization", "proxy-authorization",
            "x-ms-authorization",
        ]),
        scheme in prop_oneof![
            prop::sample::select(vec!["Digest", "digest", "OAuth", "Signature", "HOBA", "Mutual"])
                .prop_map(str::to_owned),
            "[A-Z][A-Za-z0-9-]{2,12}",
        ],
        user in prop::sample::select(vec!["admin", "Mufasa", "svc_backup", "a@contoso.com"]),
        response in "[0-9a-f]{32}",
        cnonce in "[0-9a-f]{16,32}",
        shape in prop::sample::select(vec![
            "{h}: {s} username=\"{u}\", realm=\"x\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/\", cnonce=\"{c}\", response=\"{r}\"",
            "{h}: {s} username=\"{u}\", realm=\"testrealm@host.com\", nonce=\"dcd98b71\", uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"{c}\", response=\"{r}\", opaque=\"5ccc069c\"",
            "{h}: {s} response=\"{r}\", cnonce=\"{c}\"",
            "{h}: {s} username={u},cnonce={c},response={r}",
            "{h}={s} username=\"{u}\", cnonce=\"{c}\", response=\"{r}\"",
            "{h}:{s} cnonce=\"{c}\",response=\"{r}\"\n",
            "\"{h}\": \"{s} username=\\\"{u}\\\", cnonce=\\\"{c}\\\", response=\\\"{r}\\\"\"",
        ]),
    ) {
        let embedded = shape
            .replace("{h}", header)
            .replace("{s}", &scheme)
            .replace("{u}", user)
            .replace("{c}", &cnonce)
            .replace("{r}", &response);
        let text = format!("{before} {embedded} {after}");
        let out = sanitize(&text);
        assert_no_piece(&response, &text, &out)?;
        assert_no_piece(&cnonce, &text, &out)?;
    }
}

/// Issue 9 §6, held examples: connection strings keep their other pairs, auth-param headers go
/// whole to the end of their line, and query strings and prose read as before.
#[test]
fn connection_strings_and_auth_params_read_as_documented() {
    let cases = [
        (
            "connect failed: Server=db;User Id=sa;Password=correct horse battery staple;Encrypt=true",
            "connect failed: Server=db;User Id=sa;Password=[REDACTED];Encrypt=true",
        ),
        ("Password=ab,cd;Server=x", "Password=[REDACTED];Server=x"),
        ("Server=x;Password=ab&cd;", "Server=x;Password=[REDACTED];"),
        ("Password=ab,cd;", "Password=[REDACTED];"),
        ("Password=ab&cd;", "Password=[REDACTED];"),
        (
            "Server=x; Password=ab cd ef; Encrypt=true",
            "Server=x; Password=[REDACTED]; Encrypt=true",
        ),
        (
            "connect failed: Server=db;Password=correct horse battery\nRetrying in 30 seconds",
            "connect failed: Server=db;Password=[REDACTED] Retrying in 30 seconds",
        ),
        (
            "Authorization: Digest username=\"admin\", realm=\"x\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/\", response=\"6629fae49393a05397450978507c4ef1\"",
            "Authorization: [REDACTED]",
        ),
        (
            "Proxy-Authorization: Digest response=\"6629fae49393a05397450978507c4ef1\", cnonce=\"0a4f113b\"\nGET / 407",
            "Proxy-Authorization: [REDACTED] GET / 407",
        ),
        // Other contexts read as before: a query string ends a value at `&`, prose at a space.
        (
            "POST /token?client_id=abc&password=s3cr3t&scope=x",
            "POST /token?client_id=abc&password=[REDACTED]&scope=x",
        ),
        ("password=s3cr3t was rejected", "password=[REDACTED] was rejected"),
        (
            "Authorization: Bearer abc.def then 401",
            "Authorization: [REDACTED] then 401",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(sanitize(input), expected, "{input}");
    }
}

/// A held example of each family, readable as documentation of what the output looks like.
#[test]
fn each_family_reads_as_documented() {
    let cases = [
        (
            "connect postgres://app:hunter2hunter2@db.internal:5432/ta failed",
            "connect postgres://app:[REDACTED]@db.internal:5432/ta failed",
        ),
        (
            "GET https://ghp_abcdefghijklmnop@github.com/x",
            "GET https://[REDACTED]@github.com/x",
        ),
        (
            "next=https%3A%2F%2Fapp%3Ahunter2hunter2%40db.internal%2Fx",
            "next=https%3A%2F%2Fapp%3A[REDACTED]%40db.internal%2Fx",
        ),
        ("x-api-key: abc123", "x-api-key: [REDACTED]"),
        ("certificatePassword=pa55", "certificatePassword=[REDACTED]"),
        (
            "AccountName=x;AccountKey=YWJj/ZGVm+==;EndpointSuffix=core.windows.net",
            "AccountName=x;AccountKey=[REDACTED];EndpointSuffix=core.windows.net",
        ),
        ("redirect%3Dx%26client_secret%3Dabc%26y", "redirect%3Dx%26client_secret%3D[REDACTED]%26y"),
        (
            "Cookie: theme=dark; ARRAffinity=abc123",
            "Cookie: theme=[REDACTED]; ARRAffinity=[REDACTED]",
        ),
        (
            "Set-Cookie: id=abc; Path=/; HttpOnly",
            "Set-Cookie: id=[REDACTED]; Path=/; HttpOnly",
        ),
        (
            r#"{"secretReferenceValueId":"ref-1","value":"s3cret","displayName":"Wi-Fi"}"#,
            r#"{"secretReferenceValueId":"[REDACTED]","value":"[REDACTED]","displayName":"Wi-Fi"}"#,
        ),
        (
            r#"{"isEncrypted":false,"value":"visible"}"#,
            r#"{"isEncrypted":false,"value":"visible"}"#,
        ),
        (
            "Authorization: Basic dXNlcjpwYXNzd29yZA==",
            "Authorization: [REDACTED]",
        ),
        ("Basic authentication is disabled", "Basic authentication is disabled"),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY----- [REDACTED] -----END PRIVATE KEY-----",
        ),
        (
            "the client secret is 0123456789abcdef0123456789abcdef, rotate it",
            "the client secret is [REDACTED], rotate it",
        ),
        (
            "<password>hunter2</password>",
            "<password>[REDACTED]</password>",
        ),
        (
            "sessionTimeout=PT1H&keySize=2048&tokenLifetime=3600&passwordRequired=true",
            "sessionTimeout=PT1H&keySize=2048&tokenLifetime=3600&passwordRequired=true",
        ),
        (
            r#"[{"name":"client_secret","value":"S3cr3t~x"},{"name":"displayName","value":"Wi-Fi"}]"#,
            r#"[{"name":"client_secret","value":"[REDACTED]"},{"name":"displayName","value":"Wi-Fi"}]"#,
        ),
        (
            r#"{\"value\": \"S3cr3t~x\", \"name\": \"password\"}"#,
            r#"{\"value\": \"[REDACTED]\", \"name\": \"password\"}"#,
        ),
        (
            "env:\n- name: CLIENTSECRET\n  value: S3cr3t~x\n- name: LOG_LEVEL\n  value: debug",
            "env: - name: CLIENTSECRET value: [REDACTED] - name: LOG_LEVEL value: debug",
        ),
        (
            r#"{"client_secret" => "S3cr3t~x", :password => 'hunter2'}"#,
            r#"{"client_secret" => "[REDACTED]", :password => '[REDACTED]'}"#,
        ),
        ("accesstoken=abc123&clientsecret=def456", "accesstoken=[REDACTED]&clientsecret=[REDACTED]"),
        (
            "token:\n  eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOi\n  IxIn0.c2lnbmF0dXJl expired",
            "token: [REDACTED] expired",
        ),
        // Found by the properties: a lone dot after a split token, a Graph path after `token`.
        (
            "token:\neyJa-AAa AA_AA.0AaAaaa-_aa_AA-a-.-Aa_aAA00aa0-A_ .",
            "token: [REDACTED] .",
        ),
        (
            "token deviceManagement/configurationPolicies",
            "token deviceManagement/configurationPolicies",
        ),
        // Found in review: text after a token, pairs that are none, values that are arrays.
        (
            "token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlabc\nRequest failed for policy Contoso Baseline",
            "token=[REDACTED] Request failed for policy Contoso Baseline",
        ),
        (
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlabc 401 Unauthorized",
            "Bearer [REDACTED] 401 Unauthorized",
        ),
        (
            "AADSTS50013: Assertion eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoLm1pY3Jvc29mdC5jb20iLCJpc3Mw is not valid for graph.microsoft.com in tenant contoso",
            "AADSTS50013: Assertion [REDACTED] is not valid for graph.microsoft.com in tenant contoso",
        ),
        (
            r#"{"name":"Windows LAPS password","settings":[{"id":"0","value":8}]}"#,
            r#"{"name":"Windows LAPS password","settings":[{"id":"0","value":8}]}"#,
        ),
        (
            "failed: name: AdminPassword conflicts; value: Contoso-Kiosk-Profile",
            "failed: name: AdminPassword conflicts; value: Contoso-Kiosk-Profile",
        ),
        (
            r#"{"name":"client_secret","value":["Xq9~abcDEFghi"]}"#,
            r#"{"name":"client_secret","value":[REDACTED]}"#,
        ),
        (
            r#"{"Name":"Password","Value":{"text":"hunter2hunter2"}}"#,
            r#"{"Name":"Password","Value":[REDACTED]}"#,
        ),
        (
            r#"{\"name\":\"client_secret\",\"note\":\"a } b\",\"value\":\"s3cr3tVALUE1\"}"#,
            r#"{\"name\":\"client_secret\",\"note\":\"a } b\",\"value\":\"[REDACTED]\"}"#,
        ),
        (
            "{'name': 'client_secret', 'note': 'a { b', 'value': 's3cr3tVALUE1'}",
            "{'name': 'client_secret', 'note': 'a { b', 'value': '[REDACTED]'}",
        ),
        (
            "%22name%22%3A%22client_secret%22%2C%22value%22%3A%22s3cr3tVALUE1%22",
            "%22name%22%3A%22client_secret%22%2C%22value%22%3A%22[REDACTED]%22",
        ),
        (
            "Assertion eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoLm1pY3Jv\n  c29mdC5jb20ifQ.Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0\n  J0mSQwsn59-Ee0DuPphZDg. Retry",
            "Assertion [REDACTED]. Retry",
        ),
        (
            "Assertion eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlabc. Retry later",
            "Assertion [REDACTED]. Retry later",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(sanitize(input), expected, "{input}");
    }
}

/// Found in review: a secret name with a number after it (a second password, Azure's `key1` and
/// `key2` of Cognitive Services, Maps and Event Grid) kept its value.
#[test]
fn numbered_secret_names_are_secret_names() {
    let cases = [
        ("password2=Tr0ub4dor-3horse-xyz", "password2=[REDACTED]"),
        (
            "client_secret2=AbCdEf0123456789xyz",
            "client_secret2=[REDACTED]",
        ),
        (
            r#"{"pwd_2":"S3cr3tValue-0123456"}"#,
            r#"{"pwd_2":"[REDACTED]"}"#,
        ),
        (
            r#"{"key1":"0123456789abcdef0123456789abcdef"}"#,
            r#"{"key1":"[REDACTED]"}"#,
        ),
        (
            "AccountName=x;AccountKey1=YWJj/ZGVm+==;EndpointSuffix=core.windows.net",
            "AccountName=x;AccountKey1=[REDACTED];EndpointSuffix=core.windows.net",
        ),
        (
            "keySize_2=2048&tokenLifetime2=3600",
            "keySize_2=2048&tokenLifetime2=3600",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(sanitize(input), expected, "{input}");
    }
}

/// Found in review: a secret's name before `://` was read as a URL scheme when an `@` followed,
/// so the part of the password after the `@` stayed as a "host".
#[test]
fn a_secret_name_before_a_scheme_separator_keeps_no_half_of_the_secret() {
    for (input, pieces) in [
        ("password://ab@cdefghijklmnop", &["cdefghijklmnop"][..]),
        (
            "pwd://Tr0ub4dor:x@horse-battery-staple",
            &["Tr0ub4dor", "horse-battery-staple"][..],
        ),
        (
            "connect failed: password://ab@cdefghijklmnop/x (retrying)",
            &["cdefghijklmnop"][..],
        ),
    ] {
        let out = sanitize(input);
        for piece in pieces {
            assert!(!out.contains(piece), "{input} -> {out}");
        }
    }
    // A real scheme with userinfo keeps its host.
    let out = sanitize("https://app:pw@host.example/x");
    assert_eq!(out, "https://app:[REDACTED]@host.example/x");
}

#[test]
fn the_marker_is_what_replaces_secrets() {
    assert_eq!(sanitize("password=hunter2"), format!("password={REDACTED}"));
}

#[test]
fn ordinary_messages_are_kept_readable() {
    let text = "GET deviceManagement/configurationPolicies/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 \
                answered 404 Not Found: ResourceNotFound";
    assert_eq!(sanitize(text), text);
}

/// Every scanner is linear or close to it: inputs built to make a careless one quadratic (4,096
/// characters of repeated openings with nothing closing them) take milliseconds, not seconds.
#[test]
fn pathological_inputs_stay_fast() {
    let inputs = [
        "password=".repeat(600),
        "\"password\":\"".repeat(400),
        "{\"isEncrypted\":true,\"value\":\"x\",".repeat(150),
        "\"secretReferenceValueId\":\"x\",".repeat(150),
        "-----BEGIN X-----".repeat(300),
        "-eyJ".repeat(1200),
        "token ".repeat(800),
        "://".repeat(1500),
        "Cookie: a=1; ".repeat(400),
        "{".repeat(4000),
        "a%3D".repeat(1200),
        "Client Secret Key Token: ".repeat(200),
        "{\"name\":\"password\",".repeat(200),
        "{\"value\":\"x\"".repeat(300),
        "\"value\":\"".repeat(400),
        "{\\\"value\\\":\\\"".repeat(250),
        "- name: password value: x ".repeat(150),
        "eyJabc ".repeat(580),
        "eyJa.b\n".repeat(500),
        "password => ".repeat(350),
        // A connection string's value runs to the next `;`: each is read to the end once.
        "password=a b ".repeat(300),
        ";pwd=a, b ".repeat(300),
        "Authorization: Digest a=b ".repeat(150),
    ];
    let started = std::time::Instant::now();
    for input in &inputs {
        let out = sanitize(input);
        assert!(out.chars().count() <= MAX_CHARS);
    }
    let elapsed = started.elapsed();
    // About 20 ms in a debug build; a quadratic scanner takes seconds.
    assert!(elapsed < std::time::Duration::from_secs(1), "{elapsed:?}");
}

/// Examples found in review: encoded spaces and separators, encoded schemes, Shared Key's
/// `account:signature` and an escaped quote inside doubly-escaped JSON.
#[test]
fn encoded_and_escaped_secrets_are_redacted() {
    let cases = [
        (
            "client_secret%3A%20hunter2xx",
            "client_secret%3A%20[REDACTED]",
        ),
        (
            "%7B%22password%22%3A%20%22hunter2xx%22%7D",
            "%7B%22password%22%3A%20%22[REDACTED]%22%7D",
        ),
        (
            "%22password%22%3A+%22hunter2xx%22",
            "%22password%22%3A+%22[REDACTED]%22",
        ),
        (
            "authorization=Basic%20dXNlcjpodW50ZXIy&x=1",
            "authorization=[REDACTED]&x=1",
        ),
        (
            "Authorization%3A%20Bearer%20abcdef123456",
            "Authorization%3A%20[REDACTED]",
        ),
        (
            "sent SharedKey myaccount:YWJj/ZGVm+Z2hpamtsbW5vcA==",
            "sent SharedKey myaccount:[REDACTED]",
        ),
        // The credential's own `=`, `+` and `/` percent-encoded, as in a URL or a form body.
        (
            "sent Basic%20dXNlcjpwYXNzd29yZA%3D%3D done",
            "sent Basic%20[REDACTED] done",
        ),
        (
            "sent Basic+CZfobjVbP6Iz7YldPT%2FXVw%3D%3D done",
            "sent Basic+[REDACTED] done",
        ),
        (
            "sent SharedKey%20acct:cMd7G%2F9jhQp1Xv3kLz8RtYwN2bVc4sHfAaYEmN8Qw1x%3D done",
            "sent SharedKey%20acct:[REDACTED] done",
        ),
        (
            "sent SharedKey%20acct%3AcMd7G%2F9jhQp1Xv3kLz8RtYwN2bVc4sHfAaYEmN8Qw1x%3D done",
            "sent SharedKey%20acct%3A[REDACTED] done",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(sanitize(input), expected, "{input}");
    }
    let out = sanitize("GET /cb?access_token=Bearer%20abcdef123456");
    assert!(!out.contains("abcdef123456"), "{out}");
    let text = format!("body={:?}", r#"{"password":"pa\"ss-tail-secret-99"}"#);
    let out = sanitize(&text);
    assert!(!out.contains("tail-secret"), "{out}");
    assert!(out.starts_with("body=\"{\\\"password\\\":\\\""), "{out}");
}

/// A quote inside a connection string's password does not end the value, even where the list
/// stands in a quoted string: the sanitizer cannot tell that quote from the string's closing one,
/// so the value runs to the next `;` (a rule that stopped at the quote leaked the rest).
#[test]
fn a_quote_inside_a_connection_string_password_does_not_end_it() {
    for text in [
        r#"connect failed: "Server=x;Password=ab"cdefghij;Encrypt=true""#,
        r#"{"conn":"Server=x;Password=ab"cdefghij klmnop;Encrypt=true"}"#,
        r#"x "Server=x;Password=correct"horse battery staple""#,
    ] {
        let out = sanitize(text);
        for piece in ["cdefghij", "klmnop", "horse battery staple"] {
            assert!(!out.contains(piece), "{text} -> {out}");
        }
        assert!(out.contains("[REDACTED]"), "{text} -> {out}");
    }
}
