//! Writing results to stdout and messages to stderr without ever panicking on a closed pipe
//! (`tessera tasks list | head -1`): `println!` panics when the reader has gone, these return
//! [`StdoutClosed`], which `main` turns into a quiet exit.

use std::fmt;
use std::io::Write;

use anyhow::Result;

/// The reader of stdout went away: nothing more can be shown, and it is not an error to
/// report.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// A failed write to stdout as an error: [`StdoutClosed`] for a closed pipe.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("cannot write to stdout")
    }
}

/// Whether an error means stdout was closed (quiet exit).
pub fn is_stdout_closed(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<StdoutClosed>().is_some())
}

/// Writes formatted text and a newline to stdout.
pub fn line(args: fmt::Arguments<'_>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(stdout_error)
}

/// Writes a value as pretty JSON and a newline to stdout, streamed (no intermediate string).
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| match e.io_error_kind() {
        Some(kind) => stdout_error(kind.into()),
        None => anyhow::Error::new(e).context("cannot write JSON"),
    })?;
    out.write_all(b"\n")
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// `println!` that returns a `Result` ([`StdoutClosed`] when the reader went away).
macro_rules! outln {
    () => { $crate::output::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::line(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics: a message nobody can read any more is dropped.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
