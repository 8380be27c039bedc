//! The `registrator` binary: parses the Go-style command line and runs the library.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use registrator::Options;

#[tokio::main]
async fn main() -> ExitCode {
    let command = Options::command();
    let args = common::cli::go_style_args(&command, std::env::args());
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
    let config = match options.into_config(std::env::var("DOCKER_HOST").ok().as_deref()) {
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
