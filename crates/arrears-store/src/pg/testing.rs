//! A throwaway PostgreSQL server for tests (this crate's and, with the `testing`
//! feature, the end-to-end ones): a cluster of its own in a temporary
//! folder, on 127.0.0.1 and a free port, trusting local connections, stopped and
//! removed when dropped. `initdb` refuses to run as root, so as root the cluster
//! belongs to the `postgres` user that Debian's package creates.
//!
//! The server binaries come from `ARREARS_PG_BIN`, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's layout), else `pg_config --bindir`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The user every test connects as (the cluster's superuser).
pub const USER: &str = "arrears";

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    owner: Option<&'static str>,
    pub port: u16,
}

/// Where `initdb`, `pg_ctl` and `createdb` are, if PostgreSQL is installed.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ARREARS_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    bin.join("initdb").exists().then_some(bin)
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl PgCluster {
    /// Initialises and starts a cluster; an error says what is missing or failed.
    pub fn start() -> Result<PgCluster, String> {
        PgCluster::start_on(free_port())
    }

    /// [`PgCluster::start`] trying `port` first.
    fn start_on(port: u16) -> Result<PgCluster, String> {
        let bin = bin_dir().ok_or(
            "PostgreSQL is not installed (no initdb in ARREARS_PG_BIN, /usr/lib/postgresql/*/bin \
             or pg_config --bindir): .ci/run installs Debian's `postgresql` package",
        )?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let owner = running_as_root().then_some("postgres");
        if let Some(user) = owner {
            run(
                Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(dir.path()),
                "chown",
            )?;
        }
        let mut c = PgCluster {
            dir,
            bin,
            owner,
            port,
        };
        let data = c.data();
        run(
            c.command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8"])
                .args(["--locale", "C"]),
            "initdb",
        )?;
        // The port was free when asked for, but another process (a test binary
        // starting its own cluster) may take it before the server binds it: then
        // another port.
        let mut attempt = 1;
        loop {
            // Durability off: a test cluster is thrown away, and fsync is most of
            // the time of a write-heavy test on a shared disk.
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off",
                c.port,
                c.dir.path().display()
            );
            let started = run(
                c.command("pg_ctl")
                    .arg("-D")
                    .arg(&data)
                    .args(["-o", &opts, "-l"])
                    .arg(c.dir.path().join("server.log"))
                    .args(["-w", "-t", "60", "start"]),
                "pg_ctl start",
            );
            match started {
                Ok(()) => return Ok(c),
                Err(_) if attempt < 5 && c.log().contains("already in use") => {
                    attempt += 1;
                    c.port = free_port();
                }
                Err(e) => return Err(format!("{e}\n{}", c.log())),
            }
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        match self.owner {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A new empty database, and its URL.
    pub fn database(&self, name: &str) -> Result<String, String> {
        run(
            self.command("createdb")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
                .arg(name),
            "createdb",
        )?;
        Ok(self.url(name))
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// One cluster for the whole test process, started at first use: a store test
    /// run on both databases then costs a database, not a cluster (`initdb` is a
    /// second or two). A watcher stops and removes it when the process ends,
    /// however it ends (a static is never dropped).
    pub fn shared() -> &'static PgCluster {
        static SHARED: std::sync::OnceLock<PgCluster> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let c = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
            let pg_ctl = format!(
                "{} '{}' -D '{}' -m immediate stop",
                c.owner
                    .map(|u| format!("runuser -u {u} --"))
                    .unwrap_or_default(),
                c.bin.join("pg_ctl").display(),
                c.data().display()
            );
            let watcher = format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {pg_ctl}; rm -rf '{dir}'",
                pid = std::process::id(),
                dir = c.dir.path().display()
            );
            // Not waited for: it outlives this process on purpose (init reaps it).
            #[allow(clippy::zombie_processes)]
            Command::new("sh")
                .args(["-c", &watcher])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("the shared cluster's watcher starts");
            c
        })
    }

    /// A new database with a name of its own, and its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.database(&format!("t{n}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A store on a new database of the process's shared cluster.
pub fn store() -> crate::Store {
    crate::Store::open_postgres(&PgCluster::shared().fresh_database())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn run(c: &mut Command, what: &str) -> Result<(), String> {
    let out = c.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port taken between asking for it and the server binding it (another
    /// test binary's cluster) costs a retry on another port, not a failed test.
    #[test]
    fn a_taken_port_is_replaced_by_another() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let c = PgCluster::start_on(port).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(c.port, port);
        assert!(c.log().contains("already in use"), "{}", c.log());
        let url = c.database("t").unwrap();
        crate::Store::open_postgres(&url).unwrap();
    }
}
