//! Logging setup shared by the three binaries: `tracing` to stderr, filtered by `RUST_LOG`
//! (default `info`, or `debug` for our crates with `-v`), optionally as JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `verbose` raises our crates to `debug` unless `RUST_LOG`
/// says otherwise. Calling it twice is harmless (the second call does nothing).
pub fn init(verbose: bool, json: bool) {
    // hickory logs every DNS request at info: per-query logs are for `-verbose` only.
    let default = if verbose {
        "info,common=debug,registrator=debug,skydns=debug,logspout=debug"
    } else {
        "info,hickory_server=warn,hickory_proto=warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
