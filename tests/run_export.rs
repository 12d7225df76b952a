//! The CSV export of a run's items (`/t/{tenant}/runs/{id}/items.csv`): the run detail page's
//! access rule, RFC 4180 with a header row, the outcome filter, every row once across the pages
//! it is streamed in, and cells that cannot run as spreadsheet formulas; a run that compares
//! captures exports what each found, and filters by it as its page does; a queued run, whose
//! items the engine has not written yet, exports its selection as pending, as its page lists it;
//! a restore run exports each item's plan or action as its page shows it, with the new Graph id
//! of a policy created anew and a blocked item's reasons.

use crate::common;

use common::{backup_set, run_with_items, submit, TestApp, CONTOSO, OPERATOR, OUTSIDER, READONLY};
use tenantatlas::server::panics;

both_backends!(TestApp:
    exports_every_item_once_with_a_header,
    filters_by_outcome_and_refuses_unknown_ones,
    only_members_get_it,
    cells_cannot_become_formulas,
    a_drift_check_exports_what_each_capture_found_and_filters_by_it,
    a_queued_run_exports_its_selection_as_pending,
);

const HEADER: &str =
    "policy name,policy type,platform,graph id,outcome,reason code,message,finished at";

async fn csv(
    app: &TestApp,
    cookie: Option<&str>,
    path: &str,
) -> (u16, String, reqwest::header::HeaderMap) {
    let response = app.get(cookie, path).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap(), headers)
}

fn path(run: i64, query: &str) -> String {
    format!("/t/{CONTOSO}/runs/{run}/items.csv{query}")
}

async fn exports_every_item_once_with_a_header(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    // More items than one streamed page (1,000 rows), so the keyset crosses pages.
    let run = run_with_items(&app, &cookie, 2_345, 2_000, 100).await;
    let (status, body, headers) = csv(&app, Some(&cookie), &path(run, "")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("run-{run}-items.csv")));
    assert!(body.ends_with("\r\n"));
    let lines: Vec<&str> = body.split_terminator("\r\n").collect();
    assert_eq!(lines[0], HEADER);
    assert_eq!(lines.len(), 1 + 2_345);
    let unique: std::collections::BTreeSet<&str> = lines[1..].iter().copied().collect();
    assert_eq!(unique.len(), 2_345, "every item once");
    let count = |outcome: &str| {
        lines[1..]
            .iter()
            .filter(|l| l.contains(&format!(",{outcome},")))
            .count()
    };
    assert_eq!(count("succeeded"), 2_000);
    assert_eq!(count("failed"), 100);
    assert_eq!(count("pending"), 245);

    // Browsers accept gzip: the compressed stream is read to its end, and nothing panicked.
    let gzipped = reqwest::Client::new()
        .get(app.url(&path(run, "")))
        .header("Cookie", &cookie)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let compressed = gzipped.bytes().await.expect("the whole compressed file");
    assert!(
        compressed.len() < body.len() / 3,
        "{} of {}",
        compressed.len(),
        body.len()
    );
    assert_eq!(panics::count(), 0);
}

async fn filters_by_outcome_and_refuses_unknown_ones(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let run = run_with_items(&app, &cookie, 30, 10, 5).await;
    let (status, body, headers) = csv(&app, Some(&cookie), &path(run, "?outcome=failed")).await;
    assert_eq!(status, 200);
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("-failed-items.csv"));
    let rows: Vec<&str> = body.split_terminator("\r\n").skip(1).collect();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|row| row.contains(",failed,")));
    let (status, body, _) = csv(&app, Some(&cookie), &path(run, "?outcome=lost")).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("outcome"), "{body}");
}

