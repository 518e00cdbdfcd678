//! The command families of `arrears`, one file each: its arguments, its handler on
//! the database and, where the daemon offers the command, its handler over `--remote`.
//!
//! A change on the database is audited as `local:$USER`, with the admin role of
//! whoever holds the database file; over `--remote` it is audited as the token's
//! principal, with its role's limits.

pub mod agreement;
pub mod audit;
pub mod cases;
pub mod connectors;
pub mod credits;
pub mod customer;
pub mod data;
pub mod dispute;
pub mod migrate;
pub mod outbox;
pub mod promise;
pub mod report;
pub mod rules;
pub mod run;
pub mod serve;
pub mod writeoff;

use anyhow::{bail, Context, Result};
use arrears::app;
use arrears::store::Store;
use clap::Args;

/// `--actor`: whom a change from the command line was made for.
#[derive(Args)]
pub struct Actor {
    /// Who did the work, as the case history records it [default: your user name].
    /// The audit log always names the operating-system user who ran the command
    /// (`local:<user>`) as the principal, so a supervisor logging a collector's call
    /// writes `--actor chen` and stays on record as the one who wrote it. Not with
    /// --remote: there the token's principal is both the actor and the principal.
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
}

impl Actor {
    pub fn name(&self) -> &str {
        match &self.actor {
            Some(a) => a,
            None => os_user(),
        }
    }

    /// The daemon records the token's principal as the actor and takes no other;
    /// a name that would be dropped silently is refused instead.
    pub fn refuse_remote(&self) -> Result<()> {
        if let Some(a) = &self.actor {
            bail!(
                "--actor {a}: with --remote the daemon records the token's principal as the actor; \
                 drop --actor, or use a token of {a}'s own"
            );
        }
        Ok(())
    }
}

/// A command the daemon does not offer.
pub fn local_only() -> anyhow::Error {
    anyhow::anyhow!("this command works on the database directly; drop --remote")
}

/// A case argument on the database: its id, or the document number of its item.
pub fn case_id(store: &Store, id: &str) -> Result<i64> {
    match id.parse::<i64>() {
        Ok(n) => Ok(n),
        Err(_) => Ok(store.case_by_document(id)?),
    }
}

/// Case arguments of a remote command: the daemon names cases by their ids only.
pub fn remote_case_ids(ids: &[String]) -> Result<Vec<i64>> {
    ids.iter()
        .map(|i| {
            i.parse::<i64>()
                .context("with --remote, cases are named by their ids")
        })
        .collect()
}

/// Who made a change from the command line, for the audit log: `local:` and the
/// operating-system user running the command.
pub fn local_principal() -> String {
    format!("local:{}", os_user())
}

/// The local user as a principal of the use cases: an admin, since they hold the
/// database file.
pub fn local_user() -> app::access::Principal {
    app::access::Principal {
        name: local_principal(),
        role: arrears::config::Role::Admin,
        groups: Vec::new(),
    }
}

/// The name of the real user id, from the system's user database: `$USER` is
/// whatever the caller set, and is missing under cron and systemd. Without a name
/// (a container's uid with no passwd entry) the number still says who it was.
fn os_user() -> &'static str {
    static USER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    USER.get_or_init(|| {
        #[cfg(unix)]
        {
            let uid = nix::unistd::getuid();
            match nix::unistd::User::from_uid(uid) {
                Ok(Some(u)) => u.name,
                _ => uid.to_string(),
            }
        }
        #[cfg(not(unix))]
        {
            std::env::var("USERNAME").unwrap_or_else(|_| "unnamed".into())
        }
    })
}

/// A stored letter as PDF: from its HTML when its template has an html block,
/// else from its subject and text.
pub fn letter_pdf(
    html: Option<&str>,
    subject: &str,
    text: &str,
    language: &str,
    created: chrono::NaiveDate,
) -> Result<Vec<u8>> {
    // The outbox keeps a letter without an html block as its text in a <pre>;
    // set from the text it gets its subject as a title.
    Ok(match html.filter(|h| h.contains("<body")) {
        Some(h) => arrears_pdf::from_html(h, created)?,
        None => arrears_pdf::from_text(subject, text, language, created)?,
    })
}

/// Writes `bytes` to `path` and says so on stderr.
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    errln!("wrote {}", path.display());
    Ok(())
}
