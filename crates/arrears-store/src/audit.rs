//! The append-only audit log.
//!
//! Each record carries a MAC (HMAC-SHA256) over its fields and the previous record's
//! MAC, under a key that lives outside the database (`audit.key_file`/`key_env`):
//! whoever can write the database file cannot recompute the chain after an edit.
//! Records from before keying carry a plain SHA-256 link and an empty key id; they
//! still verify, but an unkeyed record after a keyed one is a downgrade.
//!
//! A chain cannot show that its newest records were deleted. After every commit that
//! appended records, the newest record's sequence and MAC go to an append-only anchor
//! file (`audit.anchor_file`), kept where the database's writers cannot rewrite it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::digest::Update;
use sha2::Sha256;

use super::db::{args, Db, Row};
use super::{Result, Store, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// Shorter keys would make the MAC easier to brute-force than SHA-256 itself.
const MIN_KEY_LEN: usize = 32;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: String,
    pub principal: String,
    pub action: String,
    pub target: String,
    pub before: String,
    pub after: String,
    pub prev_hash: String,
    pub hash: String,
    /// The key `hash` is a MAC under; empty: a plain SHA-256 link from before keying.
    /// Last, so that CSV consumers of older exports keep their column positions.
    pub key_id: String,
}

const AUDIT_COLUMNS: &str =
    "id, at, principal, action, target, before, after, prev_hash, hash, key_id";

fn audit_row(r: &Row) -> Result<AuditRecord> {
    Ok(AuditRecord {
        id: r.get(0, "audit.id")?,
        at: r.get(1, "audit.at")?,
        principal: r.get(2, "audit.principal")?,
        action: r.get(3, "audit.action")?,
        target: r.get(4, "audit.target")?,
        before: r.get(5, "audit.before")?,
        after: r.get(6, "audit.after")?,
        prev_hash: r.get(7, "audit.prev_hash")?,
        hash: r.get(8, "audit.hash")?,
        key_id: r.get(9, "audit.key_id")?,
    })
}

impl AuditRecord {
    fn fields(&self) -> [&str; 6] {
        [
            &self.at,
            &self.principal,
            &self.action,
            &self.target,
            &self.before,
            &self.after,
        ]
    }
}

/// Fields are length-prefixed so that moving text from one field to the next changes
/// the digest.
fn feed(h: &mut impl Update, prev: &str, id: i64, fields: [&str; 6]) {
    h.update(prev.as_bytes());
    h.update(&id.to_le_bytes());
    for f in fields {
        h.update(&(f.len() as u64).to_le_bytes());
        h.update(f.as_bytes());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The link of a record from before keying.
fn chain_hash(prev: &str, id: i64, fields: [&str; 6]) -> String {
    let mut h = Sha256::default();
    feed(&mut h, prev, id, fields);
    hex(&sha2::Digest::finalize(h))
}

fn keyed_mac(key: &[u8], key_id: &str, prev: &str, id: i64, fields: [&str; 6]) -> String {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    // The tag keeps a keyed MAC from ever equalling a plain link; the key id is
    // covered so that a record cannot be moved under another key's name.
    Update::update(&mut m, b"arrears-audit-hmac-v1\0");
    Update::update(&mut m, &(key_id.len() as u64).to_le_bytes());
    Update::update(&mut m, key_id.as_bytes());
    feed(&mut m, prev, id, fields);
    hex(&m.finalize().into_bytes())
}

/// Errors in the `audit:` section of the config, named by field.
#[derive(Debug, thiserror::Error)]
pub enum AuditSetupError {
    #[error("audit.{field}: {message}")]
    Config { field: String, message: String },
    #[error("audit.anchor_file {path}: {source}")]
    Anchor {
        path: String,
        source: std::io::Error,
    },
}

fn config_err(field: impl Into<String>, message: impl Into<String>) -> AuditSetupError {
    AuditSetupError::Config {
        field: field.into(),
        message: message.into(),
    }
}

/// The keys (current and retired) and the anchor file every audit writer and the
/// verifier use. Built once from the config and shared by every store connection.
#[derive(Default)]
pub struct AuditSetup {
    /// The id of the key new records are written with.
    signing: Option<String>,
    keys: HashMap<String, Vec<u8>>,
    anchor: Option<PathBuf>,
}

impl fmt::Debug for AuditSetup {
    // Never the secrets: this may end up in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        f.debug_struct("AuditSetup")
            .field("signing", &self.signing)
            .field("keys", &ids)
            .field("anchor", &self.anchor)
            .finish()
    }
}

fn valid_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn load_key(
    field: &str,
    file: Option<&Path>,
    env: Option<&str>,
) -> std::result::Result<Vec<u8>, AuditSetupError> {
    let secret = match (file, env) {
        (Some(path), None) => arrears_secret::read_owner_only(path)
            .map_err(|m| config_err(format!("{field}key_file"), m))?,
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            config_err(
                format!("{field}key_env"),
                format!("environment variable {var} is not set"),
            )
        })?,
        _ => {
            return Err(config_err(
                format!("{field}key_file"),
                "give exactly one of key_file and key_env",
            ))
        }
    };
    let secret = secret.trim();
    if secret.len() < MIN_KEY_LEN {
        let which = if file.is_some() {
            "key_file"
        } else {
            "key_env"
        };
        return Err(config_err(
            format!("{field}{which}"),
            format!(
                "the key must have at least {MIN_KEY_LEN} characters (e.g. `openssl rand -hex 32`)"
            ),
        ));
    }
    Ok(secret.as_bytes().to_vec())
}