async fn only_members_get_it(app: TestApp) {
    let operator = app.sign_in(OPERATOR).await;
    let run = run_with_items(&app, &operator, 3, 3, 0).await;
    let readonly = app.sign_in(READONLY).await;
    assert_eq!(
        csv(&app, Some(&readonly), &path(run, "")).await.0,
        200,
        "readonly reads runs"
    );
    let outsider = app.sign_in(OUTSIDER).await;
    let (status, body, _) = csv(&app, Some(&outsider), &path(run, "")).await;
    assert_eq!(status, 403);
    assert!(!body.contains("policy name"), "nothing of the run leaks");
    let anonymous = app.get(None, &path(run, "")).await;
    assert!(
        anonymous.status().is_redirection(),
        "{}",
        anonymous.status()
    );
    assert!(anonymous.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/sign-in"));
    for missing in [
        path(run + 1_000, ""),
        format!("/t/{CONTOSO}/runs/x/items.csv"),
    ] {
        assert_eq!(
            csv(&app, Some(&operator), &missing).await.0,
            404,
            "{missing}"
        );
    }
}

async fn cells_cannot_become_formulas(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let run = run_with_items(&app, &cookie, 5, 0, 5).await;
    let hostile = [
        "=HYPERLINK(\"https://evil.example\",\"x\")",
        "+cmd|' /C calc'!A0",
        "@SUM(1,2)",
        "-2+3, with \"quotes\"",
        // Excel in a locale whose list separator is `;` splits on it: `=1+1` would be a cell.
        "x;=1+1;",
    ];
    let messages = ["=1+1", "plain", "\ttab", "line\nbreak", "a;@SUM(1)"];
    let ids: Vec<i64> = sqlx::query_scalar::<_, i64>(
        "SELECT policy_id FROM run_items WHERE run_id = $1 ORDER BY policy_id",
    )
    .bind(run)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    for ((id, name), message) in ids.iter().zip(hostile).zip(messages) {
        sqlx::query("UPDATE policies SET display_name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(app.db.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE run_items SET message = $1 WHERE run_id = $2 AND policy_id = $3")
            .bind(message)
            .bind(run)
            .bind(id)
            .execute(app.db.pool())
            .await
            .unwrap();
    }
    let (status, body, _) = csv(&app, Some(&cookie), &path(run, "")).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\"'=HYPERLINK(\"\"https://evil.example\"\",\"\"x\"\")\""),
        "{body}"
    );
    assert!(body.contains("'+cmd|' /C calc'!A0"), "{body}");
    assert!(body.contains("\"'@SUM(1,2)\""), "{body}");
    assert!(body.contains("\"'-2+3, with \"\"quotes\"\"\""), "{body}");
    assert!(body.contains(",'=1+1,"), "{body}");
    assert!(body.contains(",'\ttab,"), "{body}");
    assert!(body.contains(",\"line\nbreak\","), "{body}");
    // A piece after a `;` that would start a formula (or open a quote, or end the cell) gets
    // a `'` too: in a later column the quotes are plain characters to a `;`-splitting reader.
    assert!(body.contains("\r\n\"x;'=1+1;'\","), "{body}");
    assert!(body.contains(",\"a;'@SUM(1)\","), "{body}");
    // No cell of any record starts a formula, whether split on `,` or on `;` (outside quotes,
    // which open only at the start of a piece).
    for record in body.split_terminator("\r\n").skip(1) {
        for separator in [',', ';'] {
            for cell in split_outside_quotes(record, separator) {
                assert!(
                    !cell.trim_start_matches('"').starts_with(['=', '+', '@']),
                    "{separator:?}: {cell:?} in {record}"
                );
            }
        }
    }
}

/// The raw pieces of a record split on `separator` where it is not inside quotes. As Excel
/// does, a quote opens only at the very start of a piece (anywhere else it is a plain
/// character); inside, `""` is a quote and a lone `"` closes.
fn split_outside_quotes(record: &str, separator: char) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    let mut chars = record.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek().map(|&(_, next)| next) == Some('"') {
                    chars.next();
                } else {
                    quoted = false;
                }
            }
        } else if c == '"' && i == start {
            quoted = true;
        } else if c == separator {
            pieces.push(&record[start..i]);
            start = i + c.len_utf8();
        }
    }
    pieces.push(&record[start..]);
    pieces
}

