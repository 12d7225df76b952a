//! Robustness, derived from the router like the access matrix: every page route and every
//! registered server function gets garbage as an anonymous visitor, a non-member, a readonly
//! member and an operator. The garbage comes from proptest with a fixed seed (the same cases on
//! every run): path segments with control characters, percent-encodings and dots; wrong types;
//! huge and negative numbers; 1 MB strings; missing and duplicated fields; bodies that are not
//! a form. Every answer is a page, a redirect or a 4xx with a reason, never a 5xx (except
//! sign-in's documented overload answer: 503 with `Retry-After`), and the server never panics.

use crate::common;

use std::time::Duration;

use common::{TestApp, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER, READONLY};
use leptos::server_fn::axum::server_fn_paths;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use tenantatlas::domain::invitation::PASSWORD_MAX_CHARS;
use tenantatlas::server::auth::password::Checker;
use tenantatlas::server::http::{download_paths, REQUEST_BODY_LIMIT};
use tenantatlas::server::panics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

both_backends!(TestApp:
    garbage_never_breaks_a_page,
    garbage_never_breaks_a_server_function,
    pages_left_before_their_end_never_panic,
    hidden_files_are_404_on_every_path,
    static_answers_vary_and_private_ones_are_not_stored,
    arguments_whose_error_is_huge_are_a_short_400,
    a_wrong_method_is_405_with_a_reason,
    a_declared_huge_body_is_413_before_it_is_sent,
    a_chunked_body_past_the_limit_is_413_and_never_reaches_sign_in,
    the_largest_id_list_a_page_sends_is_not_too_large,
);

/// Sign-in on a server whose password checker has no core: a password that reaches argon2 is
/// answered busy.
mod no_free_core {
    use super::*;
    both_backends!(local NoFreeCore: an_over_long_password_is_wrong_before_any_hash);
}

/// Clients that send their request slowly, on a server whose limits are short.
mod slow_clients {
    use super::*;
    both_backends!(local SlowClients:
        a_trickling_body_is_408_and_its_connection_closed,
        headers_that_never_end_are_cut_off,
        a_connection_that_sends_nothing_is_closed,
        a_body_sent_in_time_is_answered_as_usual,
        the_metrics_listener_cuts_off_headers_that_never_end,
    );
}

/// The seed of every generated case.
const SEED: &[u8; 32] = b"tenantatlas: garbage in, 4xx out";
/// Generated garbage requests per caller and page route (GET or HEAD), after a plain one.
const PAGE_CASES: usize = 6;
/// Generated calls per caller and server function.
const CALL_CASES: usize = 6;
/// The long strings: 1 MB.
const MEGABYTE: usize = 1 << 20;
/// The only 5xx the sweep accepts: sign-in's documented overload answer (with Retry-After).
const SIGN_IN: &str = "/api/auth/sign-in";
/// Called last: it ends the caller's session.
const SIGN_OUT: &str = "/api/auth/sign-out";

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Anonymous,
    NonMember,
    Readonly,
    Operator,
}

const CALLERS: [Caller; 4] = [
    Caller::Anonymous,
    Caller::NonMember,
    Caller::Readonly,
    Caller::Operator,
];

/// Every caller's session cookie, all signed in before the sweep (a garbage sign-in that fails
/// counts against the throttle, which would refuse a later sign-in).
async fn cookies(app: &TestApp) -> Vec<(Caller, Option<String>)> {
    let mut cookies = Vec::new();
    for caller in CALLERS {
        let cookie = match caller {
            Caller::Anonymous => None,
            Caller::NonMember => Some(app.sign_in(OUTSIDER).await),
            Caller::Readonly => Some(app.sign_in(READONLY).await),
            Caller::Operator => Some(app.sign_in(OPERATOR).await),
        };
        cookies.push((caller, cookie));
    }
    cookies
}

/// Ids that exist in Contoso, so some garbage reaches past the lookups.
struct Known {
    set_id: String,
    run_id: String,
    policy_id: String,
    /// That policy twice, as a list (`3,3`).
    policy_ids: String,
    /// A stored version of that policy.
    version_id: String,
    /// Restore sources: the set and the version.
    set_source: String,
    version_source: String,
}

async fn known_ids(app: &TestApp) -> Known {
    let common::Sample {
        set_id,
        policy_id,
        run_id,
        version_id,
    } = common::Sample::create(app).await;
    Known {
        set_source: format!("set-{set_id}"),
        version_source: format!("version-{version_id}"),
        set_id,
        run_id,
        policy_ids: format!("{policy_id},{policy_id}"),
        policy_id,
        version_id,
    }
}

/// A deterministic source of cases.
fn runner() -> TestRunner {
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, SEED),
    )
}

fn generate<S: Strategy>(runner: &mut TestRunner, strategy: &S) -> S::Value {
    strategy
        .new_tree(runner)
        .expect("the strategies always generate")
        .current()
}

/// Numbers a handler may not expect: the ends of i64 and past them, negatives, non-integers.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "-9223372036854775809",
    "1.5",
    "1e400",
    "NaN",
    "0x10",
    " 7",
    "true",
    "",
];

fn number() -> impl Strategy<Value = String> {
    select(NUMBERS).prop_map(str::to_owned)
}

/// Short text with control characters, percent signs, dots, slashes, markup and any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[\\x00-\\x1f\\x7f./%\\\\a-z0-9<>\"'&=?#\\[\\] ]{0,16}",
        "\\PC{0,12}",
    ]
}

/// A field value: often one that makes sense for the field, else a number or text.
fn value(valid: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(valid),
        2 => number(),
        3 => text(),
    ]
}

/// Every argument name of the server functions, optional ones (`#[server(default)]`) included
/// (`every_argument_of_every_server_function_is_swept` reads them from `src/api`), plus one no
/// function has.
const FIELDS: &[&str] = &[
    "tenant",
    "id",
    "backup_set_id",
    "name",
    "description",
    "email",
    "password",
    "next",
    "search",
    "policy_type",
    "platform",
    "sort",
    "page",
    "status",
    "operation_type",
    "before",
    "outcome",
    "offset",
    "limit",
    "include_assignments",
    "include_scope_tags",
    "client_id",
    "secret",
    "expires_on",
    "user_id",
    "role",
    "action",
    "actor",
    "token",
    "version",
    "from",
    "to",
    "policy_id",
    "operation",
    "target_id",
    "source",
    "policy_ids",
    "preview_run_id",
    "run_id",
    "reviewed",
    "tenant_name",
    "ids",
    "as_of",
    "all_matching",
    "unexpected",
];

