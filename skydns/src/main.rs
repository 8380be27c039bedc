//! The `skydns` binary: parses flags and environment like SkyDNS 2, then runs the server until
//! SIGTERM or SIGINT.

mod healthcheck;

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use skydns::config::ORIGINAL_VERSION;
use skydns::{Flags, Handover};

fn main() -> ExitCode {
    let argv = match common::cli::utf8_args() {
        Ok(argv) => argv,
        Err(error) => {
            eprintln!("skydns: {error}");
            return ExitCode::from(2);
        }
    };
    if argv.get(1).map(String::as_str) == Some("healthcheck") {
        return healthcheck_main(&argv);
    }
    let command = Flags::command();
    let flags = Flags::parse_from(common::cli::go_style_args(&command, argv));
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
    // Before the runtime starts threads: this removes LISTEN_PID and LISTEN_FDS from the
    // environment. Taken whatever -systemd says, as the etcd document may still turn it on.
    let handover = Handover::from_env();
    if config.settings.systemd {
        handover.check()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = common::shutdown::install().context("cannot install signal handlers")?;
        skydns::run_with(config, handover, shutdown).await?;
        Ok(())
    })
}

/// `skydns healthcheck [flags]`: exit 0 when the server configured by these flags (or by PID 1's,
/// see `common::healthcheck::arguments`) answers a DNS query, 1 otherwise.
fn healthcheck_main(argv: &[String]) -> ExitCode {
    let pid1 = std::fs::read("/proc/1/cmdline").ok();
    let args = common::healthcheck::arguments(argv, pid1.as_deref());
    let command = Flags::command();
    let result = Flags::try_parse_from(common::cli::go_style_args(&command, args))
        .context("bad flags")
        .and_then(|flags| {
            let target = healthcheck::target(&flags.addr)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let rcode = runtime.block_on(healthcheck::check(target, &flags.domain))?;
            Ok((target, rcode))
        });
    match result {
        Ok((target, rcode)) => {
            println!("healthy: {target} answers {rcode}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("skydns healthcheck: {error:#}");
            ExitCode::FAILURE
        }
    }
}
