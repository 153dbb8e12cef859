//! Standard output that a closed pipe cannot crash: `println!` panics when the reader has
//! gone (`edge status | head -1`); these drop the rest of the text instead and the command
//! still ends with its own exit status (a failed healthcheck stays exit 1).

use std::io::Write;

/// Writes to stdout; a closed pipe is not an error, any other failure is reported once.
pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    if let Err(e) = std::io::stdout().lock().write_fmt(args)
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        static REPORTED: std::sync::Once = std::sync::Once::new();
        REPORTED.call_once(|| eprintln!("warning: cannot write to standard output: {e}"));
    }
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}

/// `println!` through [`write`].
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}