/// Values that make sense for a field (never a correct password: a sign-in would replace the
/// caller's session).
fn valid_values(field: &str, known: &Known) -> Vec<String> {
    let values: Vec<&str> = match field {
        "tenant" => vec![CONTOSO, CONTOSO, FABRIKAM],
        "id" => vec![&known.set_id, &known.run_id, &known.policy_id],
        "version" | "from" | "to" => vec![&known.version_id],
        "backup_set_id" => vec![&known.set_id],
        "name" => vec!["Sweep", "Sweep 2"],
        "email" => vec![OPERATOR, "nobody@contoso.example"],
        "password" => vec!["not the password"],
        "next" => vec!["/", "/t/x"],
        "search" => vec!["policy", "%", "_"],
        "policy_type" => vec!["compliance", "settings_catalog"],
        "platform" => vec!["android", "windows10"],
        "sort" => vec!["name", "last_modified", "type"],
        "status" => vec!["failed", "active", "completed"],
        "operation_type" => vec!["backup_set.add_policies"],
        "outcome" => vec!["succeeded", "failed", "pending", "changed", "deleted"],
        "policy_id" => vec![&known.policy_id],
        "target_id" => vec![&known.policy_id, &known.set_id],
        "operation" => vec![
            "inventory.sync",
            "policy.capture_snapshot",
            "backup_set.drift_check",
            "restore.execute",
        ],
        "include_assignments" | "include_scope_tags" | "reviewed" | "all_matching" => {
            vec!["true", "false", "on"]
        }
        // A notification id list, as the bell sends it, and the time of its list (ms).
        "ids" => vec!["", "1", "1,2"],
        "as_of" => vec!["0", "4102444800000"],
        "source" => vec![
            &known.set_source,
            &known.version_source,
            "set-0",
            "policy-1",
        ],
        "policy_ids" => vec![&known.policy_id, &known.policy_ids],
        "preview_run_id" | "run_id" => vec![&known.run_id],
        "tenant_name" => vec!["Contoso", "contoso", ""],
        "client_id" => vec!["app-sweep", "a b"],
        "secret" => vec!["a sweep secret", ""],
        "expires_on" => vec!["2030-01-31", "2030-02-30", ""],
        "user_id" => vec!["1", "2"],
        "role" => vec!["owner", "readonly", "boss"],
        "page" | "before" | "offset" | "limit" => vec!["0", "1", "2", "100"],
        "token" => vec![
            "0000000000000000000000000000000000000000000000000000000000000000",
            "not a token",
        ],
        _ => vec![""],
    };
    values.into_iter().map(str::to_owned).collect()
}

/// A malformed form: every field missing, once or twice (duplicated), with values of any type,
/// plus `policy_ids[i]` entries (the list as one field per id, which is not the form's encoding)
/// with odd indexes.
fn form(known: &Known) -> impl Strategy<Value = Vec<(String, String)>> {
    let fields: Vec<BoxedStrategy<Vec<(String, String)>>> = FIELDS
        .iter()
        .map(|&name| {
            proptest::collection::vec(value(valid_values(name, known)), 0..=2)
                .prop_map(move |values| {
                    values
                        .into_iter()
                        .map(|value| (name.to_owned(), value))
                        .collect()
                })
                .boxed()
        })
        .collect();
    let index = select(&["0", "1", "-1", "x", "", "99999999999999999999", "0][0"][..]);
    let policy_ids = proptest::collection::vec((index, value(vec![known.policy_id.clone()])), 0..3)
        .prop_map(|entries| {
            entries
                .into_iter()
                .map(|(i, id)| (format!("policy_ids[{i}]"), id))
                .collect::<Vec<_>>()
        });
    (fields, policy_ids).prop_map(|(fields, ids)| fields.into_iter().flatten().chain(ids).collect())
}

/// Numbers of the right type, at the edges.
const INTEGERS: &[&str] = &[
    "9223372036854775807",
    "-9223372036854775808",
    "-1",
    "0",
    "1",
];

/// The arguments that are an `i64` (or an optional one): `typed_form` sends them at the ends.
fn is_integer(field: &str) -> bool {
    matches!(
        field,
        "id" | "backup_set_id"
            | "policy_id"
            | "run_id"
            | "preview_run_id"
            | "user_id"
            | "target_id"
            | "page"
            | "before"
            | "offset"
            | "limit"
            | "version"
            | "from"
            | "to"
            | "as_of"
    )
}

/// The arguments that are a `bool`.
fn is_flag(field: &str) -> bool {
    field.starts_with("include_") || matches!(field, "reviewed" | "all_matching")
}

/// The arguments that are a comma-separated list of ids.
fn is_id_list(field: &str) -> bool {
    matches!(field, "policy_ids" | "ids")
}

/// A server function as `src/api` declares it: its endpoint (below `/api/`) and its arguments,
/// each its name and its type as written (`i64`, `Option<i64>`, `String`, …), optional ones
/// (`#[server(default)]`) included.
pub(crate) struct ServerFnSource {
    pub(crate) endpoint: String,
    pub(crate) arguments: Vec<(String, String)>,
}

/// Every server function of `src/api`, read from its source: the registry knows the paths, not
/// the arguments, and a request leaves out an optional argument without a word.
pub(crate) fn server_fn_sources() -> Vec<ServerFnSource> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();
    let mut functions = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (start, _) in text.match_indices("#[server(prefix") {
            let rest = &text[start..];
            let endpoint = rest
                .split("endpoint = \"")
                .nth(1)
                .and_then(|tail| tail.split('"').next())
                .unwrap_or_else(|| panic!("{}: a server function without endpoint", file.display()))
                .to_owned();
            let signature = &rest[rest.find("pub async fn ").expect("its function")..];
            let open = signature.find('(').expect("its arguments");
            let mut depth = 0;
            let mut close = open;
            for (at, c) in signature[open..].char_indices() {
                match c {
                    '(' | '[' | '<' => depth += 1,
                    ')' | ']' | '>' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    close = open + at;
                    break;
                }
            }
            let arguments = top_level_parts(&signature[open + 1..close])
                .into_iter()
                .filter_map(|part| {
                    let part = without_attributes(&part);
                    let (name, ty) = part.split_once(':')?;
                    let name = name.trim().trim_start_matches("mut ").trim();
                    Some((name.to_owned(), ty.trim().to_owned()))
                })
                .collect();
            functions.push(ServerFnSource {
                endpoint,
                arguments,
            });
        }
    }
    functions
}

