//! Folder inboxes: drop a file in, it is imported whole or not at all, then moved to
//! `processed/` — or to `failed/` with `NAME.error.txt` beside it saying what was
//! wrong (file:line). Nothing is deleted: every file a user dropped stays on disk.
//!
//! Writers should write elsewhere (or under a dot-name, `.tmp` or `.part`) and
//! rename into the folder, so a half-written file is never picked up.

use std::path::{Path, PathBuf};

use super::SyncStats;
use arrears_store::{MatchOptions, Store};

/// Files waiting in `dir`, oldest name first (exports are usually named by date).
pub fn pending(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if !e.file_type()?.is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy().to_string();
        let temporary = name.starts_with('.')
            || [".tmp", ".part", ".partial", ".crdownload", ".error.txt"]
                .iter()
                .any(|s| name.ends_with(s));
        if !temporary {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Where `file` goes in `dir/sub`: never over an earlier file of the same name.
fn target_in(file: &Path, sub: &str) -> std::io::Result<PathBuf> {
    let dir = file.parent().unwrap_or(Path::new(".")).join(sub);
    std::fs::create_dir_all(&dir)?;
    let name = file
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let mut target = dir.join(&name);
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    Ok(target)
}

fn move_to(file: &Path, sub: &str) -> std::io::Result<PathBuf> {
    let target = target_in(file, sub)?;
    std::fs::rename(file, &target)?;
    Ok(target)
}

/// Files `file` under failed/ with its report beside it. The report is complete
/// before the file appears there, so whoever sees the one finds the other.
fn fail(file: &Path, why: &str) -> std::io::Result<PathBuf> {
    let target = target_in(file, "failed")?;
    let report = PathBuf::from(format!("{}.error.txt", target.display()));
    let tmp = PathBuf::from(format!("{}.tmp", report.display()));
    std::fs::write(&tmp, format!("{why}\n"))?;
    std::fs::rename(&tmp, &report)?;
    std::fs::rename(file, &target)?;
    Ok(target)
}

/// Runs `import` on every pending file and files it under processed/ or failed/.
fn each_file(
    dir: &Path,
    mut import: impl FnMut(&Path) -> Result<String, String>,
) -> Result<SyncStats, String> {
    let files = pending(dir).map_err(|e| format!("reading inbox {}: {e}", dir.display()))?;
    let mut stats = SyncStats::default();
    for f in files {
        match import(&f) {
            Ok(line) => {
                move_to(&f, "processed").map_err(|e| {
                    format!(
                        "{}: imported, but moving it to processed/ failed: {e}",
                        f.display()
                    )
                })?;
                stats.pulled += 1;
                stats.details.push(line);
            }
            Err(why) => {
                fail(&f, &why).map_err(|e| {
                    format!(
                        "{}: {why}; filing it under failed/ failed too: {e}",
                        f.display()
                    )
                })?;
                tracing::warn!(file = %f.display(), error = %why, "inbox file failed");
                stats.failed += 1;
                stats
                    .details
                    .push(format!("{}: failed: {why}", f.display()));
            }
        }
    }
    Ok(stats)
}

/// Who the audit log names for a connector's writes.
fn principal(connector: &str) -> String {
    format!("connector:{connector}")
}

pub fn sync_csv(
    store: &mut Store,
    connector: &str,
    dir: &Path,
    source: &str,
) -> Result<SyncStats, String> {
    each_file(dir, |f| {
        let mut parsed = arrears_import::parse_csv(f, source).map_err(|e| e.to_string())?;
        parsed
            .refuse_unknown_item_refs(|s, e| store.item_exists(s, e))
            .map_err(|e| e.to_string())?;
        if !parsed.errors.is_empty() {
            let lines: Vec<String> = parsed
                .errors
                .iter()
                .map(|e| format!("{}: {e}", f.display()))
                .collect();
            return Err(format!(
                "{} of {} rows are invalid; nothing was imported:\n{}",
                parsed.rejected.len(),
                parsed.rows,
                lines.join("\n")
            ));
        }
        let name = f.display().to_string();
        let stats = store
            .audited(&principal(connector), "csv.import", &name, |st| {
                let s = st.ingest(&parsed.batch)?;
                let after = serde_json::json!({
                    "rows": parsed.rows, "items_new": s.items_new, "items_updated": s.items_updated,
                    "items_cleared": s.items_cleared, "payments_new": s.payments_new,
                });
                Ok::<_, arrears_store::StoreError>((s, serde_json::json!(null), after))
            })
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{name}: {} rows; items new {} updated {} cleared {}; payments new {}",
            parsed.rows,
            stats.items_new,
            stats.items_updated,
            stats.items_cleared,
            stats.payments_new
        ))
    })
}

