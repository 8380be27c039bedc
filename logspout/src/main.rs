//! The `logspout` binary: reads the environment and the route argument, then runs the library.

mod healthcheck;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// Ships every container's stdout/stderr to syslog and raw routes (drop-in for gliderlabs/logspout).
///
/// Everything else is configured through environment variables (see README.md).
#[derive(Debug, Parser)]
#[command(name = "logspout", disable_version_flag = true)]
struct Args {
    /// Route URIs, comma-separated (overrides ROUTE_URIS), e.g. syslog+tcp://logs:514.
    routes: Option<String>,
    /// Ignored, as in the original (only the first argument is read).
    #[arg(hide = true)]
    ignored: Vec<String>,
    /// Print the version and exit.
    #[arg(long)]
    version: bool,
    /// Log as JSON lines.
    #[arg(long, env = "LOGSPOUT_LOG_JSON")]
    log_json: bool,
}

fn main() -> ExitCode {
    let argv = match common::cli::utf8_args() {
        Ok(argv) => argv,
        Err(error) => {
            eprintln!("!! {error}");
            return ExitCode::FAILURE;
        }
    };
    if argv.get(1).map(String::as_str) == Some("healthcheck") {
        return healthcheck_main();
    }
    let command = Args::command();
    let args = match Args::try_parse_from(common::cli::go_style_args(&command, argv)) {
        Ok(args) => args,
        // `--help`: printed on stdout.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // A bad flag or `LOGSPOUT_LOG_JSON` value: one line, like every other bad setting.
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "!! {}",
                one_line(first.strip_prefix("error: ").unwrap_or(first))
            );
            return ExitCode::FAILURE;
        }
    };
    if args.version {
        println!("{}", logspout::VERSION);
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("logspout: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("!! {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

async fn start(args: Args) -> anyhow::Result<()> {
    let config = logspout::Config::from_env(args.routes.as_deref())?;
    common::logging::init(config.debug, args.log_json);
    let shutdown = common::shutdown::install()?;
    logspout::run(config, shutdown).await?;
    Ok(())
}

/// `logspout healthcheck`: exit 0 when `GET /health` on the HTTP address this environment
/// configures (`PORT`/`HTTP_PORT`, `HTTP_BIND_ADDRESS`) answers 200, 1 otherwise.
fn healthcheck_main() -> ExitCode {
    let result = logspout::Config::from_env(None)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let target = common::healthcheck::local_target(config.http_addr);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(healthcheck::check(target))
        });
    match result {
        Ok(status) => {
            println!("healthy: {status}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("logspout healthcheck: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// An error message as one line: values quoted in it may hold newlines or other control
/// characters, which are escaped (`\n`).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