/// `text` split at the commas outside brackets, comment lines left out.
fn top_level_parts(text: &str) -> Vec<String> {
    let text: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut parts = vec![String::new()];
    let mut depth = 0;
    for c in text.chars() {
        match c {
            '(' | '[' | '<' => depth += 1,
            ')' | ']' | '>' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().unwrap().push(c);
    }
    parts.retain(|part| !part.trim().is_empty());
    parts
}

/// An argument with its attributes (`#[server(default)]`) taken off.
fn without_attributes(part: &str) -> String {
    let mut rest = part.trim();
    while let Some(attribute) = rest.strip_prefix("#[") {
        let mut depth = 1;
        let end = attribute
            .char_indices()
            .find_map(|(at, c)| {
                match c {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(at)
            })
            .expect("an attribute ends");
        rest = attribute[end + 1..].trim_start();
    }
    rest.to_owned()
}

/// Every argument of every server function in `src/api`, optional ones included, is in
/// [`FIELDS`], so the sweep sends it (the sweep's own check only finds the required ones: an
/// empty form names those as missing), and each has the type the sweep gives it: every `i64`
/// is sent at its ends, every `bool` as a flag.
#[test]
fn every_argument_of_every_server_function_is_swept() {
    let functions = server_fn_sources();
    let registered: Vec<&str> = server_fn_paths().map(|(path, _)| path).collect();
    for path in &registered {
        assert!(
            functions
                .iter()
                .any(|function| format!("/api/{}", function.endpoint) == *path),
            "{path} is registered but its source in src/api was not found"
        );
    }
    assert_eq!(functions.len(), registered.len(), "one source per function");
    let mut wrong = Vec::new();
    for ServerFnSource {
        endpoint,
        arguments,
    } in &functions
    {
        for (name, ty) in arguments {
            if !FIELDS.contains(&name.as_str()) {
                wrong.push(format!("{endpoint}: `{name}` is not in FIELDS"));
            }
            let integer = matches!(ty.replace(' ', "").as_str(), "i64" | "Option<i64>");
            if integer != is_integer(name) {
                wrong.push(format!(
                    "{endpoint}: `{name}: {ty}`, is_integer says {}",
                    !integer
                ));
            }
            if (ty == "bool") != is_flag(name) {
                wrong.push(format!(
                    "{endpoint}: `{name}: {ty}`, is_flag says {}",
                    ty != "bool"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A form whose values all have their argument's type but odd content (extreme numbers, any
/// text), each field once, so the function itself runs on them.
fn typed_form(known: &Known) -> impl Strategy<Value = Vec<(String, String)>> {
    FIELDS
        .iter()
        .map(|&name| {
            let valid = valid_values(name, known);
            let value = if is_integer(name) {
                prop_oneof![2 => select(valid), 1 => select(INTEGERS).prop_map(str::to_owned)]
                    .boxed()
            } else if is_flag(name) {
                select(&["true", "false"][..])
                    .prop_map(str::to_owned)
                    .boxed()
            } else if is_id_list(name) {
                // Ids, known or at the edges, comma-separated as the form sends them.
                let id = prop_oneof![
                    2 => Just(known.policy_id.clone()),
                    1 => select(INTEGERS).prop_map(str::to_owned),
                ];
                proptest::collection::vec(id, 0..4)
                    .prop_map(|ids| ids.join(","))
                    .boxed()
            } else {
                prop_oneof![2 => select(valid), 1 => text()].boxed()
            };
            value
                .prop_map(move |value| (name.to_owned(), value))
                .boxed()
        })
        .collect::<Vec<BoxedStrategy<(String, String)>>>()
}

/// Form bodies no encoder would write.
const RAW_FORMS: &[&str] = &[
    "%ZZ",
    "tenant=%",
    "tenant=%C3%28",
    "tenant[]=x",
    "tenant[a]=x",
    "policy_ids[99999999999999999999]=1",
    "policy_ids=1&policy_ids[0]=2",
    "a[b][c][d][e][f][g][h]=1",
    "=&=&&",
    "tenant",
];

/// What a server function receives.
#[derive(Debug, Clone)]
enum Body {
    Form(Vec<(String, String)>),
    Raw {
        content_type: &'static str,
        bytes: Vec<u8>,
    },
}

fn body(known: &Known) -> impl Strategy<Value = Body> {
    // Filled with characters the form encoding keeps as they are: the body stays below the
    // server's 2 MB limit, so the whole value reaches the function.
    let huge = (typed_form(known), select(FIELDS), select(&['x', '9'][..])).prop_map(
        |(mut fields, name, fill)| {
            fields.retain(|(field, _)| field.as_str() != name);
            fields.push((name.to_owned(), fill.to_string().repeat(MEGABYTE)));
            Body::Form(fields)
        },
    );
    let form_type = "application/x-www-form-urlencoded";
    prop_oneof![
        4 => typed_form(known).prop_map(Body::Form),
        3 => form(known).prop_map(Body::Form),
        1 => huge,
        1 => select(RAW_FORMS).prop_map(move |raw| Body::Raw {
            content_type: form_type,
            bytes: raw.as_bytes().to_vec(),
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(move |bytes| Body::Raw {
            content_type: form_type,
            bytes,
        }),
        1 => select(&["application/json", "text/plain", "multipart/form-data"][..]).prop_map(
            |content_type| Body::Raw {
                content_type,
                bytes: br#"{"tenant":["x"],"id":{"a":1}}"#.to_vec(),
            }
        ),
    ]
}

/// One generated call: the body and the `Accept` header (none, a server-function client, or
/// a plain HTML form).
fn call_case(known: &Known) -> impl Strategy<Value = (Body, Option<&'static str>)> {
    (
        body(known),
        select(&[None, Some("application/json"), Some("text/html")][..]),
    )
}

/// A case for a failure message: its start (a 1 MB field would drown the message).
fn shorten(case: &impl std::fmt::Debug) -> String {
    format!("{case:?}").chars().take(400).collect()
}

async fn garbage_never_breaks_a_server_function(app: TestApp) {
    let known = known_ids(&app).await;
    let cookies = cookies(&app).await;
    let mut paths: Vec<&str> = server_fn_paths().map(|(path, _)| path).collect();
    paths.sort_by_key(|path| (*path == SIGN_OUT, *path));
    assert!(paths.len() >= 10, "the registry lists the server functions");

    // A wrong type is the caller's mistake: 400, with a reason.
    let operator = cookies
        .iter()
        .find_map(|(caller, cookie)| (*caller == Caller::Operator).then_some(cookie.as_deref()))
        .flatten()
        .expect("the operator's cookie");
    let response = app
        .call_as(
            operator,
            "backup-sets/get",
            &[("tenant", CONTOSO), ("id", "not a number")],
        )
        .await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("deserializing"));

    // Every required argument of every function is in FIELDS (an empty form names the first
    // one missing; fill it in and ask again).
    for path in paths.iter().filter(|path| **path != SIGN_OUT) {
        let mut form: Vec<(String, String)> = Vec::new();
        for _ in 0..FIELDS.len() {
            let body = send(&app, Some(operator), path, &Body::Form(form.clone()), None)
                .await
                .2;
            let Some(missing) = body
                .split("missing field `")
                .nth(1)
                .and_then(|rest| rest.split('`').next())
            else {
                break;
            };
            assert!(
                FIELDS.contains(&missing),
                "{path} needs `{missing}`: add it to FIELDS"
            );
            let valid = valid_values(missing, &known).remove(0);
            form.push((missing.to_owned(), valid));
        }
    }

    let mut runner = runner();
    let strategy = call_case(&known);
    for (caller, cookie) in &cookies {
        for path in &paths {
            for _ in 0..CALL_CASES {
                let (body, accept) = generate(&mut runner, &strategy);
                let (status, retry_after, text) =
                    send(&app, cookie.as_deref(), path, &body, accept).await;
                let case = format!("{caller:?} → {path} {}", shorten(&(&body, accept)));
                assert_eq!(panics::count(), 0, "{case} made the server panic");
                let overloaded = *path == SIGN_IN && status == 503 && retry_after;
                assert!(status < 500 || overloaded, "{case}: {status} {text:.300}");
                if (400..500).contains(&status) {
                    assert!(!text.trim().is_empty(), "{case}: {status} without a reason");
                }
            }
        }
    }
}

/// Posts `body` to a server function from our own origin: status, whether a Retry-After came
/// with it, and the body.
async fn send(
    app: &TestApp,
    cookie: Option<&str>,
    path: &str,
    body: &Body,
    accept: Option<&str>,
) -> (u16, bool, String) {
    // A connection per call: a pooled one the server has just closed would fail the next call.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client");
    let mut request = client.post(app.url(path)).header("Origin", app.origin());
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    request = match body {
        Body::Form(fields) => request.form(fields),
        Body::Raw {
            content_type,
            bytes,
        } => request
            .header("Content-Type", *content_type)
            .body(bytes.clone()),
    };
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("{path} {}: no answer: {error:?}", shorten(body)));
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let text = response
        .text()
        .await
        .unwrap_or_else(|error| panic!("{path} {}: answer cut off: {error}", shorten(body)));
    (status, retry_after, text)
}

/// Path segments: the ids that exist, dots, numbers, text with control characters and stray
/// percent signs (encoded so that the request line stays valid HTTP), and broken encodings.
fn segment(valid: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        2 => select(valid),
        1 => select(&[".", "..", "...", ".x", "x.", "%2e", "%2e%2e", "%2E.", "%2F"][..])
            .prop_map(str::to_owned),
        1 => number().prop_map(|n| encode(&n)),
        3 => "[\\x00-\\x1f\\x7f./%\\\\a-z0-9 é]{1,12}".prop_map(|raw| encode(&raw)),
        1 => select(&["%", "%0", "%ZZ", "%00", "%0A.x", "%0D%0A", "%09", "%5C", "%C3%28", "%FF"][..])
            .prop_map(str::to_owned),
    ]
}

/// Percent-encodes what a request line cannot hold; `%`, `.` and `/` stay as they are.
fn encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' | b'.' | b'/' | b'%' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A page request: whether it is a HEAD, one segment per placeholder of the route, a path
/// suffix and a query.
type PageCase = (bool, Vec<String>, String, String);

/// A plain request for a route with these placeholders (`{tenant}`, `{id}`, `{version}`, …): a
/// GET of Contoso with an id that exists (of some kind) for every other placeholder, nothing
/// after it: what reaches the route's own handler, for every route.
fn plain_page_case(known: &Known, placeholders: &[&str]) -> BoxedStrategy<PageCase> {
    let ids = vec![
        known.set_id.clone(),
        known.run_id.clone(),
        known.policy_id.clone(),
        known.version_id.clone(),
    ];
    let segments: Vec<BoxedStrategy<String>> = placeholders
        .iter()
        .map(|&placeholder| match placeholder {
            "{tenant}" => Just(CONTOSO.to_owned()).boxed(),
            _ => select(ids.clone()).boxed(),
        })
        .collect();
    (
        Just(false),
        segments,
        Just(String::new()),
        Just(String::new()),
    )
        .boxed()
}

/// A garbage request for a route with these placeholders: either method, one segment per
/// placeholder (the tenant for `{tenant}`, an id or junk for any other), a path suffix and a
/// query.
fn page_case(known: &Known, placeholders: &[&str]) -> BoxedStrategy<PageCase> {
    let ids = vec![
        CONTOSO.to_owned(),
        known.set_id.clone(),
        known.run_id.clone(),
        known.policy_id.clone(),
        known.version_id.clone(),
    ];
    let segments: Vec<BoxedStrategy<String>> = placeholders
        .iter()
        .map(|&placeholder| match placeholder {
            "{tenant}" => {
                prop_oneof![3 => Just(CONTOSO.to_owned()), 1 => segment(ids.clone())].boxed()
            }
            _ => segment(ids.clone()).boxed(),
        })
        .collect();
    let suffix = prop_oneof![
        3 => Just(""),
        1 => select(&["/", "/.", "/..", "/x", "/%2e%2e/", "/x.json", "//", "/raw.json"][..]),
    ];
    let key = prop_oneof![
        select(
            &[
                "next", "status", "type", "before", "outcome", "page", "id", "tenant", "from",
                "to", "search", "source", "preview"
            ][..]
        )
        .prop_map(str::to_owned),
        text().prop_map(|raw| encode(&raw)),
    ];
    // Values that mean something to some page (a restore source, a run as a preview), and junk.
    let values = vec![
        String::new(),
        known.set_source.clone(),
        known.version_source.clone(),
        known.run_id.clone(),
    ];
    let query = proptest::collection::vec((key, segment(values)), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join("&")
    });
    (
        any::<bool>(),
        segments,
        suffix.prop_map(str::to_owned),
        query,
    )
        .boxed()
}

/// The placeholders of a route (`{tenant}`, `{id}`, …), in order.
fn placeholders(route: &str) -> Vec<&str> {
    route
        .split('/')
        .filter(|part| part.starts_with('{'))
        .collect()
}

/// Whether an answer came from the route's own handler: not from the fallback (its "Page not
/// found"), nor from what answers before any route is looked at (a hidden file's or a
/// backslash's 404, "no page or file has this path"), nor from the page guard (a redirect to
/// sign-in, its own error page). A HEAD answer has no body to tell: only a 2xx counts.
fn reached_its_route(head: bool, status: u16, body: &[u8]) -> bool {
    if (300..400).contains(&status) {
        return false;
    }
    if head {
        return (200..300).contains(&status);
    }
    let body = String::from_utf8_lossy(body);
    ![
        "Page not found",
        "no page or file has this path",
        "Back to your tenants",
    ]
    .iter()
    .any(|marker| body.contains(marker))
}

async fn garbage_never_breaks_a_page(app: TestApp) {
    let known = known_ids(&app).await;
    let cookies = cookies(&app).await;
    let routes = swept_routes();
    let mut runner = runner();
    // Per route, a plain case first, then the garbage.
    let strategies: Vec<Vec<BoxedStrategy<PageCase>>> = routes
        .iter()
        .map(|route| {
            let placeholders = placeholders(route);
            let garbage = page_case(&known, &placeholders);
            std::iter::once(plain_page_case(&known, &placeholders))
                .chain(std::iter::repeat_n(garbage, PAGE_CASES))
                .collect()
        })
        .collect();
    // Per route, how many cases its handler answered (not the fallback): a route the sweep
    // never reaches is not swept, whatever its answers were.
    let mut reached = vec![0_usize; routes.len()];
    for (caller, cookie) in &cookies {
        for ((route, strategies), reached) in routes.iter().zip(&strategies).zip(&mut reached) {
            for strategy in strategies {
                let (head, params, suffix, query) = generate(&mut runner, strategy);
                let mut params = params.into_iter();
                let path: Vec<String> = route
                    .split('/')
                    .map(|part| match part.starts_with('{') {
                        true => params.next().expect("a segment per placeholder"),
                        false => part.to_owned(),
                    })
                    .collect();
                let mut target = path.join("/") + &suffix;
                if !query.is_empty() {
                    target = format!("{target}?{query}");
                }
                let method = if head { "HEAD" } else { "GET" };
                let case = format!("{caller:?} → {method} {target}");
                let answer = raw_request(&app, method, &target, cookie.as_deref()).await;
                let (status, body, complete) =
                    answer.unwrap_or_else(|error| panic!("{case}: {error}"));
                assert_eq!(panics::count(), 0, "{case} made the server panic");
                assert!(status < 500, "{case}: {status}");
                assert!(complete, "{case}: the page was cut off");
                if (400..500).contains(&status) && !head {
                    assert!(!body.is_empty(), "{case}: {status} without a reason");
                }
                // A case counts when every placeholder holds something: the router may take
                // an empty segment for one, and then the handler never saw an id there.
                let filled = route
                    .split('/')
                    .zip(&path)
                    .all(|(part, segment)| !part.starts_with('{') || !segment.is_empty());
                if filled && reached_its_route(head, status, &body) {
                    *reached += 1;
                }
            }
        }
    }
    let unreached: Vec<&String> = routes
        .iter()
        .zip(&reached)
        .filter_map(|(route, reached)| (*reached == 0).then_some(route))
        .collect();
    assert!(
        unreached.is_empty(),
        "no case with a segment in every placeholder reached these routes (every answer was \
         the fallback's, or came before any route was looked at): {unreached:?}"
    );
}

/// The GET routes the sweeps ask: the router's pages, and its downloads (plain routes beside
/// them), both taken from the router's own lists.
fn swept_routes() -> Vec<String> {
    let mut routes: Vec<String> = leptos_axum::generate_route_list(tenantatlas::app::App)
        .iter()
        .map(|route| route.path().to_owned())
        .collect();
    assert!(routes.len() >= 5, "the router lists its pages");
    routes.extend(download_paths().into_iter().map(str::to_owned));
    routes
}

/// Sends a request line exactly as written (an HTTP client would resolve dot segments and
/// re-encode the path) and reads the answer to its end: status, body, and whether a chunked
/// body ended properly (a panic while streaming a page cuts it off).
pub(crate) async fn raw_request(
    app: &TestApp,
    method: &str,
    target: &str,
    cookie: Option<&str>,
) -> Result<(u16, Vec<u8>, bool), String> {
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .map_err(|error| error.to_string())?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        app.addr
    );
    if let Some(cookie) = cookie {
        head.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|error| error.to_string())?;
    let mut answer = Vec::new();
    // A guard against a hung connection, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .map_err(|_| "no answer within 60 s".to_owned())?
        .map_err(|error| format!("connection broken: {error}"))?;
    let end_of_head = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete answer: {:?}", String::from_utf8_lossy(&answer)))?;
    let head = String::from_utf8_lossy(&answer[..end_of_head]).to_ascii_lowercase();
    let status = head
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line: {head}"))?;
    let body = answer[end_of_head + 4..].to_vec();
    let chunked = head.contains("transfer-encoding: chunked");
    let complete = method == "HEAD" || !chunked || body.ends_with(b"0\r\n\r\n");
    Ok((status, body, complete))
}

/// A page whose answer nobody reads to its end (a HEAD request, a client that reads the first
/// bytes and goes away) still renders to its end without a panic: the render must not outlive
/// the reactive owner it reads from.
async fn pages_left_before_their_end_never_panic(app: TestApp) {
    let known = known_ids(&app).await;
    let cookie = app.sign_in(OPERATOR).await;
    let pages = [
        format!("/t/{CONTOSO}/backup-sets"),
        format!("/t/{CONTOSO}/backup-sets/{}", known.set_id),
        format!("/t/{CONTOSO}/runs"),
        format!("/t/{CONTOSO}/runs/{}", known.run_id),
        format!("/t/{CONTOSO}/policies"),
        // Read in the browser only (the token is in the fragment): the server renders its
        // loading state, and a request left early must not find a resource it cannot resolve.
        "/invite".to_owned(),
        "/".to_owned(),
    ];
    for round in 0..20 {
        for page in &pages {
            let answer = raw_request(&app, "HEAD", page, Some(&cookie)).await;
            let (status, _, _) = answer.unwrap_or_else(|error| panic!("HEAD {page}: {error}"));
            assert_eq!(status, 200, "HEAD {page}");
            abandon_after_first_bytes(&app, page, &cookie).await;
        }
        // Resource tasks of abandoned renders finish on their own time.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            panics::count(),
            0,
            "round {round}: a page left early made the server panic"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        panics::count(),
        0,
        "a page left early made the server panic"
    );
}

/// A GET whose client closes the connection once the first bytes of the answer arrived.
async fn abandon_after_first_bytes(app: &TestApp, target: &str, cookie: &str) {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut first = [0_u8; 16];
    let _ = stream.read(&mut first).await;
    drop(stream);
}

/// A file of the test server's site root (the temp folder, shared with other tests: every
/// name is unique), removed at the end.
struct SiteFile(std::path::PathBuf);

impl SiteFile {
    fn new(relative: &str, content: &[u8]) -> Self {
        let path = std::env::temp_dir().join(relative);
        std::fs::create_dir_all(path.parent().expect("a folder")).unwrap();
        std::fs::write(&path, content).unwrap();
        Self(path)
    }
}

impl Drop for SiteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Each way of writing `name`'s leading dot in a URL path.
fn dot_spellings(name: &str) -> Vec<String> {
    let rest = name.strip_prefix('.').expect("a hidden name");
    ["", "%2e", "%2E"]
        .iter()
        .map(|dot| match *dot {
            "" => format!(".{rest}"),
            dot => format!("{dot}{rest}"),
        })
        .collect()
}

async fn hidden_files_are_404_on_every_path(app: TestApp) {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let hidden = format!(".ta-source-{unique}");
    let folder = format!(".ta-next-{unique}");
    let visible = format!("ta-visible-{unique}.txt");
    // As the build leaves them in the site root, and as an older build left them under pkg/.
    let _files = [
        SiteFile::new(&hidden, b"the wasm's hash and the tools' versions"),
        SiteFile::new(&format!("{folder}/tenantatlas.wasm"), b"half written"),
        SiteFile::new(&format!("pkg/{hidden}"), b"the wasm's hash"),
        SiteFile::new(&visible, b"a public file"),
    ];
    // The site root is served (so a 404 below is the rule, not a missing file).
    let shown = app.get(None, &format!("/{visible}")).await;
    assert_eq!(shown.status(), 200);
    assert_eq!(shown.text().await.unwrap(), "a public file");

    let mut paths = Vec::new();
    for prefix in [
        "/", "//", "/pkg/", "//pkg/", "/pkg//", "/x/", "/pkg/%2f", "/%5c",
    ] {
        for name in dot_spellings(&hidden) {
            paths.push(format!("{prefix}{name}"));
        }
        for name in dot_spellings(&folder) {
            paths.push(format!("{prefix}{name}/tenantatlas.wasm"));
            paths.push(format!("{prefix}{name}%2ftenantatlas.wasm"));
        }
    }
    for path in &paths {
        let answer = app.get(None, path).await;
        assert_eq!(answer.status(), 404, "{path}");
        let body = answer.text().await.unwrap();
        assert!(
            !body.contains("hash") && !body.contains("half written"),
            "{path}: {body}"
        );
    }
}

async fn static_answers_vary_and_private_ones_are_not_stored(app: TestApp) {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let bundle = format!("pkg/b-{unique}/tenantatlas.js");
    let loose = format!("pkg/ta-{unique}.js");
    let _files = [
        SiteFile::new(&bundle, b"plain js"),
        SiteFile::new(&format!("{bundle}.gz"), b"gzip js"),
        SiteFile::new(&format!("{bundle}.br"), b"brotli js"),
        SiteFile::new(&loose, b"plain loose js"),
        SiteFile::new(&format!("{loose}.gz"), b"gzip loose js"),
    ];
    // Every answer that Accept-Encoding chose says so, whichever copy it is.
    for (path, caching) in [
        (&bundle, "public, max-age=31536000, immutable"),
        (&loose, "no-cache"),
    ] {
        for encoding in [None, Some("gzip"), Some("br"), Some("br, gzip")] {
            let mut request = reqwest::Client::new().get(app.url(&format!("/{path}")));
            if let Some(encoding) = encoding {
                request = request.header("accept-encoding", encoding);
            }
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200, "{path} {encoding:?}");
            let headers = answer.headers();
            let vary: Vec<&str> = headers
                .get_all("vary")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect();
            assert_eq!(vary, ["accept-encoding"], "{path} {encoding:?}");
            assert_eq!(headers["cache-control"], caching, "{path} {encoding:?}");
        }
    }

    // Pages and server-function answers of a signed-in user are never stored.
    let cookie = app.sign_in(OPERATOR).await;
    for path in [
        format!("/t/{CONTOSO}/runs"),
        format!("/t/{CONTOSO}/backup-sets"),
    ] {
        let page = app.get(Some(&cookie), &path).await;
        assert_eq!(page.status(), 200, "{path}");
        assert_eq!(page.headers()["cache-control"], "no-store", "{path}");
    }
    let sign_in = app.get(None, "/sign-in").await;
    assert_eq!(sign_in.headers()["cache-control"], "no-store");
    let me = app.call_as(&cookie, "auth/me", &[]).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.headers()["cache-control"], "no-store");
    let refused = app.call("auth/me", &[]).await;
    assert_eq!(refused.headers()["cache-control"], "no-store");
}

/// Arguments whose decoding error would be huge: serde_qs names a repeated key in its error, and
/// prints the whole value a key holds when the same key is also used as a map. The answer is the
/// caller's mistake (400) with a short reason, never a 500 nor an echo of megabytes.
async fn arguments_whose_error_is_huge_are_a_short_400(app: TestApp) {
    let key = "k".repeat(100_000);
    let bodies = [
        format!("tenant={CONTOSO}&{key}=1&{key}=2"),
        format!("tenant={}&tenant[a][b]=1", "x".repeat(MEGABYTE)),
    ];
    let mut paths: Vec<&str> = server_fn_paths().map(|(path, _)| path).collect();
    paths.sort();
    for path in paths {
        for body in &bodies {
            let raw = Body::Raw {
                content_type: "application/x-www-form-urlencoded",
                bytes: body.clone().into_bytes(),
            };
            let (status, _, text) = send(&app, None, path, &raw, None).await;
            let case = format!("{path} {}", shorten(&body));
            assert_eq!(status, 400, "{case}: {text:.300}");
            assert!(text.contains("deserializ"), "{case}: {text:.300}");
            assert!(text.len() < 4096, "{case}: {} bytes", text.len());
        }
    }
    assert_eq!(panics::count(), 0, "no call made the server panic");
}

/// A method an address does not take is a 405 with a reason: a server function's JSON error
/// (with the `Allow` header naming the method it takes), a page's short text. Derived from the
/// router, like the sweeps above.
async fn a_wrong_method_is_405_with_a_reason(app: TestApp) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    for (path, method) in server_fn_paths() {
        for wrong in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"] {
            let wrong = reqwest::Method::from_bytes(wrong.as_bytes()).unwrap();
            let response = client
                .request(wrong.clone(), app.url(path))
                .header("Origin", app.origin())
                .send()
                .await
                .unwrap();
            let case = format!("{wrong} {path}");
            assert_eq!(response.status(), 405, "{case}");
            assert_eq!(response.headers()["allow"], method.as_str(), "{case}");
            if wrong == reqwest::Method::HEAD {
                continue;
            }
            let text = response.text().await.unwrap();
            let error: tenantatlas::domain::AppError = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("{case}: {error}: {text:?}"));
            assert!(
                error.to_string().contains(method.as_str()),
                "{case}: {text}"
            );
        }
    }
    for route in &swept_routes() {
        let path: Vec<String> = route
            .split('/')
            .map(|part| match part.starts_with('{') {
                true => CONTOSO.to_owned(),
                false => part.to_owned(),
            })
            .collect();
        let path = path.join("/");
        for wrong in ["POST", "PUT", "DELETE"] {
            let wrong = reqwest::Method::from_bytes(wrong.as_bytes()).unwrap();
            let response = client
                .request(wrong.clone(), app.url(&path))
                .header("Origin", app.origin())
                .send()
                .await
                .unwrap();
            let case = format!("{wrong} {path}");
            assert_eq!(response.status(), 405, "{case}");
            let text = response.text().await.unwrap();
            assert!(text.contains("GET"), "{case}: {text:?}");
        }
    }
    assert_eq!(panics::count(), 0, "no request made the server panic");
}

