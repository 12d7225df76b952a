//! Stored versions of policies: a captured [`Snapshot`] becomes a `policy_snapshots` row. Every
//! operation that captures (adding to a backup set, capture now, drift checks) stores through
//! here, so the hash rule holds everywhere: an unchanged policy reuses its existing version.
//!
//! The hash covers the normalised content only ([`crate::server::graph::snapshot::content_hash`]).
//! A version captured in an older capture format (format 1, stored before hashes were
//! normalised) holds the same content under another hash; such a version is reused too when its
//! normalised content equals the capture's (so a device configuration captured in format 2 after
//! a format-1 capture is not a new version, nor is one changed back to what a format-1 version
//! held). A capture that records more than the stored version did (compliance actions,
//! presentation values) is a new version, whose comparison with the older one reads those parts
//! as "not captured then", never as changes.
//!
//! Setting definitions are stored once per tenant and id in `setting_definitions`, apart from
//! any content, under the tenant whose capture returned them: each tenant's Graph answers for
//! its own catalog (custom definitions, a catalog version rolled out to it first), so one
//! tenant's capture never renames another tenant's settings. [`definition_names`] and
//! [`setting_names`] read the tenant's for the viewer.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use sqlx::{Any, Executor, FromRow};

use super::db::{Db, Sql};
use super::engine::operation::Tx;
use super::graph::{CaptureOptions, SettingDefinition, Snapshot};
use crate::domain::snapshot::{normalize, CaptureFormat, CapturedPolicy, PolicyType, SettingNames};

/// Ids per statement when reading definitions (well under both engines' parameter limits).
const IDS_PER_QUERY: usize = 500;

/// The version a capture was stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The `policy_snapshots` row.
    pub id: i64,
    /// Whether this capture made the row (a new version); `false` when the policy's content was
    /// already stored (under this hash, or with the same normalised content).
    pub new_version: bool,
}

/// A stored version as comparisons read it: its payload, capture format and options.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVersion {
    pub id: i64,
    pub payload: Value,
    pub format: CaptureFormat,
    pub options: CaptureOptions,
    pub content_hash: String,
    pub captured_at: i64,
}

impl StoredVersion {
    /// The version as the snapshot module reads it.
    pub fn captured(&self, family: PolicyType) -> CapturedPolicy<'_> {
        CapturedPolicy::new(family, self.format, &self.payload)
    }
}

const VERSION_COLUMNS: &str =
    "id, payload, capture_format, with_assignments, with_scope_tags, content_hash, captured_at";

/// A row of [`VERSION_COLUMNS`], before its payload and format are read.
#[derive(FromRow)]
struct VersionRow {
    id: i64,
    payload: String,
    capture_format: i64,
    with_assignments: i64,
    with_scope_tags: i64,
    content_hash: String,
    captured_at: i64,
}

impl TryFrom<VersionRow> for StoredVersion {
    type Error = sqlx::Error;

    fn try_from(row: VersionRow) -> Result<Self, sqlx::Error> {
        let decode = |e: String| sqlx::Error::Decode(e.into());
        let format = row.capture_format;
        Ok(StoredVersion {
            id: row.id,
            payload: serde_json::from_str(&row.payload).map_err(|e| decode(e.to_string()))?,
            format: u16::try_from(format)
                .ok()
                .and_then(CaptureFormat::new)
                .ok_or_else(|| decode(format!("unknown capture format {format}")))?,
            options: CaptureOptions {
                include_assignments: row.with_assignments != 0,
                include_scope_tags: row.with_scope_tags != 0,
            },
            content_hash: row.content_hash,
            captured_at: row.captured_at,
        })
    }
}

/// One version of the tenant's policies, by id (`None` if the tenant has no such version).
pub async fn load_version<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    tenant_id: i64,
    snapshot_id: i64,
) -> Result<Option<StoredVersion>, sqlx::Error> {
    let sql =
        format!("SELECT {VERSION_COLUMNS} FROM policy_snapshots WHERE tenant_id = $1 AND id = $2");
    sqlx::query_as::<_, VersionRow>(&sql)
        .bind(tenant_id)
        .bind(snapshot_id)
        .fetch_optional(executor)
        .await?
        .map(StoredVersion::try_from)
        .transpose()
}

