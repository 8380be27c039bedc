//! The `skydns` binary: parses flags and environment like SkyDNS 2, then runs the server until
//! SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use skydns::Flags;
use skydns::config::ORIGINAL_VERSION;

fn main() -> ExitCode {
    let command = Flags::command();
    let flags = Flags::parse_from(common::cli::go_style_args(&command, std::env::args()));
    if flags.version {
        println!(
            "skydns server version: {ORIGINAL_VERSION} (rust {})",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    common::logging::init(flags.verbose, flags.log_json);
    match start(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("skydns: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(flags: Flags) -> anyhow::Result<()> {
    let config = flags.into_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = common::shutdown::install().context("cannot install signal handlers")?;
        skydns::run(config, shutdown).await?;
        Ok(())
    })
}