/// Posts to a server function over a raw socket, from our own origin, as a client outside a
/// browser can: `headers` after the request line, then the `body` parts, written from a task of
/// their own while the answer is read (the server may answer before the body is all sent, and
/// close: errors while writing are ignored). The sending side stays open until the answer has
/// come. The answer's status and body.
async fn raw_post(
    app: &TestApp,
    path: &str,
    headers: &str,
    body: Vec<Vec<u8>>,
) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .map_err(|error| error.to_string())?;
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nOrigin: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n{headers}\r\n",
        app.addr,
        app.origin()
    );
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        for part in body {
            writer.write_all(&part).await?;
        }
        writer.flush().await?;
        // Kept open until the answer is read: a client that stops sending without closing,
        // not one whose end of the body the server would see.
        Ok::<_, std::io::Error>(writer)
    });
    let mut answer = Vec::new();
    let read = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|value| value.trim().parse::<usize>().ok());
                if length.is_some_and(|length| answer.len() >= end + 4 + length) {
                    return Ok(end);
                }
            }
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) if answer.windows(4).any(|w| w == b"\r\n\r\n") => {
                    let end = answer.windows(4).position(|w| w == b"\r\n\r\n");
                    return Ok(end.unwrap_or_default());
                }
                Ok(0) => return Err("the connection closed without an answer".to_owned()),
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
                Err(error) => return Err(format!("connection broken: {error}")),
            }
        }
    };
    // A guard against a server that waits for the rest of the body, not a timing assertion.
    let end = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| "no answer within 10 s".to_owned())??;
    sender.abort();
    drop(sender);
    let status = String::from_utf8_lossy(&answer[..end])
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line: {:?}", String::from_utf8_lossy(&answer)))?;
    Ok((
        status,
        String::from_utf8_lossy(&answer[end + 4..]).into_owned(),
    ))
}