/// A capture to store: the policy's record, what Graph returned for it, and when.
#[derive(Debug, Clone, Copy)]
pub struct Capture<'a> {
    pub policy_id: i64,
    pub snapshot: &'a Snapshot,
    /// When the read that returned the policy under its record's own Graph id was sent (Unix
    /// ms; [`Snapshot::read_at`]): the send of the policy's own GET by the attempt Graph
    /// answered, after any wait for the tenant's request budget or a Retry-After. Not when the
    /// capture was asked for: a read held back by a 429 would count as older than one another
    /// run made while it waited, and its newer content would lose to that one's. Graph answered
    /// after the send, so the policy existed then: a mark of being gone from Intune made no
    /// later than that is cleared, a newer one (a sync or a 404 after the send, deleted
    /// meanwhile) stays. `None` for a read of another Graph object kept as the record's version
    /// (an earlier restore's create that a preview found but could not adopt): the record's own
    /// Graph id may still be gone, so its mark stays. The capture becomes the policy's current
    /// version only if no later read made the current one ([`store_captures`]).
    pub read_at: Option<i64>,
}

/// Stores `snapshot` as a version of the tenant's policy, or finds the version with the same
/// content, inside the caller's transaction; stores its setting definitions too. The version
/// becomes the policy's current one (what Intune held at its last capture), also when it is an
/// older version found again, as after a restore, unless the current one was read later
/// ([`store_captures`]); and a policy marked gone from Intune (a sync that no longer listed it,
/// a capture answered 404) is present again, since Graph just returned it (the 404 was a
/// replication blip, or the policy came back). The policy counts as read at `now`
/// ([`Capture::read_at`]).
pub async fn store_snapshot(
    tx: &mut Tx,
    tenant_id: i64,
    policy_id: i64,
    snapshot: &Snapshot,
    now: i64,
) -> Result<StoredSnapshot, sqlx::Error> {
    let stored = store_snapshots(tx, tenant_id, &[(policy_id, snapshot)], now).await?;
    stored.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}

/// [`store_snapshot`] for a batch of captures (policy, snapshot), each read at `now`: see
/// [`store_captures`].
pub async fn store_snapshots(
    tx: &mut Tx,
    tenant_id: i64,
    captures: &[(i64, &Snapshot)],
    now: i64,
) -> Result<Vec<StoredSnapshot>, sqlx::Error> {
    let captures: Vec<Capture<'_>> = captures
        .iter()
        .map(|(policy_id, snapshot)| Capture {
            policy_id: *policy_id,
            snapshot,
            read_at: Some(now),
        })
        .collect();
    store_captures(tx, tenant_id, &captures, now).await
}

