//! The `registrator` binary: parses the Go-style command line and runs the library.

mod healthcheck;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use registrator::Options;

#[tokio::main]
async fn main() -> ExitCode {
    let argv = match common::cli::utf8_args() {
        Ok(argv) => argv,
        Err(error) => {
            eprintln!("registrator: {error}");
            return ExitCode::from(2);
        }
    };
    if argv.get(1).map(String::as_str) == Some("healthcheck") {
        return healthcheck_main(&argv).await;
    }
    let command = Options::command();
    let args = common::cli::go_style_args(&command, argv);
    let matches = match command.clone().try_get_matches_from(args) {
        Ok(matches) => matches,
        Err(err) => err.exit(),
    };
    let options = match Options::from_arg_matches(&matches) {
        Ok(options) => options,
        Err(err) => err.exit(),
    };
    if let Err(usage) = options.uri() {
        eprintln!("{usage}");
        eprintln!("{}", Options::command().render_usage());
        return ExitCode::from(2);
    }
    common::logging::init(options.verbose, options.log_json);
    let config = match options.into_config(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("registrator: {err}");
            return ExitCode::from(1);
        }
    };
    let shutdown = match common::shutdown::install() {
        Ok(token) => token,
        Err(err) => {
            eprintln!("registrator: cannot install signal handlers: {err}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting registrator");
    match registrator::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("registrator: {err}");
            ExitCode::from(1)
        }
    }
}

/// `registrator healthcheck [options] [URI]`: exit 0 when Docker and the registry's etcd answer,
/// with the options given or those of PID 1 (see `common::healthcheck::arguments`), 1 otherwise.
async fn healthcheck_main(argv: &[String]) -> ExitCode {
    let pid1 = std::fs::read("/proc/1/cmdline").ok();
    let args = common::healthcheck::arguments(argv, pid1.as_deref());
    let command = Options::command();
    let options = command
        .try_get_matches_from(common::cli::go_style_args(&Options::command(), args))
        .and_then(|matches| Options::from_arg_matches(&matches))
        .map_err(|err| format!("bad options: {err}"));
    let config = options.and_then(|options| {
        options
            .into_config(|name| std::env::var(name).ok())
            .map_err(|err| format!("bad options: {err}"))
    });
    let result = match config {
        Ok(config) => healthcheck::check(&config).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(summary) => {
            println!("healthy: {summary}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("registrator healthcheck: {err}");
            ExitCode::from(1)
        }
    }
}