pub fn sync_statements(
    store: &mut Store,
    connector: &str,
    dir: &Path,
    encoding: Option<&str>,
    opts: MatchOptions,
) -> Result<SyncStats, String> {
    each_file(dir, |f| {
        let name = f.display().to_string();
        let raw = std::fs::read(f).map_err(|e| format!("{name}: {e}"))?;
        let parsed = arrears_statements::parse(&raw, &name, encoding).map_err(|e| e.to_string())?;
        let r = store
            .import_statement_as(&principal(connector), &name, &raw, &parsed, &opts)
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{name}: {} credits: matched {}, partial {}, review {}, unmatched {}{}",
            r.credits,
            r.matched,
            r.partial,
            r.review,
            r.unmatched,
            if r.duplicate_file {
                " (already imported)"
            } else {
                ""
            }
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency\n";

    #[test]
    fn good_files_are_imported_and_bad_ones_filed_with_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        std::fs::write(
            inbox.join("2026-11-01.csv"),
            format!("{HEADER}item,i1,ACME,C1,Alpha,INV-1,2026-09-01,2026-10-01,100.00,EUR\n"),
        )
        .unwrap();
        std::fs::write(
            inbox.join("2026-11-02.csv"),
            format!(
                "{HEADER}item,i2,ACME,C1,Alpha,INV-2,2026-09-01,2026-10-01,50.00,EUR\n\
                 item,i3,ACME,C1,Alpha,INV-3,2026-09-01,2026-10-01,abc,EUR\n"
            ),
        )
        .unwrap();
        std::fs::write(inbox.join(".2026-11-03.csv"), "being written").unwrap();
        std::fs::write(inbox.join("2026-11-04.csv.part"), "being written").unwrap();

        let s = sync_csv(&mut store, "erp-drop", &inbox, "csv").unwrap();
        assert_eq!((s.pulled, s.failed), (1, 1), "{s:?}");
        assert!(inbox.join("processed/2026-11-01.csv").is_file());
        assert!(inbox.join("failed/2026-11-02.csv").is_file());
        let report =
            std::fs::read_to_string(inbox.join("failed/2026-11-02.csv.error.txt")).unwrap();
        assert!(report.contains("line 3"), "{report}");
        assert!(report.contains("nothing was imported"), "{report}");
        // The good file landed; nothing of the bad one did.
        let n = |store: &Store, sql: &str| -> i64 {
            store
                .test_connection()
                .query_row(sql, [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(n(&store, "SELECT COUNT(*) FROM items"), 1);
        assert_eq!(
            n(&store, "SELECT COUNT(*) FROM audit WHERE principal = 'connector:erp-drop' AND action = 'csv.import'"),
            1
        );
        // Files still being written are left alone.
        assert!(inbox.join(".2026-11-03.csv").is_file());
        assert!(inbox.join("2026-11-04.csv.part").is_file());

        // The same name dropped again is processed and kept beside the first.
        std::fs::write(
            inbox.join("2026-11-01.csv"),
            format!("{HEADER}item,i1,ACME,C1,Alpha,INV-1,2026-09-01,2026-10-01,100.00,EUR\n"),
        )
        .unwrap();
        let s = sync_csv(&mut store, "erp-drop", &inbox, "csv").unwrap();
        assert_eq!(s.pulled, 1);
        assert!(inbox.join("processed/2026-11-01.csv.1").is_file());
        assert_eq!(
            n(&store, "SELECT COUNT(*) FROM items"),
            1,
            "same key: updated, not duplicated"
        );
    }

    #[test]
    fn statements_from_the_inbox_and_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("bank");
        std::fs::create_dir_all(&inbox).unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let sample = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/samples/camt053/viafintech-camt_parser__ubs_camt053_v08.xml"
        );
        std::fs::copy(sample, inbox.join("a.xml")).unwrap();
        std::fs::write(inbox.join("b.xml"), "<Document><BkToCstmrStmt>").unwrap();
        let s = sync_statements(&mut store, "bank", &inbox, None, MatchOptions::default()).unwrap();
        assert_eq!((s.pulled, s.failed), (1, 1), "{s:?}");
        let report = std::fs::read_to_string(inbox.join("failed/b.xml.error.txt")).unwrap();
        assert!(report.contains("b.xml:1"), "{report}");
        let n: i64 = store
            .test_connection()
            .query_row("SELECT COUNT(*) FROM statement_files", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