/// [`store_snapshot`] for a batch of captures, in a few statements for the whole batch rather
/// than several per capture; the versions in the batch's order. The statement that moves
/// current versions also clears the captured policies' marks of being gone from Intune, those
/// made no later than each capture's read ([`Capture::read_at`]).
///
/// A capture becomes its policy's current version only when its read is not older than the
/// current version's (`policies.current_read_at`, see [`supersedes`]): two runs of different
/// kinds or targets may capture one policy at once (a "Capture now" beside a cancelled backup
/// still finishing its read, backups into two sets, a restore preview beside a drift check), and
/// the one recorded last may have read first, so "recorded last" would move the current version
/// back to content Intune no longer holds. Within a batch, the newest read of a policy wins
/// whatever its place. A capture whose content already is its policy's current version
/// (settled) writes nothing, so the stored read time stays that of the read that made it
/// current: a capture read after that one but before the settled read, with other content,
/// still becomes current when recorded later. That needs the policy to have changed and changed
/// back while both were read, and the next capture puts it right.
pub async fn store_captures(
    tx: &mut Tx,
    tenant_id: i64,
    captures: &[Capture<'_>],
    now: i64,
) -> Result<Vec<StoredSnapshot>, sqlx::Error> {
    let mut definitions: HashMap<&str, &SettingDefinition> = HashMap::new();
    for capture in captures {
        for definition in &capture.snapshot.setting_definitions {
            definitions.insert(&definition.id, definition);
        }
    }
    let mut definitions: Vec<&SettingDefinition> = definitions.into_values().collect();
    definitions.sort_by(|a, b| a.id.cmp(&b.id));
    store_definitions(tx, tenant_id, &definitions, now).await?;

    let pairs: Vec<(i64, &Snapshot)> = captures
        .iter()
        .map(|capture| (capture.policy_id, capture.snapshot))
        .collect();
    let mut stored = Vec::with_capacity(captures.len());
    let mut settled = Vec::with_capacity(captures.len());
    for chunk in pairs.chunks(CAPTURES_PER_QUERY) {
        for (version, is_settled) in find_or_insert(tx, tenant_id, chunk, now).await? {
            stored.push(version);
            settled.push(is_settled);
        }
    }
    // The current version of each policy: its newest read in the batch, unless the policy's
    // current one was read later (checked by the statement); and the policy is in Intune,
    // unless it was marked gone after that capture's read (deleted since) or the read was not
    // of its own Graph id. A policy whose content did not change (the common case of a backup)
    // already has it and is not marked gone: no write.
    let mut current: HashMap<i64, (i64, Option<i64>, bool)> = HashMap::new();
    for ((capture, version), settled) in captures.iter().zip(&stored).zip(settled) {
        let newest = current
            .get(&capture.policy_id)
            .is_none_or(|(_, read_at, _)| supersedes(capture.read_at, *read_at));
        if newest {
            current.insert(capture.policy_id, (version.id, capture.read_at, settled));
        }
    }
    let mut current: Vec<(i64, i64, Option<i64>)> = current
        .into_iter()
        .filter(|(_, (_, _, settled))| !settled)
        .map(|(policy_id, (version, read_at, _))| (policy_id, version, read_at))
        .collect();
    current.sort_unstable();
    for chunk in current.chunks(CAPTURES_PER_QUERY) {
        let mut sql = Sql::new("WITH v (id, snapshot_id, read_at) AS (VALUES ");
        sql.rows(chunk, |sql, (policy_id, snapshot_id, read_at)| {
            sql.int(*policy_id)
                .push(", ")
                .int(*snapshot_id)
                .push(", ")
                .opt_int(*read_at);
        })
        .push(&format!(
            ") UPDATE policies SET \
             current_snapshot_id = CASE WHEN {NEWER} \
               THEN v.snapshot_id ELSE policies.current_snapshot_id END, \
             current_read_at = CASE WHEN {NEWER} \
               THEN v.read_at ELSE policies.current_read_at END, \
             gone_from_intune_at = CASE WHEN policies.gone_from_intune_at <= v.read_at \
               THEN NULL ELSE policies.gone_from_intune_at END FROM v \
             WHERE policies.id = v.id AND policies.tenant_id = "
        ))
        .int(tenant_id);
        sql.query().execute(&mut **tx).await?;
    }
    Ok(stored)
}

/// Whether a capture read at `read_at` replaces a current version read at `current` (Unix ms,
/// both [`Capture::read_at`]): when its read is not older. An unknown `current` (a version
/// current before read times were stored, or one read from another Graph object) is older than
/// any read. A capture read from another Graph object (`None`: a restore preview keeping an
/// earlier restore's create as the record's version) always replaces it, as before read times
/// were compared: the preview has just read what Intune holds for the record, and its read
/// time says nothing about the record's own Graph id. Its version then counts as of an unknown
/// read, which any later recorded read replaces. [`store_captures`]'s statement says the same
/// in SQL.
fn supersedes(read_at: Option<i64>, current: Option<i64>) -> bool {
    match (read_at, current) {
        (Some(read_at), Some(current)) => read_at >= current,
        _ => true,
    }
}

/// [`supersedes`] in SQL, for the statement's row `v` and the policy's row: NULL compares as
/// neither older nor newer, so each NULL case is spelled out.
const NEWER: &str = "(v.read_at IS NULL OR policies.current_read_at IS NULL \
     OR policies.current_read_at <= v.read_at)";

/// Captures per statement when storing a batch (8 values each: well under both engines'
/// parameter limits).
const CAPTURES_PER_QUERY: usize = 100;

/// The version of each capture, with whether its policy's row already says so (settled): the
/// version was found as the policy's current one and the policy is not marked gone from Intune
/// (a capture may clear that mark: [`store_captures`]). The version is found as:
///
/// 1. the version stored under its hash;
/// 2. else the first of these that holds the same normalised content (each read in its own
///    capture format): the policy's current version (what Intune held at its last capture, so
///    an unchanged policy stays on it and is no change), its newest version by capture time,
///    then its versions in an older capture format, newest first;
/// 3. else a new version.
///
/// A version in the latest format is stored under the hash of its normalised content, so the
/// same content is found by hash; only an older format's version (format 1 hashed its raw JSON)
/// can hold it under another hash, as when a policy changed and then went back to what a
/// format-1 version held, which is neither its current nor its newest version. The current and
/// newest versions are compared whatever their format, in case a later change of the hash rule
/// leaves them under another hash too.
///
/// Payloads can be large (hundreds of kilobytes for a settings catalog policy, compressed on
/// PostgreSQL), so they are read in the order they are tried, a batch at a time: one statement
/// reads the current and newest versions' payloads and only the ids of the older format's, and
/// a second one, only for captures that neither holds, reads those older versions' payloads.
/// An unchanged policy whose current version is in format 1 misses its hash on every capture
/// (its version is reused, never stored again in format 2) and so reads one or two payloads
/// each time, as before older versions were compared, not every format-1 version it has.
///
/// Its format-2 hash is not remembered for the format-1 version to be found by hash next time:
/// a version's `content_hash` is what the versions pages show and backup exports carry in their
/// manifests, so rewriting it would make a version read differently from what was exported,
/// and a second hash would need a column of its own. A version that cannot be read is never
/// reused.
async fn find_or_insert(
    tx: &mut Tx,
    tenant_id: i64,
    captures: &[(i64, &Snapshot)],
    now: i64,
) -> Result<Vec<(StoredSnapshot, bool)>, sqlx::Error> {
    let found = with_hashes(tx, tenant_id, captures).await?;
    let found_each: Vec<Option<(i64, bool)>> = captures
        .iter()
        .map(|(policy_id, snapshot)| {
            found
                .get(&(*policy_id, snapshot.content_hash.as_str()))
                .copied()
        })
        .collect();
    let mut settled: Vec<bool> = found_each
        .iter()
        .map(|found| found.is_some_and(|(_, settled)| settled))
        .collect();
    let mut versions: Vec<Option<StoredSnapshot>> = found_each
        .iter()
        .map(|found| {
            found.map(|(id, _)| StoredSnapshot {
                id,
                new_version: false,
            })
        })
        .collect();
    let unknown: Vec<i64> = captures
        .iter()
        .zip(&versions)
        .filter(|(_, version)| version.is_none())
        .map(|((policy_id, _), _)| *policy_id)
        .collect();
    let candidates = candidate_versions(tx, tenant_id, &unknown).await?;
    reuse_same_content(captures, &mut versions, &mut settled, &candidates.tried);
    let unmatched: BTreeSet<i64> = captures
        .iter()
        .zip(&versions)
        .filter(|((policy_id, _), version)| {
            version.is_none() && candidates.with_older.contains(policy_id)
        })
        .map(|((policy_id, _), _)| *policy_id)
        .collect();
    if !unmatched.is_empty() {
        let older = older_versions(tx, tenant_id, &unmatched, &candidates.read).await?;
        reuse_same_content(captures, &mut versions, &mut settled, &older);
    }
    let mut new: Vec<(i64, &Snapshot)> = Vec::new();
    for ((policy_id, snapshot), version) in captures.iter().zip(&versions) {
        let key = (*policy_id, snapshot.content_hash.as_str());
        if version.is_none()
            && !new
                .iter()
                .any(|(p, s)| (*p, s.content_hash.as_str()) == key)
        {
            new.push((*policy_id, snapshot));
        }
    }
    if new.is_empty() {
        return Ok(versions.into_iter().flatten().zip(settled).collect());
    }
    // In one order everywhere, so that two transactions inserting some of the same versions
    // wait for each other instead of deadlocking on PostgreSQL's unique index.
    new.sort_by(|(a, x), (b, y)| (a, &x.content_hash).cmp(&(b, &y.content_hash)));
    let mut sql = Sql::new(
        "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at, \
         capture_format, with_assignments, with_scope_tags) VALUES ",
    );
    sql.rows(&new, |sql, (policy_id, snapshot)| {
        sql.int(tenant_id)
            .push(", ")
            .int(*policy_id)
            .push(", ")
            .text(snapshot.content_hash.as_str())
            .push(", ")
            .text(snapshot.canonical_json.as_str())
            .push(", ")
            .int(now)
            .push(", ")
            .int(i64::from(snapshot.format.get()))
            .push(", ")
            .int(i64::from(snapshot.options.include_assignments))
            .push(", ")
            .int(i64::from(snapshot.options.include_scope_tags));
    })
    .push(
        " ON CONFLICT (policy_id, content_hash) DO NOTHING RETURNING id, policy_id, content_hash",
    );
    let inserted: Vec<(i64, i64, String)> = sql.query_as().fetch_all(&mut **tx).await?;
    let inserted: HashMap<(i64, &str), i64> = inserted
        .iter()
        .map(|(id, policy_id, hash)| ((*policy_id, hash.as_str()), *id))
        .collect();
    // What another transaction stored meanwhile under the same hash is found again.
    let raced: Vec<(i64, &Snapshot)> = new
        .iter()
        .filter(|(policy_id, snapshot)| {
            !inserted.contains_key(&(*policy_id, snapshot.content_hash.as_str()))
        })
        .copied()
        .collect();
    let found = with_hashes(tx, tenant_id, &raced).await?;
    captures
        .iter()
        .zip(versions)
        .map(|((policy_id, snapshot), version)| {
            let key = (*policy_id, snapshot.content_hash.as_str());
            version
                .or_else(|| {
                    inserted.get(&key).map(|&id| StoredSnapshot {
                        id,
                        new_version: true,
                    })
                })
                .or_else(|| {
                    found.get(&key).map(|&(id, _)| StoredSnapshot {
                        id,
                        new_version: false,
                    })
                })
                .ok_or(sqlx::Error::RowNotFound)
        })
        .zip(settled)
        .map(|(version, settled)| version.map(|version| (version, settled)))
        .collect()
}

/// The stored versions of these captures' contents, by (policy, hash), each with whether it is
/// settled (see [`find_or_insert`]): its policy's current version, on a policy not marked gone
/// from Intune; captures whose content has no version are left out.
async fn with_hashes<'a>(
    tx: &mut Tx,
    tenant_id: i64,
    captures: &'a [(i64, &Snapshot)],
) -> Result<HashMap<(i64, &'a str), (i64, bool)>, sqlx::Error> {
    if captures.is_empty() {
        return Ok(HashMap::new());
    }
    // Policies and hashes are matched as two lists; the pairs are then picked out here. The
    // rows are found through the policies' index; the tenant is only checked (`+tenant_id`,
    // which no index serves): PostgreSQL estimates a tenant it has no statistics for (a new
    // tenant's first backup) at a few rows and otherwise reads every version of the tenant for
    // each batch.
    let mut sql = Sql::new(
        "SELECT s.id, s.policy_id, s.content_hash, \
         CASE WHEN p.current_snapshot_id = s.id AND p.gone_from_intune_at IS NULL \
           THEN 1 ELSE 0 END AS settled \
         FROM policy_snapshots s LEFT JOIN policies p ON p.id = s.policy_id AND p.tenant_id = s.tenant_id \
         WHERE +s.tenant_id = ",
    );
    sql.int(tenant_id)
        .push(" AND s.policy_id IN (")
        .list(captures, |sql, (policy_id, _)| {
            sql.int(*policy_id);
        })
        .push(") AND s.content_hash IN (")
        .list(captures, |sql, (_, snapshot)| {
            sql.text(snapshot.content_hash.as_str());
        })
        .push(")");
    let rows: Vec<(i64, i64, String, i64)> = sql.query_as().fetch_all(&mut **tx).await?;
    let mut found = HashMap::new();
    for (policy_id, snapshot) in captures {
        let hash = snapshot.content_hash.as_str();
        if let Some((id, .., settled)) =
            rows.iter().find(|(_, p, h, _)| p == policy_id && h == hash)
        {
            found.insert((*policy_id, hash), (*id, *settled == 1));
        }
    }
    Ok(found)
}