/// The start of a sign-in form whose password follows (a known account's e-mail, so a body
/// that reached the function would be a failed sign-in, audited).
fn sign_in_form_start() -> Vec<u8> {
    format!("email={}&password=", OPERATOR.replace('@', "%40")).into_bytes()
}

async fn failed_sign_ins(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.sign_in_failed'")
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

/// An anonymous client that declares a huge body (64 MiB) and sends 1 KB of it is answered 413
/// at once, from the headers: the server neither waits for nor collects the rest.
async fn a_declared_huge_body_is_413_before_it_is_sent(app: TestApp) {
    let mut body = sign_in_form_start();
    body.resize(1024, b'x');
    let (status, text) = raw_post(&app, SIGN_IN, "Content-Length: 67108864\r\n", vec![body])
        .await
        .unwrap();
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("too large"), "{text}");
    assert_eq!(failed_sign_ins(&app).await, 0);
    assert_eq!(panics::count(), 0);
}

/// A chunked body, which declares no length, is cut at the limit: 4 MiB to sign-in is a 413
/// with a reason, and never reaches the function (no failed sign-in is audited).
async fn a_chunked_body_past_the_limit_is_413_and_never_reaches_sign_in(app: TestApp) {
    let chunk = |data: &[u8]| {
        let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
        framed.extend_from_slice(data);
        framed.extend_from_slice(b"\r\n");
        framed
    };
    let mut body = vec![chunk(&sign_in_form_start())];
    let block = vec![b'x'; 64 * 1024];
    body.extend((0..64).map(|_| chunk(&block)));
    body.push(b"0\r\n\r\n".to_vec());
    let (status, text) = raw_post(&app, SIGN_IN, "Transfer-Encoding: chunked\r\n", body)
        .await
        .unwrap();
    assert_eq!(status, 413, "{text}");
    let error: tenantatlas::domain::AppError =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text:?}"));
    assert!(error.to_string().contains("too large"), "{text}");
    assert_eq!(failed_sign_ins(&app).await, 0, "the function never ran");
    assert_eq!(panics::count(), 0);
}

