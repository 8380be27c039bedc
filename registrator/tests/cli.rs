//! The command line of the real binary: the original's messages and exit codes, `--version`,
//! env vars, and a registry that cannot be reached at start-up.

use std::process::{Command, Output};

fn registrator(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_registrator"));
    command
        .args(args)
        .env("DOCKER_HOST", "unix:///var/run/docker.sock");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run registrator")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn positional_argument_errors_exit_2_like_go() {
    let missing = registrator(&[], &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).starts_with("missing registry URI\n"),
        "{}",
        stderr(&missing)
    );
    assert!(
        stderr(&missing).contains("Usage: registrator"),
        "{}",
        stderr(&missing)
    );

    let extra = registrator(&["-ip", "1.2.3.4", "skydns2://h/d", "-ttl", "40"], &[]);
    assert_eq!(extra.status.code(), Some(2));
    let text = stderr(&extra);
    assert!(text.contains("Extra unparsed arguments"), "{text}");
    assert!(text.contains("40"), "{text}");
    assert!(
        text.contains("Options should come before the registry URI"),
        "{text}"
    );

    let bad_value = registrator(&["-ttl", "abc", "skydns2://h/d"], &[]);
    assert_eq!(bad_value.status.code(), Some(2), "{}", stderr(&bad_value));
}

#[test]
fn validation_errors_are_one_line_and_exit_1() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["-ttl", "40", "skydns2://h/d"],
            "-ttl and -ttl-refresh must be specified together or not at all",
        ),
        (
            &["-ttl", "30", "-ttl-refresh=30", "skydns2://h/d"],
            "-ttl must be greater than -ttl-refresh",
        ),
        (
            &["-retry-interval", "0", "skydns2://h/d"],
            "-retry-interval must be greater than 0",
        ),
        (
            &["-deregister=sometimes", "skydns2://h/d"],
            "-deregister must be \"always\" or \"on-success\"",
        ),
        (
            &["consul://h:8500/"],
            "unrecognized adapter: consul://h:8500/",
        ),
        (
            &["skydns2://h:4001"],
            "skydns2: the registry URI needs a domain",
        ),
    ];
    for (args, message) in cases {
        let output = registrator(args, &[]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        let text = stderr(&output);
        assert_eq!(text.lines().count(), 1, "{args:?}: {text}");
        assert!(text.contains(message), "{args:?}: {text}");
    }
}

#[test]
fn version_and_help() {
    for flag in ["--version", "-version"] {
        let output = registrator(&[flag], &[]);
        assert_eq!(output.status.code(), Some(0));
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    }
    let help = registrator(&["-help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "--ttl-refresh",
        "REGISTRATOR_TTL_REFRESH",
        "--useIpFromLabel",
        "REGISTRATOR_USE_IP_FROM_LABEL",
        "skydns2://",
        "DOCKER_HOST",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from --help:\n{text}"
        );
    }
}

#[test]
fn flags_are_read_from_the_environment() {
    let output = registrator(&["skydns2://h/d"], &[("REGISTRATOR_TTL", "40")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("-ttl and -ttl-refresh must be specified together"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unreachable_registry_is_retried_then_a_clear_error() {
    let port = harness::process::free_tcp_port();
    let uri = format!("skydns2://127.0.0.1:{port}/example.local");
    let output = registrator(
        &["-retry-attempts", "2", "-retry-interval", "100", &uri],
        &[("RUST_LOG", "warn")],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("cannot reach the registry"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert_eq!(text.matches("will retry").count(), 2, "{text}");
}