async fn a_drift_check_exports_what_each_capture_found_and_filters_by_it(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let run = run_with_items(&app, &cookie, 4, 4, 0).await;
    // As a drift check writes them: two changed (one setting, then three), one unchanged, one
    // deleted in Intune.
    sqlx::query("UPDATE runs SET operation_type = 'backup_set.drift_check' WHERE id = $1")
        .bind(run)
        .execute(app.db.pool())
        .await
        .unwrap();
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT policy_id FROM run_items WHERE run_id = $1 ORDER BY policy_id")
            .bind(run)
            .fetch_all(app.db.pool())
            .await
            .unwrap();
    for (id, (drift, changed)) in ids.iter().zip([
        ("changed", Some(1_i64)),
        ("unchanged", Some(0)),
        ("changed", Some(3)),
        ("deleted", None),
    ]) {
        sqlx::query(
            "UPDATE run_items SET drift = $1, changed_settings = $2 \
             WHERE run_id = $3 AND policy_id = $4",
        )
        .bind(drift)
        .bind(changed)
        .bind(run)
        .bind(id)
        .execute(app.db.pool())
        .await
        .unwrap();
    }
    let (status, body, _) = csv(&app, Some(&cookie), &path(run, "")).await;
    assert_eq!(status, 200, "{body}");
    let lines: Vec<&str> = body.split_terminator("\r\n").collect();
    assert_eq!(
        lines[0],
        "policy name,policy type,platform,graph id,outcome,result,changed settings,reason code,\
         message,finished at"
    );
    assert_eq!(lines.len(), 5);
    assert!(lines[1].contains(",succeeded,changed,1,"), "{}", lines[1]);
    assert!(lines[2].contains(",succeeded,unchanged,0,"), "{}", lines[2]);
    assert!(lines[4].contains(",succeeded,deleted,,"), "{}", lines[4]);

    // The page's "Changed" list downloads the changed items only.
    let (status, body, headers) = csv(&app, Some(&cookie), &path(run, "?outcome=changed")).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("run-{run}-changed-items.csv")));
    let rows: Vec<&str> = body.split_terminator("\r\n").skip(1).collect();
    assert_eq!(rows.len(), 2, "{body}");
    assert!(rows.iter().all(|row| row.contains(",changed,")), "{body}");
    let (_, body, _) = csv(&app, Some(&cookie), &path(run, "?outcome=unchanged")).await;
    assert_eq!(body.split_terminator("\r\n").count(), 2, "{body}");

    // A run that compares nothing keeps the columns it always had.
    sqlx::query("UPDATE runs SET operation_type = 'backup_set.add_policies' WHERE id = $1")
        .bind(run)
        .execute(app.db.pool())
        .await
        .unwrap();
    let (_, body, _) = csv(&app, Some(&cookie), &path(run, "")).await;
    assert!(body.starts_with(&format!("{HEADER}\r\n")), "{body}");
}