/// Payloads of stored versions read to compare captures with, in this process.
static CANDIDATE_PAYLOADS_READ: AtomicU64 = AtomicU64::new(0);

/// How many stored versions' payloads this process has read to compare a capture with when its
/// hash was not stored (see [`find_or_insert`]). For tests, which nextest runs one to a process.
#[doc(hidden)]
pub fn candidate_payloads_read() -> u64 {
    CANDIDATE_PAYLOADS_READ.load(Ordering::Relaxed)
}

/// A stored version a capture may hold the content of, under another hash.
struct Candidate {
    version: StoredVersion,
    /// Whether it is its policy's current version.
    current: bool,
    /// Whether it is settled (see [`find_or_insert`]): current, on a policy not marked gone.
    settled: bool,
}

/// For each capture without a version, the first of its policy's `candidates` (in the order
/// they are tried) that holds its content, if any; with whether that one is settled.
fn reuse_same_content(
    captures: &[(i64, &Snapshot)],
    versions: &mut [Option<StoredSnapshot>],
    settled: &mut [bool],
    candidates: &HashMap<i64, Vec<Candidate>>,
) {
    for (((policy_id, snapshot), version), settled) in captures
        .iter()
        .zip(versions.iter_mut())
        .zip(settled.iter_mut())
    {
        if version.is_some() {
            continue;
        }
        let same = candidates.get(policy_id).and_then(|candidates| {
            candidates
                .iter()
                .find(|c| same_content(&c.version, snapshot))
        });
        if let Some(candidate) = same {
            *version = Some(StoredSnapshot {
                id: candidate.version.id,
                new_version: false,
            });
            *settled = candidate.settled;
        }
    }
}