impl AuditSetup {
    /// Reads the keys the config names. A key file others can read is refused.
    pub fn from_config(cfg: &AuditConfig) -> std::result::Result<AuditSetup, AuditSetupError> {
        let mut setup = AuditSetup {
            anchor: cfg.anchor_file.clone(),
            ..AuditSetup::default()
        };
        let has_key = cfg.key_file.is_some() || cfg.key_env.is_some();
        match (&cfg.key_id, has_key) {
            (None, false) => {}
            (None, true) => {
                return Err(config_err(
                    "key_id",
                    "required with a key: a short name stored with each record, e.g. `2026-01`",
                ))
            }
            (Some(_), false) => {
                return Err(config_err(
                    "key_id",
                    "set, but neither audit.key_file nor audit.key_env gives the key",
                ))
            }
            (Some(id), true) => {
                if !valid_key_id(id) {
                    return Err(config_err(
                        "key_id",
                        format!("`{id}`: 1 to 32 letters, digits, `-`, `_` or `.`"),
                    ));
                }
                let key = load_key("", cfg.key_file.as_deref(), cfg.key_env.as_deref())?;
                setup.keys.insert(id.clone(), key);
                setup.signing = Some(id.clone());
            }
        }
        for (i, r) in cfg.retired_keys.iter().enumerate() {
            let field = format!("retired_keys[{i}].");
            if !valid_key_id(&r.id) {
                return Err(config_err(
                    format!("{field}id"),
                    format!("`{}`: 1 to 32 letters, digits, `-`, `_` or `.`", r.id),
                ));
            }
            if setup.keys.contains_key(&r.id) {
                return Err(config_err(
                    format!("{field}id"),
                    format!(
                        "`{}` is given twice (a retired key needs an id of its own)",
                        r.id
                    ),
                ));
            }
            let key = load_key(&field, r.key_file.as_deref(), r.key_env.as_deref())?;
            setup.keys.insert(r.id.clone(), key);
        }
        Ok(setup)
    }

    /// A setup with one signing key (tests, tools).
    pub fn with_key(id: &str, secret: &[u8]) -> AuditSetup {
        AuditSetup {
            signing: Some(id.to_string()),
            keys: HashMap::from([(id.to_string(), secret.to_vec())]),
            anchor: None,
        }
    }

    /// Adds a key records may have been written with (before a rotation).
    pub fn retire(mut self, id: &str, secret: &[u8]) -> AuditSetup {
        self.keys.insert(id.to_string(), secret.to_vec());
        self
    }

    pub fn anchored_to(mut self, path: &Path) -> AuditSetup {
        self.anchor = Some(path.to_path_buf());
        self
    }

    pub fn anchor_file(&self) -> Option<&Path> {
        self.anchor.as_deref()
    }

    pub fn signing_key_id(&self) -> Option<&str> {
        self.signing.as_deref()
    }

    /// Opens (creating, owner-only) the anchor file, so that a daemon with an
    /// unwritable anchor refuses to start rather than log the failure on every commit.
    pub fn check_anchor(&self) -> std::result::Result<(), AuditSetupError> {
        match &self.anchor {
            Some(p) => open_anchor(p)
                .map(drop)
                .map_err(|source| AuditSetupError::Anchor {
                    path: p.display().to_string(),
                    source,
                }),
            None => Ok(()),
        }
    }

    /// Records the committed head in the anchor file. The commit has happened, so a
    /// failure here cannot undo it: it is logged, and verify reports the records after
    /// the last anchored one as not yet anchored (the same as after a crash here).
    fn anchor(&self, head: &Head) {
        use std::io::Write as _;
        let Some(path) = &self.anchor else { return };
        let at = &head.at;
        // One write per line: with O_APPEND, lines of concurrent writers (daemon and
        // CLI) do not interleave. Not fsynced, like the database's own commits
        // (synchronous=NORMAL): a line lost in a crash only leaves the anchor behind.
        let line = format!("{} {} {at}\n", head.id, head.hash);
        if let Err(e) = open_anchor(path).and_then(|mut f| f.write_all(line.as_bytes())) {
            tracing::error!(
                anchor = %path.display(),
                seq = head.id,
                error = %e,
                "cannot anchor the audit log; later records will show as not yet anchored"
            );
        }
    }
}

fn open_anchor(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// The newest record after an append: what the anchor file records.
pub(crate) struct Head {
    id: i64,
    hash: String,
    /// When the record was written (its `at`), for the anchor line.
    at: String,
}

/// What is wrong with the log, found at one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditProblem {
    /// Records `id..=last` are not there; `next` follows the record before them.
    Missing { last: i64, next: i64 },
    /// The MAC does not match the contents: edited, inserted, or the chain recomputed
    /// without the key (or with a wrong one).
    Edited,
    /// The record holds what was written as record `holds`.
    Reordered { holds: i64 },
    /// The record is intact but does not follow the record before it.
    Unlinked,
    /// An unkeyed record after keyed ones.
    Downgraded { after: i64 },
    /// Written with a key that is not configured here.
    UnknownKey { key_id: String },
    /// The anchor's line `line` gives another MAC for this record.
    AnchorMismatch { line: usize, last_good: Option<i64> },
    /// The anchor has seen record `anchored`; the log ends at `ends` (`id` is `ends + 1`).
    Truncated { anchored: i64, ends: i64 },
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditProblem::Missing { last, next } => write!(
                f,
                "missing up to record {last} (deleted from the middle: record {next} comes next)"
            ),
            AuditProblem::Edited => f.write_str(
                "its MAC does not match its contents (edited or inserted, or the chain was recomputed without the key)",
            ),
            AuditProblem::Reordered { holds } => {
                write!(f, "it holds record {holds}'s entry (the log was reordered)")
            }
            AuditProblem::Unlinked => {
                f.write_str("it does not follow the record before it (records were replaced)")
            }
            AuditProblem::Downgraded { after } => write!(
                f,
                "unkeyed after the keyed record {after} (a downgrade: the chain was recomputed without the key)"
            ),
            AuditProblem::UnknownKey { key_id } => write!(
                f,
                "written with key `{key_id}`, which is not configured (audit.key_id / audit.retired_keys), so it cannot be verified"
            ),
            AuditProblem::AnchorMismatch { line, last_good } => {
                write!(f, "the anchor's line {line} has another MAC for it (the log was rewritten")?;
                match last_good {
                    Some(g) => write!(f, " after record {g}, the last that matches the anchor)"),
                    None => f.write_str(")"),
                }
            }
            AuditProblem::Truncated { anchored, ends } => write!(
                f,
                "truncated: the anchor says record {anchored} exists, the log ends at {ends}"
            ),
        }
    }
}