async fn a_queued_run_exports_its_selection_as_pending(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Queued").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 3).await;
    // No worker runs here: the run stays queued, and no item of it is written yet.
    let run = submit(&app, &cookie, CONTOSO, set, &ids).await;
    let items: i64 = sqlx::query_scalar("SELECT COUNT(*) AS n FROM run_items WHERE run_id = $1")
        .bind(run)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(items, 0);

    for query in ["", "?outcome=pending"] {
        let (status, body, _) = csv(&app, Some(&cookie), &path(run, query)).await;
        assert_eq!(status, 200, "{query}: {body}");
        let lines: Vec<&str> = body.split_terminator("\r\n").collect();
        assert_eq!(lines[0], HEADER, "{query}");
        assert_eq!(lines.len(), 1 + 3, "{query}: {body}");
        // In policy id order, as the items would be, each waiting with nothing done yet.
        for (i, record) in lines[1..].iter().enumerate() {
            let name = format!("Test policy {i},compliance,android,test-");
            assert!(record.starts_with(&name), "{query}: {record}");
            assert!(record.ends_with(",pending,,,"), "{query}: {record}");
        }
    }
    let (status, body, _) = csv(&app, Some(&cookie), &path(run, "?outcome=failed")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!("{HEADER}\r\n"), "nothing has failed yet");

    // A selection longer than a streamed page (1,000 rows) is written whole, each policy once.
    let many = common::insert_policies(&app.db, CONTOSO, 1_001).await;
    let run = submit(&app, &cookie, CONTOSO, set, &many).await;
    let (status, body, _) = csv(&app, Some(&cookie), &path(run, "")).await;
    assert_eq!(status, 200);
    let records: std::collections::BTreeSet<&str> = body.split_terminator("\r\n").skip(1).collect();
    assert_eq!(records.len(), 1_001);
    assert!(records.iter().all(|record| record.contains(",pending,")));
}

/// Restore runs, through the real preview and execute on the demo Graph: each item's plan (a
/// preview) or what it did (an execute) is exported as the run's page shows it, with the new
/// Graph id of a policy created anew and the reasons a blocked item gives.
mod restore_runs {
    use super::*;
    use common::DemoApp;
    use tenantatlas::domain::restore::RestoreSource;
    use tenantatlas::domain::run_detail::RunDetail;
    use tenantatlas::server::seed;

    both_backends!(local DemoApp:
        a_restore_preview_exports_each_items_plan,
        a_restore_execute_exports_what_each_item_did,
    );

    /// A manager of Contoso may restore.
    const MANAGER: &str = "manager@contoso.example";
    /// What the execute's confirmation asks to type.
    const TENANT_NAME: &str = seed::DEMO_TENANTS[0].1;
    /// Backed up and restored with both.
    const WITH_ASSIGNMENTS_AND_SCOPE_TAGS: &[(&str, &str)] = &[
        ("include_assignments", "true"),
        ("include_scope_tags", "true"),
    ];
    const RESTORE_HEADER: &str = "policy name,policy type,platform,graph id,outcome,action,\
        new graph id,result,changed settings,reason code,message,finished at";

    /// A policy of each of `collections` (one with assignments where there is one), synced and
    /// backed up as `cookie`: the set, and each policy's inventory id and Graph id in order.
    async fn backed_up(
        f: &DemoApp,
        cookie: &str,
        collections: &[&str],
    ) -> (i64, Vec<(i64, String)>) {
        f.run_as(cookie, "runs/sync-inventory", &[("tenant", CONTOSO)])
            .await;
        let sims = f.demo.sim.policies(CONTOSO);
        let mut policies = Vec::new();
        for collection in collections {
            let sim = sims
                .iter()
                .find(|p| p.kind.collection() == *collection && p.assignment_count > 0)
                .or_else(|| sims.iter().find(|p| p.kind.collection() == *collection))
                .expect("the demo tenant has every type");
            policies.push((f.policy_id(&sim.id).await, sim.id.clone()));
        }
        let set = backup_set(&f.app, cookie, CONTOSO, "Restore me").await;
        let ids: Vec<i64> = policies.iter().map(|(id, _)| *id).collect();
        let added = f
            .app
            .add_policies(cookie, CONTOSO, set, &ids, WITH_ASSIGNMENTS_AND_SCOPE_TAGS)
            .await
            .expect("the backup starts");
        f.finish(added.run_id).await;
        (set, policies)
    }