/// What [`candidate_versions`] read of some policies.
#[derive(Default)]
struct Candidates {
    /// The readable current and newest versions of each policy, current first.
    tried: HashMap<i64, Vec<Candidate>>,
    /// The ids of the versions whose payloads it read (readable or not).
    read: Vec<i64>,
    /// The policies that have other versions in an older capture format, not read yet.
    with_older: BTreeSet<i64>,
}

/// A version of a policy as [`candidate_versions`] finds it: its payload read only when it is
/// the policy's current or newest version.
#[derive(FromRow)]
struct CandidateRow {
    policy_id: i64,
    is_current: i64,
    /// 1 when the policy is marked gone from Intune.
    policy_gone: i64,
    is_newest: i64,
    id: i64,
    payload: Option<String>,
    capture_format: i64,
    with_assignments: i64,
    with_scope_tags: i64,
    content_hash: String,
    captured_at: i64,
}

/// The current and newest versions of these policies, which a capture whose hash is not stored
/// is compared with first (see [`find_or_insert`]), and which of them have older-format
/// versions besides, whose payloads are left unread.
async fn candidate_versions(
    tx: &mut Tx,
    tenant_id: i64,
    policy_ids: &[i64],
) -> Result<Candidates, sqlx::Error> {
    let mut candidates = Candidates::default();
    if policy_ids.is_empty() {
        return Ok(candidates);
    }
    // The versions are picked by their ids, policies and formats alone; only the current and
    // newest ones' payloads are read (a `CASE` that yields NULL never reads, nor on PostgreSQL
    // decompresses, the payload). Found through the policies' index; the tenant only checked,
    // as in `with_hashes`.
    let mut sql = Sql::new(
        "SELECT r.policy_id AS policy_id, r.is_current AS is_current, \
         r.policy_gone AS policy_gone, CASE WHEN r.newest = 1 THEN 1 ELSE 0 END AS is_newest, s.id AS id, \
         CASE WHEN r.newest = 1 OR r.is_current = 1 THEN s.payload END AS payload, \
         s.capture_format AS capture_format, \
         s.with_assignments AS with_assignments, s.with_scope_tags AS with_scope_tags, \
         s.content_hash AS content_hash, s.captured_at AS captured_at \
         FROM (SELECT s.id, s.policy_id, s.capture_format, \
             CASE WHEN p.current_snapshot_id = s.id THEN 1 ELSE 0 END AS is_current, \
             CASE WHEN p.gone_from_intune_at IS NULL THEN 0 ELSE 1 END AS policy_gone, \
             ROW_NUMBER() OVER (PARTITION BY s.policy_id \
               ORDER BY s.captured_at DESC, s.id DESC) AS newest \
           FROM policy_snapshots s \
           LEFT JOIN policies p ON p.id = s.policy_id AND p.tenant_id = s.tenant_id \
           WHERE +s.tenant_id = ",
    );
    sql.int(tenant_id)
        .push(" AND s.policy_id IN (")
        .list(policy_ids, |sql, policy_id| {
            sql.int(*policy_id);
        })
        .push(
            ")) r JOIN policy_snapshots s ON s.id = r.id \
             WHERE r.newest = 1 OR r.is_current = 1 OR r.capture_format < ",
        )
        .int(i64::from(CaptureFormat::LATEST.get()));
    let rows: Vec<CandidateRow> = sql.query_as().fetch_all(&mut **tx).await?;
    for row in rows {
        if row.is_current == 0 && row.is_newest == 0 {
            candidates.with_older.insert(row.policy_id);
            continue;
        }
        candidates.read.push(row.id);
        CANDIDATE_PAYLOADS_READ.fetch_add(1, Ordering::Relaxed);
        let Some(payload) = row.payload else {
            continue;
        };
        let version = VersionRow {
            id: row.id,
            payload,
            capture_format: row.capture_format,
            with_assignments: row.with_assignments,
            with_scope_tags: row.with_scope_tags,
            content_hash: row.content_hash,
            captured_at: row.captured_at,
        };
        if let Ok(version) = StoredVersion::try_from(version) {
            candidates
                .tried
                .entry(row.policy_id)
                .or_default()
                .push(Candidate {
                    version,
                    current: row.is_current == 1,
                    settled: row.is_current == 1 && row.policy_gone == 0,
                });
        }
    }
    for versions in candidates.tried.values_mut() {
        versions
            .sort_by_key(|c| std::cmp::Reverse((c.current, c.version.captured_at, c.version.id)));
    }
    Ok(candidates)
}

