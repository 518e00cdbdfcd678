//! Standard output and error of the command line, for readers that stop early.
//!
//! `arrears worklist | head -1` closes the pipe after one line; `println!` then
//! panics ("failed printing to stdout", exit 101). The command's work (a run, an
//! import, a note) must not depend on whether anyone reads what it says, so output to
//! a closed pipe is dropped and the command ends as it would have, with its usual
//! exit code. Restoring the default SIGPIPE action instead would also kill `serve`
//! when a client's connection breaks mid-write.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static CLOSED: AtomicBool = AtomicBool::new(false);
/// The first error other than a closed pipe (a full disk, say): the command fails.
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Standard output that drops what its reader no longer wants.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if CLOSED.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        let r = io::stdout().write(buf);
        settle(r.map(|_| ()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if CLOSED.load(Ordering::Relaxed) {
            return Ok(());
        }
        settle(io::stdout().flush())
    }

    // `write` may write less than asked; the whole line must go or none of it.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if CLOSED.load(Ordering::Relaxed) {
            return Ok(());
        }
        settle(io::stdout().write_all(buf))
    }
}

fn settle(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            CLOSED.store(true, Ordering::Relaxed);
            let mut f = FAILED.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert_with(|| e.to_string());
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// Flushes standard output; the error, other than a closed pipe, that lost output.
pub fn finish() -> Option<String> {
    let _ = Stdout.flush();
    FAILED.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Whether `e` is, somewhere in its chain, a write to a closed pipe.
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// `println!` to [`Stdout`].
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!($crate::out::Stdout, $($t)*);
    }};
}

/// `print!` to [`Stdout`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!($crate::out::Stdout, $($t)*);
    }};
}

/// `eprintln!` that does not panic when standard error is closed: there is nowhere
/// left to report that.
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