/// The largest request a page sends still gets through: "Add selected" with 10,000 policies
/// (the most one run takes), and the same number of the widest ids a list can hold, which the
/// function itself refuses (422: not this tenant's), not the limit.
async fn the_largest_id_list_a_page_sends_is_not_too_large(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = common::backup_set(&app, &cookie, CONTOSO, "Everything").await;
    let tenant = common::tenant_id(&app.db, CONTOSO).await;
    // In batches: 10,000 single inserts would be the slowest part of the test.
    for batch in 0..20 {
        let rows: Vec<String> = (0..500)
            .map(|i| {
                let n = batch * 500 + i;
                format!("({tenant}, 'bulk-{n}', 'compliance', 'Bulk policy {n}', 'android', 0)")
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, \
             synced_at) VALUES {}",
            rows.join(", ")
        ))
        .execute(app.db.pool())
        .await
        .unwrap();
    }
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM policies WHERE graph_id LIKE 'bulk-%' ORDER BY id")
            .fetch_all(app.db.pool())
            .await
            .unwrap();
    assert_eq!(ids.len(), 10_000);
    let run = app
        .add_policies(&cookie, CONTOSO, set, &ids, &[])
        .await
        .expect("10,000 policies are one run");
    assert!(run.run_id > 0);

    let widest: Vec<i64> = (0..10_000).map(|i| i64::MIN + i).collect();
    // Each id 20 characters and a `%2C` after it: about 230 KB, the bound the limit is set by.
    let encoded: usize = widest.iter().map(|id| id.to_string().len() + 3).sum();
    assert!(encoded > 200_000 && encoded < REQUEST_BODY_LIMIT);
    let refused = app
        .add_policies(&cookie, CONTOSO, set, &widest, &[])
        .await
        .expect_err("ids of no policy are refused");
    assert_eq!(refused.status, 422, "{}", refused.body);
}