    /// Runs a preview of restoring `policies` of `set` as `cookie`; its id.
    async fn preview(f: &DemoApp, cookie: &str, set: i64, policies: &[(i64, String)]) -> i64 {
        let ids: Vec<i64> = policies.iter().map(|(id, _)| *id).collect();
        let run = f
            .app
            .start_restore_preview(
                cookie,
                CONTOSO,
                RestoreSource::BackupSet(set),
                &ids,
                WITH_ASSIGNMENTS_AND_SCOPE_TAGS,
            )
            .await
            .expect("the preview starts")
            .run_id;
        f.finish(run).await;
        run
    }

    /// The CSV of run `run`: its records, each read back into cells (RFC 4180), keyed by
    /// policy id, after checking that the header is the restore's.
    async fn exported(
        f: &DemoApp,
        cookie: &str,
        run: i64,
        policies: &[(i64, String)],
    ) -> std::collections::BTreeMap<i64, Record> {
        let (status, body, _) = csv(&f.app, Some(cookie), &path(run, "")).await;
        assert_eq!(status, 200, "{body}");
        let lines: Vec<&str> = body.split_terminator("\r\n").collect();
        assert_eq!(lines[0], RESTORE_HEADER, "{body}");
        // Written in policy id order.
        let mut ids: Vec<i64> = policies.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        assert_eq!(lines.len(), 1 + ids.len(), "{body}");
        ids.into_iter()
            .zip(&lines[1..])
            .map(|(id, line)| (id, Record::read(line)))
            .collect()
    }

    /// One exported item, cell by cell.
    #[derive(Debug)]
    struct Record(Vec<String>);

    impl Record {
        fn read(line: &str) -> Self {
            let cells = split_outside_quotes(line, ',')
                .into_iter()
                .map(|raw| match raw.strip_prefix('"') {
                    Some(quoted) => quoted
                        .strip_suffix('"')
                        .unwrap_or(quoted)
                        .replace("\"\"", "\""),
                    None => raw.to_owned(),
                })
                .collect::<Vec<_>>();
            assert_eq!(cells.len(), RESTORE_HEADER.split(',').count(), "{line}");
            Self(cells)
        }

        /// The cell of column `name`.
        fn get(&self, name: &str) -> &str {
            let at = RESTORE_HEADER
                .split(',')
                .position(|column| column == name)
                .unwrap_or_else(|| panic!("no column {name}"));
            &self.0[at]
        }
    }

    /// Asserts that every item's `action` cell reads what the run's page shows for it.
    async fn as_the_page_shows(
        f: &DemoApp,
        cookie: &str,
        run: i64,
        records: &std::collections::BTreeMap<i64, Record>,
    ) {
        let detail: RunDetail = f
            .app
            .run_detail(Some(cookie), CONTOSO, run, &[])
            .await
            .expect("the run's page");
        assert_eq!(detail.items.rows.len(), records.len(), "{detail:?}");
        for row in &detail.items.rows {
            let shown = row
                .restore
                .as_ref()
                .and_then(|restore| restore.label(row.outcome))
                .unwrap_or_default();
            assert_eq!(records[&row.policy_id].get("action"), shown, "{row:?}");
        }
    }