/// The outcome of [`Store::verify_audit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditVerdict {
    pub records: u64,
    /// Records with a MAC, per key id.
    pub keyed: BTreeMap<String, u64>,
    /// The first bad record and what is wrong with it; None: intact.
    pub problem: Option<(i64, AuditProblem)>,
    /// With an anchor: the newest record it vouches for (None: it is empty).
    pub anchored: Option<i64>,
    pub last_id: i64,
}

/// One line of the anchor file: `SEQUENCE MAC TIME`.
fn read_anchor(path: &Path) -> Result<BTreeMap<i64, Vec<(usize, String)>>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        StoreError::Audit(format!("cannot read anchor file {}: {e}", path.display()))
    })?;
    let mut out: BTreeMap<i64, Vec<(usize, String)>> = BTreeMap::new();
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let mut w = line.split_whitespace();
        let parsed = match (w.next(), w.next()) {
            (Some(seq), Some(mac))
                if mac.len() == 64 && mac.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                seq.parse::<i64>().ok().map(|s| (s, mac.to_string()))
            }
            _ => None,
        };
        match parsed {
            Some((seq, mac)) => out.entry(seq).or_default().push((i + 1, mac)),
            // A crash in the middle of the last write leaves a partial line.
            None if i + 1 == lines.len() && !complete => {}
            None => {
                return Err(StoreError::Audit(format!(
                    "anchor file {} line {}: expected `SEQUENCE MAC TIME`, found `{line}`",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(out)
}

impl Store {
    /// The audit keys and anchor this store writes and verifies with. Every store
    /// that may write needs it: appending to a keyed log without a key is refused.
    pub fn set_audit(&mut self, setup: Arc<AuditSetup>) {
        self.audit = setup;
    }

    pub fn with_audit(mut self, setup: Arc<AuditSetup>) -> Store {
        self.set_audit(setup);
        self
    }

    /// The clock that stamps what this store writes (see `arrears_core::clock`).
    pub fn with_clock(mut self, clock: Arc<dyn arrears_core::clock::Clock>) -> Store {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &dyn arrears_core::clock::Clock {
        &*self.clock
    }

    /// Runs `f` and appends its audit record in one transaction: the change and its
    /// record land together or not at all. `f` returns (result, before, after); its
    /// error type is the caller's (e.g. an API status), so a refusal passes through.
    pub fn audited<T, E: From<StoreError>>(
        &mut self,
        principal: &str,
        action: &str,
        target: &str,
        f: impl FnOnce(&mut Store) -> std::result::Result<(T, serde_json::Value, serde_json::Value), E>,
    ) -> std::result::Result<T, E> {
        self.audited_as(E::from, principal, action, target, f)
    }

    /// [`Store::audited`] for a caller whose error type cannot implement
    /// `From<StoreError>` here (an API status): `lift` turns the store's own errors
    /// into it.
    pub fn audited_as<T, E>(
        &mut self,
        lift: impl Fn(StoreError) -> E,
        principal: &str,
        action: &str,
        target: &str,
        f: impl FnOnce(&mut Store) -> std::result::Result<(T, serde_json::Value, serde_json::Value), E>,
    ) -> std::result::Result<T, E> {
        let begun = self.db().begin().map_err(&lift)?;
        // A panic inside must not leave the transaction open: every later write
        // of this store would nest in it and never commit.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(self).and_then(|(t, before, after)| {
                let head = append_audit_on(
                    &self.db(),
                    &self.audit,
                    self.clock.now(),
                    principal,
                    action,
                    target,
                    &before,
                    &after,
                )
                .map_err(&lift)?;
                Ok((t, head))
            })
        }));
        let res = match ran {
            Ok(r) => r,
            Err(panic) => {
                if let Err(r) = self.db().finish(begun, false) {
                    tracing::error!(error = %r, "rolling back an audited write after a panic");
                }
                std::panic::resume_unwind(panic);
            }
        };
        match res {
            Ok((t, head)) => {
                self.db().finish(begun, true).map_err(&lift)?;
                self.anchor_committed(&head);
                Ok(t)
            }
            Err(e) => {
                // The error that matters is the one that made us roll back.
                if let Err(r) = self.db().finish(begun, false) {
                    tracing::error!(error = %r, "rolling back an audited write");
                }
                Err(e)
            }
        }
    }

    /// Appends one record. Inside a caller's transaction it is anchored with the next
    /// record anchored after that transaction (an anchor vouches for every record up
    /// to the one it names).
    pub fn append_audit(
        &self,
        principal: &str,
        action: &str,
        target: &str,
        before: &serde_json::Value,
        after: &serde_json::Value,
    ) -> Result<i64> {
        let now = self.clock.now();
        let head = self.db().write(|db| {
            append_audit_on(
                db,
                &self.audit,
                now,
                principal,
                action,
                target,
                before,
                after,
            )
        })?;
        self.anchor_committed(&head);
        Ok(head.id)
    }

    /// Anchors a record appended (with [`append_audit_on`]) in a transaction that has
    /// just ended. If that was a savepoint inside an outer transaction, nothing is
    /// committed yet: an anchor ahead of the database would read as truncation.
    pub(crate) fn anchor_committed(&self, head: &Head) {
        if !self.in_write() {
            self.audit.anchor(head);
        }
    }

    /// The id of the newest record (0: the log is empty).
    pub fn audit_head(&self) -> Result<i64> {
        self.db()
            .row("SELECT COALESCE(MAX(id), 0) FROM audit", args![])?
            .expect("a row")
            .get(0, "audit.id")
    }

    pub fn audit_records(&self, after_id: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.db()
            .rows(
                &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2"),
                args![after_id, limit],
            )?
            .iter()
            .map(audit_row)
            .collect()
    }

    /// The digest `r` should carry if it were record `id` after `prev`; None when its
    /// key is not configured.
    fn expected_hash(&self, r: &AuditRecord, prev: &str, id: i64) -> Option<String> {
        if r.key_id.is_empty() {
            return Some(chain_hash(prev, id, r.fields()));
        }
        let key = self.audit.keys.get(&r.key_id)?;
        Some(keyed_mac(key, &r.key_id, prev, id, r.fields()))
    }

    /// Why a record does not follow its predecessor: a record that verifies as
    /// written under another id was moved; one that verifies where it is was
    /// relinked; otherwise it was edited.
    fn diagnose_unlinked(&self, r: &AuditRecord) -> Result<AuditProblem> {
        if let Some(holds) = self.written_as(r)?.filter(|h| *h != r.id) {
            if self.expected_hash(r, &r.prev_hash, holds).as_ref() == Some(&r.hash) {
                return Ok(AuditProblem::Reordered { holds });
            }
        }
        Ok(
            if self.expected_hash(r, &r.prev_hash, r.id).as_ref() == Some(&r.hash) {
                AuditProblem::Unlinked
            } else {
                AuditProblem::Edited
            },
        )
    }

    /// The id `r` was written under, found by following its stored links back to a
    /// record that is still where it was written (its predecessor may have moved too,
    /// as when two neighbours swap). Each step scans the log, so this runs only on the
    /// first failure, and gives up after a few steps.
    fn written_as(&self, r: &AuditRecord) -> Result<Option<i64>> {
        const MAX_STEPS: i64 = 64;
        let mut link = r.prev_hash.clone();
        for steps in 1..=MAX_STEPS {
            if link.is_empty() {
                return Ok(Some(steps));
            }
            let Some(p) = self.audit_record_with_hash(&link)? else {
                return Ok(None);
            };
            if self.expected_hash(&p, &p.prev_hash, p.id).as_ref() == Some(&p.hash) {
                return Ok(Some(p.id + steps));
            }
            link = p.prev_hash;
        }
        Ok(None)
    }

    fn audit_record_with_hash(&self, hash: &str) -> Result<Option<AuditRecord>> {
        self.db()
            .row(
                &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE hash = ?1 ORDER BY id LIMIT 1"),
                args![hash],
            )?
            .as_ref()
            .map(audit_row)
            .transpose()
    }

    /// Checks the whole chain with the configured keys and, given an anchor file, the
    /// anchor against it. Stops at the first bad record.
    pub fn verify_audit(&self, anchor: Option<&Path>) -> Result<AuditVerdict> {
        let anchor = anchor.map(read_anchor).transpose()?;
        let mut v = AuditVerdict {
            anchored: anchor
                .as_ref()
                .and_then(|a| a.last_key_value().map(|(k, _)| *k)),
            ..AuditVerdict::default()
        };
        let mut prev = String::new();
        let mut expect_id = 1;
        let mut last_keyed: Option<i64> = None;
        let mut last_good_anchor: Option<i64> = None;
        let mut after = 0;
        loop {
            let batch = self.audit_records(after, 10_000)?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            for r in &batch {
                let problem = self.check_record(r, &prev, expect_id, last_keyed)?;
                let problem = problem.or_else(|| {
                    let lines = anchor.as_ref()?.get(&r.id)?;
                    let (line, _) = lines.iter().find(|(_, mac)| *mac != r.hash)?;
                    Some(AuditProblem::AnchorMismatch {
                        line: *line,
                        last_good: last_good_anchor,
                    })
                });
                if let Some(p) = problem {
                    let at = match p {
                        AuditProblem::Missing { .. } => expect_id,
                        _ => r.id,
                    };
                    v.problem = Some((at, p));
                    return Ok(v);
                }
                if anchor.as_ref().is_some_and(|a| a.contains_key(&r.id)) {
                    last_good_anchor = Some(r.id);
                }
                if !r.key_id.is_empty() {
                    last_keyed = Some(r.id);
                    *v.keyed.entry(r.key_id.clone()).or_default() += 1;
                }
                v.records += 1;
                v.last_id = r.id;
                prev = r.hash.clone();
                expect_id = r.id + 1;
            }
        }
        if let Some(anchored) = v.anchored.filter(|a| *a > v.last_id) {
            v.problem = Some((
                v.last_id + 1,
                AuditProblem::Truncated {
                    anchored,
                    ends: v.last_id,
                },
            ));
        }
        Ok(v)
    }

    fn check_record(
        &self,
        r: &AuditRecord,
        prev: &str,
        expect_id: i64,
        last_keyed: Option<i64>,
    ) -> Result<Option<AuditProblem>> {
        if r.id != expect_id {
            return Ok(Some(AuditProblem::Missing {
                last: r.id - 1,
                next: r.id,
            }));
        }
        if r.key_id.is_empty() {
            if let Some(after) = last_keyed {
                return Ok(Some(AuditProblem::Downgraded { after }));
            }
        } else if !self.audit.keys.contains_key(&r.key_id) {
            return Ok(Some(AuditProblem::UnknownKey {
                key_id: r.key_id.clone(),
            }));
        }
        if r.prev_hash != prev {
            return self.diagnose_unlinked(r).map(Some);
        }
        if self.expected_hash(r, prev, r.id).as_ref() != Some(&r.hash) {
            return Ok(Some(AuditProblem::Edited));
        }
        Ok(None)
    }
}