/// A row of [`VERSION_COLUMNS`] with its policy.
#[derive(FromRow)]
struct PolicyVersionRow {
    policy_id: i64,
    #[sqlx(flatten)]
    version: VersionRow,
}

/// The readable versions of these policies in an older capture format, other than the `read`
/// ones (their current and newest, already compared), newest first: what a capture that
/// neither holds is compared with last. One statement whatever their number, with at most two
/// ids read per policy.
async fn older_versions(
    tx: &mut Tx,
    tenant_id: i64,
    policy_ids: &BTreeSet<i64>,
    read: &[i64],
) -> Result<HashMap<i64, Vec<Candidate>>, sqlx::Error> {
    // Found through the policies' index; the tenant only checked, as in `with_hashes`.
    let mut sql = Sql::new(format!(
        "SELECT policy_id, {VERSION_COLUMNS} FROM policy_snapshots WHERE +tenant_id = "
    ));
    sql.int(tenant_id)
        .push(" AND policy_id IN (")
        .list(policy_ids, |sql, policy_id| {
            sql.int(*policy_id);
        })
        .push(") AND capture_format < ")
        .int(i64::from(CaptureFormat::LATEST.get()));
    if !read.is_empty() {
        sql.push(" AND id NOT IN (")
            .list(read, |sql, id| {
                sql.int(*id);
            })
            .push(")");
    }
    let rows: Vec<PolicyVersionRow> = sql.query_as().fetch_all(&mut **tx).await?;
    CANDIDATE_PAYLOADS_READ.fetch_add(rows.len() as u64, Ordering::Relaxed);
    let mut older: HashMap<i64, Vec<Candidate>> = HashMap::new();
    for row in rows {
        if let Ok(version) = StoredVersion::try_from(row.version) {
            older.entry(row.policy_id).or_default().push(Candidate {
                version,
                current: false,
                settled: false,
            });
        }
    }
    for versions in older.values_mut() {
        versions.sort_by_key(|c| std::cmp::Reverse((c.version.captured_at, c.version.id)));
    }
    Ok(older)
}

