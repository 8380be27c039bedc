//! Command-line plumbing shared by the three binaries: Go-style single-dash long flags
//! (`-ip 10.0.0.5`, `-ttl-refresh=30`), as the originals accept them, rewritten for clap.

use clap::Command;

/// The process arguments as text. `std::env::args` panics on an argument that is not UTF-8;
/// this names it instead, for the one error line the binary prints before exiting.
pub fn utf8_args() -> Result<Vec<String>, String> {
    std::env::args_os()
        .map(|arg| {
            arg.into_string().map_err(|bad| {
                format!(
                    "invalid argument {:?}: not valid UTF-8",
                    bad.to_string_lossy()
                )
            })
        })
        .collect()
}

/// Rewrites `-name` and `-name=value` to `--name`/`--name=value` when `name` is a long flag of
/// `command` (two characters or more). Everything else is left alone: short flags (`-v`),
/// values (`-1` after `-retry-attempts`), everything after `--`, and positional arguments.
pub fn go_style_args<I, S>(command: &Command, args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let longs: Vec<&str> = command
        .get_arguments()
        .flat_map(|a| {
            a.get_long()
                .into_iter()
                .chain(a.get_all_aliases().into_iter().flatten())
        })
        .chain(["help", "version"])
        .collect();
    let mut out = Vec::new();
    let mut after_separator = false;
    for arg in args.into_iter().map(Into::into) {
        if after_separator || arg == "--" {
            after_separator = true;
            out.push(arg);
            continue;
        }
        let rewritten = arg
            .strip_prefix('-')
            .filter(|rest| !rest.starts_with('-'))
            .filter(|rest| {
                let name = rest.split_once('=').map_or(*rest, |(name, _)| name);
                name.len() > 1 && longs.contains(&name)
            })
            .map(|rest| format!("--{rest}"));
        out.push(rewritten.unwrap_or(arg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn command() -> Command {
        Command::new("registrator")
            .arg(Arg::new("ip").long("ip"))
            .arg(Arg::new("ttl-refresh").long("ttl-refresh"))
            .arg(Arg::new("retry-attempts").long("retry-attempts"))
            .arg(Arg::new("useIpFromLabel").long("useIpFromLabel"))
            .arg(
                Arg::new("verbose")
                    .short('v')
                    .long("verbose")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("uri"))
    }

    #[test]
    fn single_dash_long_flags_are_rewritten() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &[
                    "registrator",
                    "-ip",
                    "10.0.0.5",
                    "-ttl-refresh=30",
                    "skydns2://h:1/d",
                ],
                &[
                    "registrator",
                    "--ip",
                    "10.0.0.5",
                    "--ttl-refresh=30",
                    "skydns2://h:1/d",
                ],
            ),
            (
                &["registrator", "--ip=1.2.3.4", "-v", "-retry-attempts", "-1"],
                &[
                    "registrator",
                    "--ip=1.2.3.4",
                    "-v",
                    "--retry-attempts",
                    "-1",
                ],
            ),
            (
                &[
                    "registrator",
                    "-useIpFromLabel",
                    "ip",
                    "-unknown",
                    "--",
                    "-ip",
                ],
                &[
                    "registrator",
                    "--useIpFromLabel",
                    "ip",
                    "-unknown",
                    "--",
                    "-ip",
                ],
            ),
            (&["registrator", "-version"], &["registrator", "--version"]),
            (&["registrator", "-"], &["registrator", "-"]),
        ];
        for (input, expected) in cases {
            assert_eq!(go_style_args(&command(), input.iter().copied()), *expected);
        }
    }

    #[test]
    fn rewritten_args_parse() {
        let matches = command()
            .try_get_matches_from(go_style_args(
                &command(),
                ["registrator", "-ip", "10.0.0.5", "-ttl-refresh=30", "uri"],
            ))
            .unwrap();
        assert_eq!(matches.get_one::<String>("ip").unwrap(), "10.0.0.5");
        assert_eq!(matches.get_one::<String>("ttl-refresh").unwrap(), "30");
        assert_eq!(matches.get_one::<String>("uri").unwrap(), "uri");
    }
}
