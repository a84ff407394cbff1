//! The one way the `GlobalAlloc` path reports detected misuse: one line, no allocation, then the
//! end of the process.

use core::fmt::{self, Write};

use budalloc_core::FreeError;

/// The start of every line this module prints.
pub const FATAL_PREFIX: &str = "budalloc: fatal allocator error: ";

/// A fixed buffer that formats without allocating, cutting what does not fit.
struct Line {
    bytes: [u8; 256],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.bytes.len() - 1 - self.len; // keep one byte for the newline
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Formats the report of `error`: `budalloc: fatal allocator error: <error>\n`.
fn report(error: &dyn fmt::Display) -> Line {
    let mut line = Line { bytes: [0; 256], len: 0 };
    let _ = write!(line, "{FATAL_PREFIX}{error}");
    line.bytes[line.len] = b'\n';
    line.len += 1;
    line
}

/// Reports a misuse detected on the `GlobalAlloc` path (double free, foreign or interior
/// pointer, wrong layout, damaged metadata) and ends the process: with `std`, one line on stderr
/// written without allocating, then `abort()`; without `std`, a panic carrying the same line
/// (embedded targets build with `panic = "abort"`).
#[cold]
#[inline(never)]
pub fn misuse(error: &FreeError) -> ! {
    fail(error)
}

/// Ends the process after reporting `what` the same way as [`misuse`]; for detected misuse that
/// is not about one block (a frontend used after it was moved).
#[cold]
#[inline(never)]
pub fn fail(what: &dyn fmt::Display) -> ! {
    let line = report(what);
    #[cfg(feature = "std")]
    {
        use std::io::Write as _;
        let _ = std::io::stderr().write_all(&line.bytes[..line.len]);
        std::process::abort()
    }
    #[cfg(not(feature = "std"))]
    {
        let text = core::str::from_utf8(&line.bytes[..line.len]).unwrap_or(FATAL_PREFIX);
        panic!("{}", text.trim_end())
    }
}