/// Starts an app whose password checker has no core.
struct NoFreeCore;

impl NoFreeCore {
    async fn start(backend: common::Backend) -> TestApp {
        TestApp::spawn_with(
            backend,
            common::Options {
                checker: Some(Checker::new(0, Duration::from_millis(20))),
                ..Default::default()
            },
        )
        .await
    }
}

/// A password longer than any account's is a wrong password before argon2 reads it: the same
/// 401 for a known and an unknown e-mail, although no core is free to check one (a password of
/// allowed length is answered busy).
async fn an_over_long_password_is_wrong_before_any_hash(app: TestApp) {
    let over = "p".repeat(PASSWORD_MAX_CHARS + 1);
    let mut answers = Vec::new();
    for email in [OPERATOR, "nobody@contoso.example"] {
        let response = app
            .call("auth/sign-in", &[("email", email), ("password", &over)])
            .await;
        let status = response.status();
        answers.push((status, response.text().await.unwrap()));
    }
    assert_eq!(answers[0].0, 401, "{}", answers[0].1);
    assert_eq!(
        answers[0], answers[1],
        "known and unknown e-mails look the same"
    );
    let checked = app
        .call(
            "auth/sign-in",
            &[
                ("email", OPERATOR),
                ("password", &"p".repeat(PASSWORD_MAX_CHARS)),
            ],
        )
        .await;
    assert_eq!(
        checked.status(),
        503,
        "a password of allowed length is checked"
    );
}

/// The header read and request body timeouts of [`SlowClients`]' server.
const SLOW_TIMEOUT: Duration = Duration::from_secs(1);
/// How long past [`SLOW_TIMEOUT`] a test waits for the server to act.
const SLOW_MARGIN: Duration = Duration::from_secs(4);
/// How often a slow client sends one more byte: far within [`SLOW_TIMEOUT`], so a timeout
/// between parts would never fire.
const TRICKLE: Duration = Duration::from_millis(100);