/// Whether a stored version holds what a capture holds: the same normalised content, each read
/// in its own capture format. The capture options are part of it: a part captured without
/// (assignments, scope tags) is left out of the normalised content, one captured empty is not.
fn same_content(stored: &StoredVersion, snapshot: &Snapshot) -> bool {
    let Some(family) = PolicyType::parse(snapshot.policy_type.as_str()) else {
        return false;
    };
    let Ok(payload) = serde_json::from_str::<Value>(&snapshot.canonical_json) else {
        return false;
    };
    normalize(&stored.captured(family))
        == normalize(&CapturedPolicy::new(family, snapshot.format, &payload))
}

/// Writes the tenant's definitions that are new or whose JSON changed. Unchanged ones are not
/// written, so concurrent captures of the same settings do not lock each other's rows.
async fn store_definitions(
    tx: &mut Tx,
    tenant_id: i64,
    definitions: &[&SettingDefinition],
    now: i64,
) -> Result<(), sqlx::Error> {
    if definitions.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = definitions.iter().map(|d| d.id.clone()).collect();
    let mut stored: HashMap<String, String> = HashMap::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let sql = of_tenant("id, definition", tenant_id, chunk);
        let rows: Vec<(String, String)> = sql.query_as().fetch_all(&mut **tx).await?;
        stored.extend(rows);
    }
    let mut new = Vec::new();
    for definition in definitions {
        match stored.get(&definition.id) {
            Some(json) if *json == definition.json => {}
            Some(_) => {
                sqlx::query(
                    "UPDATE setting_definitions SET display_name = $3, definition = $4, updated_at = $5 \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id)
                .bind(&definition.id)
                .bind(&definition.display_name)
                .bind(&definition.json)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            None => new.push(*definition),
        }
    }
    for chunk in new.chunks(IDS_PER_QUERY / 4) {
        let mut sql = Sql::new(
            "INSERT INTO setting_definitions (tenant_id, id, display_name, definition, updated_at) \
             VALUES ",
        );
        sql.rows(chunk, |sql, definition| {
            sql.int(tenant_id)
                .push(", ")
                .text(definition.id.as_str())
                .push(", ")
                .text(definition.display_name.as_str())
                .push(", ")
                .text(definition.json.as_str())
                .push(", ")
                .int(now);
        })
        .push(" ON CONFLICT (tenant_id, id) DO NOTHING");
        sql.query().execute(&mut **tx).await?;
    }
    Ok(())
}

/// `columns` of the tenant's stored definitions with these ids.
fn of_tenant(columns: &str, tenant_id: i64, ids: &[String]) -> Sql {
    let mut sql = Sql::new(format!(
        "SELECT {columns} FROM setting_definitions WHERE tenant_id = "
    ));
    sql.int(tenant_id)
        .push(" AND id IN (")
        .list(ids, |sql, id| {
            sql.text(id.as_str());
        })
        .push(")");
    sql
}

/// The display names the tenant's captures stored for these setting definitions, by id; ids
/// the tenant never stored are left out.
pub async fn definition_names(
    db: &Db,
    tenant_id: i64,
    ids: &[String],
) -> Result<HashMap<String, String>, sqlx::Error> {
    let mut names = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let sql = of_tenant("id, display_name", tenant_id, chunk);
        let rows: Vec<(String, String)> = sql.query_as().fetch_all(db.pool()).await?;
        names.extend(rows);
    }
    Ok(names)
}