    /// One policy deleted in Intune (a create), one changed (an update), and one deleted whose
    /// backup holds a secret setting, which a create could not bring back (blocked, with its
    /// reason only in the item's notes: the item itself succeeded, with no message).
    async fn a_restore_preview_exports_each_items_plan(f: DemoApp) {
        let cookie = f.app.sign_in(MANAGER).await;
        let (set, policies) = backed_up(
            &f,
            &cookie,
            &[
                "deviceConfigurations",
                "deviceCompliancePolicies",
                "configurationPolicies",
            ],
        )
        .await;
        let [(created, deleted), (updated, changed), (blocked, secret)] =
            <[(i64, String); 3]>::try_from(policies.clone()).unwrap();
        assert!(f.demo.sim.remove_policy(CONTOSO, &deleted));
        assert!(f.demo.sim.change_settings(CONTOSO, &changed));
        assert!(f.demo.sim.remove_policy(CONTOSO, &secret));
        let run = preview(&f, &cookie, set, &policies).await;

        let records = exported(&f, &cookie, run, &policies).await;
        for (id, action) in [
            (created, "Create"),
            (updated, "Update"),
            (blocked, "Blocked"),
        ] {
            let record = &records[&id];
            assert_eq!(record.get("outcome"), "succeeded", "{record:?}");
            assert_eq!(record.get("action"), action, "{record:?}");
            assert_eq!(record.get("new graph id"), "", "a preview creates nothing");
        }
        let message = records[&blocked].get("message");
        assert!(
            message.contains("Secret setting") && message.contains("cannot be created anew"),
            "{:?}",
            records[&blocked]
        );
        assert_eq!(records[&created].get("message"), "");
        assert_eq!(records[&updated].get("message"), "");
        as_the_page_shows(&f, &cookie, run, &records).await;

        // The reasons are defused like every cell: one stored as a formula reads as text.
        sqlx::query("UPDATE run_items SET restore_notes = $1 WHERE run_id = $2 AND policy_id = $3")
            .bind(r#"{"blocked":["=1+1","x;@SUM(1)"]}"#)
            .bind(run)
            .bind(blocked)
            .execute(f.app.db.pool())
            .await
            .unwrap();
        let (_, body, _) = csv(&f.app, Some(&cookie), &path(run, "")).await;
        assert!(body.contains(",\"'=1+1 x;'@SUM(1)\","), "{body}");
    }

    /// An execute of a policy deleted in Intune (created anew, with a new Graph id), one
    /// changed (updated) and one untouched (unchanged): each reads as its page shows it.
    async fn a_restore_execute_exports_what_each_item_did(f: DemoApp) {
        let cookie = f.app.sign_in(MANAGER).await;
        let (set, policies) = backed_up(
            &f,
            &cookie,
            &[
                "deviceConfigurations",
                "deviceCompliancePolicies",
                "groupPolicyConfigurations",
            ],
        )
        .await;
        let [(created, deleted), (updated, changed), (unchanged, _)] =
            <[(i64, String); 3]>::try_from(policies.clone()).unwrap();
        assert!(f.demo.sim.remove_policy(CONTOSO, &deleted));
        assert!(f.demo.sim.change_settings(CONTOSO, &changed));
        let preview = preview(&f, &cookie, set, &policies).await;
        let run = f
            .app
            .execute_restore(&cookie, CONTOSO, preview, true, TENANT_NAME)
            .await
            .expect("the restore starts")
            .run_id;
        f.finish(run).await;

        let records = exported(&f, &cookie, run, &policies).await;
        for (id, action) in [
            (created, "Created"),
            (updated, "Updated"),
            (unchanged, "Unchanged"),
        ] {
            let record = &records[&id];
            assert_eq!(record.get("outcome"), "succeeded", "{record:?}");
            assert_eq!(record.get("action"), action, "{record:?}");
        }
        let new_id = records[&created].get("new graph id");
        assert!(!new_id.is_empty() && new_id != deleted, "{records:?}");
        assert!(
            f.demo.sim.policies(CONTOSO).iter().any(|p| p.id == new_id),
            "the new id is the live policy's: {new_id}"
        );
        assert_eq!(records[&updated].get("new graph id"), "");
        assert_eq!(records[&unchanged].get("new graph id"), "");
        as_the_page_shows(&f, &cookie, run, &records).await;

        // The new id is defused like every cell.
        sqlx::query(
            "UPDATE run_items SET created_graph_id = '=1+1' WHERE run_id = $1 AND policy_id = $2",
        )
        .bind(run)
        .bind(created)
        .execute(f.app.db.pool())
        .await
        .unwrap();
        let (_, body, _) = csv(&f.app, Some(&cookie), &path(run, "")).await;
        assert!(body.contains(",Created,'=1+1,"), "{body}");
    }
}