/// Appends one audit record on `conn` (an open transaction), with `setup`'s key; the
/// caller anchors the returned head once the transaction has committed.
/// Refuses (writing nothing) when the log is keyed and this writer has no key, or
/// when the newest record does not verify with the key it names: a writer must not
/// extend a chain it cannot vouch for, nor silently downgrade it.
// Each argument is one field of the record or where it goes; bundling them would
// only rename them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn append_audit_on(
    db: &Db,
    setup: &AuditSetup,
    now: chrono::DateTime<chrono::Utc>,
    principal: &str,
    action: &str,
    target: &str,
    before: &serde_json::Value,
    after: &serde_json::Value,
) -> Result<Head> {
    let newest: Option<AuditRecord> = db
        .row(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT 1"),
            args![],
        )?
        .as_ref()
        .map(audit_row)
        .transpose()?;
    if let Some(n) = newest.as_ref().filter(|n| !n.key_id.is_empty()) {
        if setup.signing.is_none() {
            return Err(StoreError::Audit(format!(
                "the audit log is keyed (record {} carries key `{}`) but no audit key is configured: \
                 set audit.key_id with audit.key_file or audit.key_env in the config; nothing was written",
                n.id, n.key_id
            )));
        }
        let Some(key) = setup.keys.get(&n.key_id) else {
            return Err(StoreError::Audit(format!(
                "the newest audit record ({}) carries key `{}`, which this config does not know \
                 (was the key rotated? update audit.key_id and audit.key_file/key_env); nothing was written",
                n.id, n.key_id
            )));
        };
        if keyed_mac(key, &n.key_id, &n.prev_hash, n.id, n.fields()) != n.hash {
            return Err(StoreError::Audit(format!(
                "the newest audit record ({}) does not verify with audit key `{}`: the key differs from \
                 the one it was written with, or the record was tampered with (`arrears audit verify`); \
                 nothing was written",
                n.id, n.key_id
            )));
        }
    }
    let (id, prev) = newest.map_or((1, String::new()), |n| (n.id + 1, n.hash));
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (b, a) = (before.to_string(), after.to_string());
    let fields = [at.as_str(), principal, action, target, &b, &a];
    let (key_id, hash) = match &setup.signing {
        Some(kid) => (
            kid.as_str(),
            keyed_mac(&setup.keys[kid], kid, &prev, id, fields),
        ),
        None => ("", chain_hash(&prev, id, fields)),
    };
    db.execute(
        "INSERT INTO audit(id, at, principal, action, target, before, after, prev_hash, hash, key_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        args![id, at, principal, action, target, b, a, prev, hash, key_id],
    )?;
    Ok(Head { id, hash, at })
}