/// What the viewer and the diff show for the tenant's settings catalog ids: the names of the
/// definitions its captures stored and of their choice options.
pub async fn setting_names(
    db: &Db,
    tenant_id: i64,
    ids: &[String],
) -> Result<SettingNames, sqlx::Error> {
    let mut names = SettingNames::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let sql = of_tenant("definition", tenant_id, chunk);
        let texts: Vec<String> = sql.query_scalar().fetch_all(db.pool()).await?;
        let definitions: Vec<Value> = texts
            .iter()
            .filter_map(|text| serde_json::from_str(text).ok())
            .collect();
        names.add_definitions(&definitions);
    }
    Ok(names)
}

/// The names the viewer and the diff use for one or more of the tenant's stored payloads: the
/// tenant's stored definitions of every setting they use, and the names a format-1 payload
/// carries inline.
pub async fn names_for(
    db: &Db,
    tenant_id: i64,
    payloads: &[&Value],
) -> Result<SettingNames, sqlx::Error> {
    let ids: BTreeSet<String> = payloads.iter().flat_map(|p| definition_ids(p)).collect();
    let ids: Vec<String> = ids.into_iter().collect();
    let mut names = setting_names(db, tenant_id, &ids).await?;
    for payload in payloads {
        names.extend(SettingNames::from_payload(payload));
    }
    Ok(names)
}

/// Every `settingDefinitionId` a payload uses, at any depth, sorted and once each: the ids to
/// ask [`setting_names`] for.
pub fn definition_ids(payload: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(fields) => {
                for (key, item) in fields {
                    match (key.as_str(), item) {
                        ("settingDefinitionId", Value::String(id)) => {
                            out.insert(id.clone());
                        }
                        _ => walk(item, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let mut ids = BTreeSet::new();
    walk(payload, &mut ids);
    ids.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definition_ids_are_found_at_every_depth() {
        let payload = json!({"settings": [
            {"settingInstance": {"settingDefinitionId": "b", "groupSettingCollectionValue": [
                {"children": [{"settingDefinitionId": "a"}, {"settingDefinitionId": "b"}]}]}},
            {"settingInstance": {"settingDefinitionId": "c"}}]});
        assert_eq!(definition_ids(&payload), ["a", "b", "c"]);
    }
}