/// The real server (`http::serve_with`) with [`SLOW_TIMEOUT`] for headers and bodies.
struct SlowClients {
    addr: std::net::SocketAddr,
    origin: String,
    test_db: common::TestDb,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl SlowClients {
    async fn start(backend: common::Backend) -> Self {
        use tenantatlas::server::auth::client_address::TrustedProxies;
        use tenantatlas::server::auth::session::SessionSettings;
        use tenantatlas::server::http::{self, ServeOptions};
        use tenantatlas::server::state::{AppState, Settings};
        let test_db = common::TestDb::create(backend).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = format!("http://{addr}");
        let settings = Settings {
            public_origin: origin.clone(),
            public_url: Some(origin.clone()),
            sessions: SessionSettings {
                idle: Duration::from_secs(3600),
                max_age: Duration::from_secs(3600),
                secure: false,
            },
            trusted_proxies: TrustedProxies::new(Vec::new()),
        };
        let state = AppState::new(
            test_db.db.clone(),
            http::leptos_options(&std::env::temp_dir(), addr),
            settings,
        );
        let options = ServeOptions {
            header_read_timeout: SLOW_TIMEOUT,
            request_body_timeout: SLOW_TIMEOUT,
            ..ServeOptions::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(http::serve_with(
            listener,
            state,
            async {
                let _ = stopped.await;
            },
            options,
        ));
        Self {
            addr,
            origin,
            test_db,
            _stop: stop,
        }
    }

    /// A sign-in POST's head from our own origin, which declares `length` bytes of body.
    fn sign_in_head(&self, length: usize) -> String {
        format!(
            "POST {SIGN_IN} HTTP/1.1\r\nHost: {}\r\nOrigin: {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n",
            self.addr, self.origin
        )
    }
}

/// What a slow client saw of the server: everything it answered, and whether it then closed
/// the connection (or reset it), within `within`.
struct Seen {
    answer: String,
    closed: bool,
    after: Duration,
}

impl Seen {
    /// The server closed the connection, and not before the deadline.
    fn assert_closed_at_the_deadline(&self) {
        assert!(
            self.closed,
            "the connection is still open after {:?}: {:?}",
            self.after, self.answer
        );
        assert!(self.after >= SLOW_TIMEOUT, "closed early: {:?}", self.after);
    }

    /// Headers that never ended: closed at the deadline, with no answer or a 408.
    fn assert_headers_cut_off(&self) {
        self.assert_closed_at_the_deadline();
        assert!(
            self.answer.is_empty() || self.answer.starts_with("HTTP/1.1 408"),
            "answer: {:?}",
            self.answer
        );
    }
}

/// Connects, writes `first`, then `rest` a byte every [`TRICKLE`] (and then nothing, keeping
/// the connection open), and reads what the server does for at most `within`.
async fn trickle(
    addr: std::net::SocketAddr,
    first: Vec<u8>,
    rest: Vec<u8>,
    within: Duration,
) -> Seen {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let started = std::time::Instant::now();
    let sender = tokio::spawn(async move {
        writer.write_all(&first).await?;
        for byte in rest {
            tokio::time::sleep(TRICKLE).await;
            writer.write_all(&[byte]).await?;
        }
        // Open until the test ends: a client that stops sending without closing.
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(writer)
    });
    let mut answer = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let closed = tokio::time::timeout(within, async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await
    .is_ok();
    let after = started.elapsed();
    sender.abort();
    Seen {
        answer: String::from_utf8_lossy(&answer).into_owned(),
        closed,
        after,
    }
}

/// A sign-in that declares 1,000 bytes of body and sends them a byte every 100 ms (each far
/// within any timeout between parts, the whole far past the body's deadline) is answered 408
/// once the deadline has passed, with a reason, and its connection is closed: the client holds
/// nothing longer than the deadline. The function never ran.
async fn a_trickling_body_is_408_and_its_connection_closed(app: SlowClients) {
    let mut first = app.sign_in_head(1000).into_bytes();
    let start = sign_in_form_start();
    first.extend_from_slice(&start[..10]);
    let rest = vec![b'x'; 990];
    let seen = trickle(app.addr, first, rest, SLOW_TIMEOUT + SLOW_MARGIN).await;
    seen.assert_closed_at_the_deadline();
    assert!(
        seen.answer.starts_with("HTTP/1.1 408"),
        "answer: {:?}",
        seen.answer
    );
    assert!(seen.answer.contains("too slowly"), "{:?}", seen.answer);
    let failed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.sign_in_failed'")
            .fetch_one(app.test_db.db.pool())
            .await
            .unwrap();
    assert_eq!(failed, 0, "the function never ran");
    assert_eq!(panics::count(), 0);
}

/// A request line and then headers a byte every 100 ms that never end: the connection is
/// closed once the header read timeout has passed.
async fn headers_that_never_end_are_cut_off(app: SlowClients) {
    let first = format!("POST {SIGN_IN} HTTP/1.1\r\nHost: {}\r\n", app.addr).into_bytes();
    let rest = format!("Origin: {}\r\nX-Padding: {}", app.origin, "y".repeat(200)).into_bytes();
    trickle(app.addr, first, rest, SLOW_TIMEOUT + SLOW_MARGIN)
        .await
        .assert_headers_cut_off();
}

/// A connection on which nothing is ever sent is closed once the header read timeout has
/// passed (it would otherwise hold a socket and a task for ever).
async fn a_connection_that_sends_nothing_is_closed(app: SlowClients) {
    trickle(app.addr, Vec::new(), Vec::new(), SLOW_TIMEOUT + SLOW_MARGIN)
        .await
        .assert_closed_at_the_deadline();
}

/// The metrics listener, served as `serve` serves it (`http::serve_metrics`) with the short
/// header read timeout: a scrape is answered, and a connection whose headers never end is
/// closed once the timeout has passed, as on the app's listener.
async fn the_metrics_listener_cuts_off_headers_that_never_end(app: SlowClients) {
    use tenantatlas::server::http::{self, ServeOptions};
    use tenantatlas::server::metrics;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = metrics::router(metrics::install().unwrap(), app.test_db.db.clone());
    let options = ServeOptions {
        header_read_timeout: SLOW_TIMEOUT,
        ..ServeOptions::default()
    };
    let server = tokio::spawn(http::serve_metrics(listener, router, options));
    let scrape = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200, "a scrape is answered");
    let first = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n").into_bytes();
    let rest = format!("X-Padding: {}", "y".repeat(200)).into_bytes();
    trickle(addr, first, rest, SLOW_TIMEOUT + SLOW_MARGIN)
        .await
        .assert_headers_cut_off();
    trickle(addr, Vec::new(), Vec::new(), SLOW_TIMEOUT + SLOW_MARGIN)
        .await
        .assert_closed_at_the_deadline();
    server.abort();
}

/// A body that arrives within the deadline, in parts, is answered as usual (a wrong password:
/// 401), and a second request on the same kept-alive connection, sent after a pause shorter
/// than the header read timeout, is too.
async fn a_body_sent_in_time_is_answered_as_usual(app: SlowClients) {
    let mut body = sign_in_form_start();
    body.extend_from_slice(b"wrong-password&next=%2F");
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(reader);
    for round in 0..2 {
        writer
            .write_all(app.sign_in_head(body.len()).as_bytes())
            .await
            .unwrap();
        let (head, tail) = body.split_at(10);
        writer.write_all(head).await.unwrap();
        tokio::time::sleep(SLOW_TIMEOUT / 2).await;
        writer.write_all(tail).await.unwrap();
        let answer = tokio::time::timeout(SLOW_TIMEOUT + SLOW_MARGIN, read_answer(&mut reader))
            .await
            .unwrap_or_else(|_| panic!("round {round}: no answer"));
        assert!(
            answer.0.starts_with("HTTP/1.1 401"),
            "round {round}: {answer:?}"
        );
        tokio::time::sleep(SLOW_TIMEOUT / 2).await;
    }
    assert_eq!(panics::count(), 0);
}

/// One answer with a `Content-Length` from `reader`: its head and body.
async fn read_answer(
    reader: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> (String, String) {
    use tokio::io::AsyncBufReadExt;
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap() == 0 {
            panic!("the connection closed: {head:?}");
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|line| {
            line.strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await.unwrap();
    (head, String::from_utf8_lossy(&body).into_owned())
}