/// The audit log's MAC key and external anchor. The key comes from a file or the
/// environment, never the config or the database: whoever can write the database
/// must not be able to recompute the chain.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Short name of the key, stored with each record (so that verifying picks the
    /// key the record was written with, across rotations).
    pub key_id: Option<String>,
    pub key_file: Option<PathBuf>,
    pub key_env: Option<String>,
    /// Keys used before a rotation: verified, never written with.
    pub retired_keys: Vec<RetiredKeyConfig>,
    /// Append-only file (ideally on other storage) that receives the sequence and MAC
    /// of the newest record after every commit that wrote audit records.
    pub anchor_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredKeyConfig {
    pub id: String,
    pub key_file: Option<PathBuf>,
    pub key_env: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test on both databases: `both!(name, |pg| { … })`, `pg` saying which.
    macro_rules! both {
        ($name:ident, |$pg:ident| $body:block) => {
            mod $name {
                use super::*;

                fn body($pg: bool) $body

                #[test]
                fn sqlite() {
                    body(false)
                }

                #[test]
                fn postgres() {
                    body(true)
                }
            }
        };
    }

    /// A new store on SQLite (in `dir`) or on a database of the test cluster.
    fn new_store(dir: &Path, pg: bool) -> Store {
        if pg {
            crate::pg::testing::store()
        } else {
            Store::open(&dir.join("a.db")).unwrap()
        }
    }

    fn count(s: &Store, table: &str) -> i64 {
        s.db()
            .row(&format!("SELECT COUNT(*) FROM {table}"), args![])
            .unwrap()
            .unwrap()
            .get(0, "count")
            .unwrap()
    }

    both!(
        records_are_stamped_by_the_stores_clock_not_the_system_time,
        |pg| {
            let dir = tempfile::tempdir().unwrap();
            let at: chrono::DateTime<chrono::Utc> = "2031-05-06T07:08:09.123Z".parse().unwrap();
            let mut s =
                new_store(dir.path(), pg).with_clock(Arc::new(arrears_core::clock::FixedClock(at)));
            s.audited("alice", "note", "case 1", |_| {
                Ok::<_, StoreError>(((), serde_json::json!(null), serde_json::json!(1)))
            })
            .unwrap();
            let id = s
                .append_audit(
                    "bob",
                    "note",
                    "case 2",
                    &serde_json::json!(null),
                    &serde_json::json!(2),
                )
                .unwrap();
            let recs = s.audit_records(0, 10).unwrap();
            assert_eq!(recs.len(), 2);
            assert_eq!(recs[1].id, id);
            assert!(
                recs.iter().all(|r| r.at == "2031-05-06T07:08:09.123Z"),
                "{recs:?}"
            );
        }
    );

    // A panic inside an audited write rolls it back and leaves no transaction
    // open: the store's next write commits on its own (seen from another
    // connection), not nested in a transaction that never ends.
    both!(
        a_panic_inside_an_audited_write_leaves_no_transaction_open,
        |pg| {
            let dir = tempfile::tempdir().unwrap();
            let mut s = new_store(dir.path(), pg);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = s.audited("bob", "note", "x", |st| {
                    st.db().execute(
                        "INSERT INTO customers(company, code, name) VALUES ('X', 'Y', 'Z')",
                        args![],
                    )?;
                    if st.is_postgres() || !st.is_postgres() {
                        panic!("boom");
                    }
                    Ok::<_, StoreError>(((), json!(null), json!(null)))
                });
            }));
            assert!(r.is_err());
            assert!(!s.in_write());
            s.append_audit("alice", "note", "y", &json!(1), &json!(2))
                .unwrap();
            let other = Store::open_at(&if pg {
                s.pg_url().unwrap()
            } else {
                s.location().to_string()
            })
            .unwrap();
            assert_eq!(count(&other, "customers"), 0, "rolled back");
            assert_eq!(count(&other, "audit"), 1, "the next write committed");
        }
    );

    /// The chain is the same on both databases: the same records, written at the
    /// same times with the same key, carry the same MACs, so a log copied from one
    /// to the other verifies, and an anchor made on one vouches for the other.
    #[test]
    fn the_chain_is_the_same_on_both_databases() {
        let write = |pg: bool| -> Vec<AuditRecord> {
            let dir = tempfile::tempdir().unwrap();
            let at: chrono::DateTime<chrono::Utc> = "2031-05-06T07:08:09.123Z".parse().unwrap();
            let mut s =
                new_store(dir.path(), pg).with_clock(Arc::new(arrears_core::clock::FixedClock(at)));
            s.append_audit("old", "x", "y", &json!(1), &json!({"amount": "10.50"}))
                .unwrap();
            s.set_audit(Arc::new(AuditSetup::with_key("k1", K1)));
            for i in 0..3 {
                s.audited("alice", "note", &format!("case {i}"), |_| {
                    Ok::<_, StoreError>(((), json!({"n": i}), json!("Müller €")))
                })
                .unwrap();
            }
            assert_eq!(s.verify_audit(None).unwrap().problem, None);
            s.audit_records(0, 10).unwrap()
        };
        let lite = write(false);
        assert_eq!(lite.len(), 4);
        assert_eq!(write(true), lite);
    }
    use serde_json::json;

    const K1: &[u8] = b"0123456789abcdef0123456789abcdef-one";
    const K2: &[u8] = b"0123456789abcdef0123456789abcdef-two";

    struct Log {
        dir: tempfile::TempDir,
        store: Store,
    }

    impl Log {
        /// A log of `n` records written with key `k1`, anchored; on PostgreSQL
        /// with `pg`.
        fn keyed(n: usize, pg: bool) -> Log {
            let dir = tempfile::tempdir().unwrap();
            let setup = AuditSetup::with_key("k1", K1).anchored_to(&dir.path().join("anchor"));
            let store = new_store(dir.path(), pg).with_audit(Arc::new(setup));
            let mut log = Log { dir, store };
            log.write(n);
            log
        }

        fn write(&mut self, n: usize) {
            for i in 0..n {
                self.store
                    .audited("alice", "note", &format!("case {i}"), |_| {
                        Ok::<_, StoreError>(((), json!({"n": i}), json!({"n": i + 1})))
                    })
                    .unwrap();
            }
        }

        fn anchor(&self) -> PathBuf {
            self.dir.path().join("anchor")
        }

        /// A connection of someone with write access to the database, past the
        /// triggers.
        fn raw(&self) -> Store {
            let s = Store::open_at(self.store.location()).unwrap();
            s.db()
                .batch(if s.is_postgres() {
                    "DROP TRIGGER IF EXISTS audit_no_update ON audit;
                     DROP TRIGGER IF EXISTS audit_no_delete ON audit;"
                } else {
                    "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;"
                })
                .unwrap();
            s
        }

        fn tamper(&self, sql: &str) {
            self.raw().db().batch(sql).unwrap();
        }

        fn problem(&self, anchor: bool) -> Option<(i64, AuditProblem)> {
            let a = anchor.then(|| self.anchor());
            self.store.verify_audit(a.as_deref()).unwrap().problem
        }

        /// Rewrites records `from..` with `link` as the tamperer computes it, keeping
        /// the chain consistent in itself.
        fn rewrite(&self, from: i64, key_id: &str, link: impl Fn(&str, i64, [&str; 6]) -> String) {
            let raw = self.raw();
            let all = self.store.audit_records(0, 1000).unwrap();
            let mut prev = all
                .iter()
                .find(|r| r.id == from - 1)
                .map_or(String::new(), |r| r.hash.clone());
            for r in all.iter().filter(|r| r.id >= from) {
                let after = if r.id == from { "{\"n\":99}" } else { &r.after };
                let mut fields = r.fields();
                fields[5] = after;
                let hash = link(&prev, r.id, fields);
                raw.db()
                    .execute(
                        "UPDATE audit SET after = ?2, prev_hash = ?3, hash = ?4, key_id = ?5 WHERE id = ?1",
                        args![r.id, after, prev, hash, key_id],
                    )
                    .unwrap();
                prev = hash;
            }
        }
    }

    both!(
        a_failed_change_leaves_no_record_and_an_edited_record_is_found,
        |pg| {
            let mut log = Log::keyed(3, pg);
            let err = log.store.audited("bob", "note", "case 9", |st| {
                st.db().execute(
                    "INSERT INTO customers(company, code, name) VALUES ('X', 'Y', 'Z')",
                    args![],
                )?;
                Err::<((), _, _), _>(StoreError::Invalid("no".into()))
            });
            assert!(err.is_err());
            let n = count(&log.store, "customers");
            assert_eq!(n, 0, "the change rolled back with its failure");
            let v = log.store.verify_audit(Some(&log.anchor())).unwrap();
            assert_eq!((v.records, v.problem, v.anchored), (3, None, Some(3)));
            assert_eq!(v.keyed.get("k1"), Some(&3));
            assert!(log
                .store
                .db()
                .execute("UPDATE audit SET principal = 'eve' WHERE id = 2", args![])
                .is_err());

            log.tamper("UPDATE audit SET after = '{\"n\":99}' WHERE id = 2");
            assert_eq!(log.problem(false), Some((2, AuditProblem::Edited)));
        }
    );

    both!(a_record_deleted_from_the_middle_is_named, |pg| {
        let log = Log::keyed(5, pg);
        log.tamper("DELETE FROM audit WHERE id = 3");
        let (id, p) = log.problem(false).unwrap();
        assert_eq!((id, &p), (3, &AuditProblem::Missing { last: 3, next: 4 }));
        assert!(p.to_string().contains("deleted from the middle"), "{p}");
    });

    both!(a_deleted_tail_shows_only_against_the_anchor, |pg| {
        let log = Log::keyed(5, pg);
        log.tamper("DELETE FROM audit WHERE id >= 4");
        assert_eq!(log.problem(false), None, "a chain alone cannot show it");
        let (id, p) = log.problem(true).unwrap();
        assert_eq!(
            (id, &p),
            (
                4,
                &AuditProblem::Truncated {
                    anchored: 5,
                    ends: 3
                }
            )
        );
        assert!(p
            .to_string()
            .contains("anchor says record 5 exists, the log ends at 3"));
    });

    both!(
        an_anchor_behind_the_log_is_no_problem_but_one_with_another_mac_is,
        |pg| {
            let mut log = Log::keyed(2, pg);
            // A crash between the commit and the anchor write: the anchor lags.
            log.store
                .set_audit(Arc::new(AuditSetup::with_key("k1", K1)));
            log.write(2);
            let v = log.store.verify_audit(Some(&log.anchor())).unwrap();
            assert_eq!((v.problem, v.anchored, v.last_id), (None, Some(2), 4));
            // A torn last line (a crash mid-write) is not the anchor's fault either.
            let mut text = std::fs::read_to_string(log.anchor()).unwrap();
            text.push_str("3 abc");
            std::fs::write(log.anchor(), &text).unwrap();
            assert_eq!(log.problem(true), None);
            // The anchor says record 2 had another MAC: the log was rewritten.
            let bad = format!("2 {} 2026-01-01T00:00:00Z\n", "0".repeat(64));
            std::fs::write(log.anchor(), text.replace("3 abc", &bad)).unwrap();
            assert_eq!(
                log.problem(true),
                Some((
                    2,
                    AuditProblem::AnchorMismatch {
                        line: 3,
                        last_good: Some(1)
                    }
                ))
            );
        }
    );

    both!(reordered_records_are_named, |pg| {
        let log = Log::keyed(5, pg);
        log.tamper(
            "UPDATE audit SET id = 100 WHERE id = 2;
             UPDATE audit SET id = 2 WHERE id = 4;
             UPDATE audit SET id = 4 WHERE id = 100;",
        );
        let (id, p) = log.problem(false).unwrap();
        assert_eq!((id, &p), (2, &AuditProblem::Reordered { holds: 4 }));
        assert!(p.to_string().contains("reordered"), "{p}");
        // Neighbours swapped: the moved record's predecessor moved too.
        let log = Log::keyed(5, pg);
        log.tamper(
            "UPDATE audit SET id = 100 WHERE id = 3;
             UPDATE audit SET id = 3 WHERE id = 4;
             UPDATE audit SET id = 4 WHERE id = 100;",
        );
        assert_eq!(
            log.problem(false),
            Some((3, AuditProblem::Reordered { holds: 4 }))
        );
    });

    both!(a_chain_recomputed_without_the_key_is_found, |pg| {
        // Plain SHA-256, key ids left alone: the MACs do not match.
        let log = Log::keyed(5, pg);
        log.rewrite(3, "k1", chain_hash);
        assert_eq!(log.problem(false), Some((3, AuditProblem::Edited)));

        // Plain SHA-256 and the key ids cleared: a downgrade after record 2.
        let log = Log::keyed(5, pg);
        log.rewrite(3, "", chain_hash);
        let (id, p) = log.problem(false).unwrap();
        assert_eq!((id, &p), (3, &AuditProblem::Downgraded { after: 2 }));
        assert!(p.to_string().contains("downgrade"), "{p}");

        // A MAC under another key of the same name.
        let log = Log::keyed(5, pg);
        let wrong = b"not the key, but long enough to pass for one";
        log.rewrite(3, "k1", |p, id, f| keyed_mac(wrong, "k1", p, id, f));
        assert_eq!(log.problem(false), Some((3, AuditProblem::Edited)));

        // The whole log rewritten unkeyed looks like a log from before keying: only
        // the anchor, which holds the real MACs, shows it.
        let log = Log::keyed(5, pg);
        log.rewrite(1, "", chain_hash);
        assert_eq!(log.problem(false), None);
        assert_eq!(
            log.problem(true),
            Some((
                1,
                AuditProblem::AnchorMismatch {
                    line: 1,
                    last_good: None
                }
            ))
        );
    });

    both!(a_writer_without_the_key_is_refused_on_a_keyed_log, |pg| {
        let mut log = Log::keyed(2, pg);
        log.store.set_audit(Arc::new(AuditSetup::default()));
        let err = log
            .store
            .audited("bob", "note", "case 1", |st| {
                st.db().execute(
                    "INSERT INTO customers(company, code, name) VALUES ('X', 'Y', 'Z')",
                    args![],
                )?;
                Ok::<_, StoreError>(((), json!(null), json!(1)))
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("audit.key_file") && err.contains("nothing was written"),
            "{err}"
        );
        let customers = count(&log.store, "customers");
        assert_eq!((customers, log.store.audit_head().unwrap()), (0, 2));
        let err = log
            .store
            .append_audit("bob", "x", "y", &json!(1), &json!(2))
            .unwrap_err();
        assert!(matches!(err, StoreError::Audit(_)), "{err}");

        // The same name with another secret would write records nobody can verify.
        log.store
            .set_audit(Arc::new(AuditSetup::with_key("k1", K2)));
        let err = log
            .store
            .append_audit("bob", "x", "y", &json!(1), &json!(2))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not verify with audit key `k1`"), "{err}");
        assert_eq!(log.store.audit_head().unwrap(), 2);
    });

    both!(
        after_a_rotation_old_records_verify_with_the_retired_key,
        |pg| {
            let mut log = Log::keyed(2, pg);
            let anchor = log.anchor();
            log.store.set_audit(Arc::new(
                AuditSetup::with_key("k2", K2)
                    .retire("k1", K1)
                    .anchored_to(&anchor),
            ));
            log.write(2);
            let v = log.store.verify_audit(Some(&anchor)).unwrap();
            assert_eq!(v.problem, None);
            assert_eq!(
                v.keyed,
                BTreeMap::from([("k1".to_string(), 2), ("k2".to_string(), 2)])
            );
            // Without the retired key the old records cannot be vouched for.
            log.store
                .set_audit(Arc::new(AuditSetup::with_key("k2", K2)));
            assert_eq!(
                log.problem(false),
                Some((
                    1,
                    AuditProblem::UnknownKey {
                        key_id: "k1".into()
                    }
                ))
            );
            // A writer still on the old key (a stale config) is refused.
            log.store
                .set_audit(Arc::new(AuditSetup::with_key("k1", K1)));
            let err = log
                .store
                .append_audit("bob", "x", "y", &json!(1), &json!(2))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("carries key `k2`, which this config does not know"),
                "{err}"
            );
        }
    );

    both!(
        a_log_from_before_keying_verifies_and_keying_continues_it,
        |pg| {
            let dir = tempfile::tempdir().unwrap();
            let mut s = new_store(dir.path(), pg);
            s.append_audit("old", "x", "y", &json!(1), &json!(2))
                .unwrap();
            s.append_audit("old", "x", "y", &json!(2), &json!(3))
                .unwrap();
            s.set_audit(Arc::new(AuditSetup::with_key("k1", K1)));
            s.append_audit("new", "x", "y", &json!(3), &json!(4))
                .unwrap();
            let v = s.verify_audit(None).unwrap();
            assert_eq!((v.records, v.problem), (3, None));
            assert_eq!(v.keyed.get("k1"), Some(&1));
            let r = s.audit_records(0, 10).unwrap();
            assert_eq!((r[1].key_id.as_str(), r[2].key_id.as_str()), ("", "k1"));
            assert_eq!(r[2].prev_hash, r[1].hash);
        }
    );

    both!(the_anchor_file_is_owner_only_and_only_appended_to, |pg| {
        let log = Log::keyed(2, pg);
        let text = std::fs::read_to_string(log.anchor()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let recs = log.store.audit_records(0, 10).unwrap();
        assert_eq!(lines.len(), 2);
        for (l, r) in lines.iter().zip(&recs) {
            assert!(l.starts_with(&format!("{} {} ", r.id, r.hash)), "{l}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(log.anchor())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    });

    #[test]
    fn the_config_is_checked_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("audit.key");
        std::fs::write(&key, "k".repeat(40)).unwrap();
        let cfg = |id: Option<&str>| AuditConfig {
            key_id: id.map(str::to_string),
            key_file: Some(key.clone()),
            ..AuditConfig::default()
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = AuditSetup::from_config(&cfg(Some("k1")))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("audit.key_file: ")
                    && e.contains("mode 644")
                    && e.contains("chmod 600"),
                "{e}"
            );
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let s = AuditSetup::from_config(&cfg(Some("k1"))).unwrap();
        assert_eq!(s.signing_key_id(), Some("k1"));
        assert!(!format!("{s:?}").contains("kkkk"), "no secret in Debug");
        let e = AuditSetup::from_config(&cfg(None)).unwrap_err().to_string();
        assert!(e.starts_with("audit.key_id: required"), "{e}");
        let e = AuditSetup::from_config(&cfg(Some("no spaces")))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("audit.key_id: "), "{e}");
        std::fs::write(&key, "short").unwrap();
        let e = AuditSetup::from_config(&cfg(Some("k1")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 32 characters"), "{e}");
        let e = AuditSetup::from_config(&AuditConfig {
            retired_keys: vec![crate::RetiredKeyConfig {
                id: "k0".into(),
                key_file: None,
                key_env: Some("ARREARS_TEST_SURELY_UNSET_AUDIT_KEY".into()),
            }],
            ..AuditConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("audit.retired_keys[0].key_env: "), "{e}");
    }
}
