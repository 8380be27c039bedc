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
            "unrecognized adapter: consul://h:8500/ (consul:// is not supported",
        ),
        (
            &["zookeeper://h:2181/services"],
            "for ZooKeeper keep gliderlabs/registrator",
        ),
        (&["redis://h:6379"], "unrecognized adapter: redis://h:6379"),
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

/// Runs the binary with `args` and `env` (bytes, so arguments need not be UTF-8), killing it
/// after `bound`; `None` when it was still running then. Output goes to files, so a long error
/// message cannot block the child on a full pipe.
fn run_bounded(
    args: &[std::ffi::OsString],
    env: &[(String, std::ffi::OsString)],
    bound: std::time::Duration,
) -> Option<(Option<i32>, String)> {
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_registrator"));
    command
        .args(args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("spawn registrator");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let text =
        String::from_utf8_lossy(&std::fs::read(&stderr_path).unwrap_or_default()).into_owned();
    Some((status.code(), text))
}

#[test]
fn generated_bad_flags_and_env_give_one_error_and_a_non_zero_exit() {
    use proptest::prelude::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    // Every registry that could be reached is a closed port on loopback: nothing is sent anywhere.
    let closed = harness::process::free_tcp_port();
    let value = || {
        prop_oneof![
            any::<String>().prop_map(OsString::from),
            "-?[0-9]{1,25}".prop_map(OsString::from),
            Just(OsString::from("")),
            Just(OsString::from("é\u{0}\u{1F600}")),
            Just(OsString::from("x".repeat(100_000))),
            prop::collection::vec(any::<u8>(), 0..12).prop_map(OsString::from_vec),
        ]
    };
    let flag = prop_oneof![
        Just("-ip"),
        Just("-ttl"),
        Just("-ttl-refresh"),
        Just("-resync"),
        Just("-deregister"),
        Just("-tags"),
        Just("-useIpFromLabel"),
        Just("-retry-interval"),
        Just("-metrics"),
        Just("-etcd-cacert"),
        Just("-etcd-cert"),
        Just("-etcd-key"),
        Just("-etcd-username"),
        Just("-etcd-password"),
        Just("-internal="),
        Just("-cleanup="),
        Just("-nonexistent"),
    ];
    let uri = prop_oneof![
        "[a-z0-9./:_-]{0,20}".prop_filter("no scheme", |u| !u.contains("://")),
        "[a-zA-Z0-9._/-]{0,30}".prop_map(move |d| format!("skydns2://127.0.0.1:{closed}/{d}")),
        "[a-zA-Z0-9._/-]{0,30}".prop_map(move |d| format!("etcd://127.0.0.1:{closed}/{d}")),
        any::<u16>().prop_map(|p| format!("skydns2://127.0.0.1:{p}0000/d.local")),
    ];
    let env_name = prop_oneof![
        Just("REGISTRATOR_TTL"),
        Just("REGISTRATOR_TTL_REFRESH"),
        Just("REGISTRATOR_IP"),
        Just("REGISTRATOR_DEREGISTER"),
        Just("REGISTRATOR_RESYNC"),
        Just("REGISTRATOR_INTERNAL"),
        Just("REGISTRATOR_METRICS"),
        Just("DOCKER_HOST"),
        Just("DOCKER_TLS_VERIFY"),
        Just("DOCKER_CERT_PATH"),
    ];
    let case = (
        prop::collection::vec((flag, value()), 0..4),
        uri,
        prop::collection::vec((env_name, value()), 0..3),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 150,
        ..ProptestConfig::default()
    });
    let runs = std::cell::Cell::new(0usize);
    let result = runner.run(&case, |(flags, uri, env)| {
        runs.set(runs.get() + 1);
        let mut args: Vec<OsString> = Vec::new();
        for (name, value) in flags {
            if name.ends_with('=') {
                let mut joined = OsString::from(name);
                joined.push(&value);
                args.push(joined);
            } else {
                args.push(name.into());
                args.push(value);
            }
        }
        args.push(uri.into());
        // A value an env var cannot carry (a NUL byte) never reaches a process.
        let env: Vec<(String, OsString)> = env
            .into_iter()
            .filter(|(_, v)| !v.as_encoded_bytes().contains(&0))
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        if args.iter().any(|a| a.as_encoded_bytes().contains(&0)) {
            return Ok(());
        }
        let output = run_bounded(&args, &env, std::time::Duration::from_secs(20));
        let Some((code, text)) = output else {
            return Err(TestCaseError::fail(format!(
                "{args:?} {env:?}: still running after 20 s"
            )));
        };
        prop_assert!(!text.contains("panicked"), "{args:?} {env:?}: {text}");
        prop_assert!(code.is_some(), "killed by a signal: {args:?}: {text}");
        prop_assert_ne!(code, Some(0), "{:?} {:?}: {}", args, env, text);
        let first = text.lines().next().unwrap_or_default();
        prop_assert!(
            first.starts_with("registrator: ")
                || first.starts_with("error: ")
                || first.starts_with("missing registry URI")
                || first.starts_with("Extra unparsed arguments"),
            "{:?} {:?}: the first line says what is wrong: {}",
            args,
            env,
            text
        );
        if code == Some(1) {
            prop_assert_eq!(text.lines().count(), 1, "{:?} {:?}: {}", args, env, text);
        }
        Ok(())
    });
    eprintln!("generated command lines run: {}", runs.get());
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
