//! The `edge` command-line tool and the `edge-watchdog` binary: argument parsing, output and exit codes.
