//! Invocation: `--version`, and bad configuration → one clear error line and exit status 1.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use support::run_to_exit;

#[test]
fn version_prints_one_line_and_exits_0() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_logspout"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("v{}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_configuration_is_one_error_line_and_exit_1() {
    /// (first argument, environment, expected error line)
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (Some("foo://h:1"), &[], "!! bad adapter: foo"),
        (
            Some("syslog+foo://h:1"),
            &[],
            "!! bad transport: syslog+foo",
        ),
        (Some("tcp+tls://h:1"), &[], "!! bad transport: tcp+tls"),
        (
            Some("multiline://h:1"),
            &[],
            "!! multiline: adapter must have a sub-adapter, eg: multiline+raw+tcp",
        ),
        (
            Some("syslog://h"),
            &[],
            "!! address h: missing port in address",
        ),
        (
            None,
            &[("ROUTE_URIS", "raw://127.0.0.1:1,nope")],
            "!! bad route URI \"nope\"",
        ),
        (
            None,
            &[("SYSLOG_FORMAT", "bogus")],
            "!! unknown SYSLOG_FORMAT value: bogus",
        ),
        (
            None,
            &[("SYSLOG_TCP_FRAMING", "lines")],
            "!! unknown SYSLOG_TCP_FRAMING value: lines",
        ),
        (
            None,
            &[("INACTIVITY_TIMEOUT", "60")],
            "!! Couldn't parse env var INACTIVITY_TIMEOUT.",
        ),
        (
            None,
            &[("SYSLOG_TAG", "{{.Nope}}")],
            "!! SYSLOG_TAG: bad template \"{{.Nope}}\"",
        ),
        (
            None,
            &[("PORT", "eighty")],
            "!! invalid PORT value \"eighty\"",
        ),
        (
            None,
            &[("DOCKER_HOST", "ssh://docker")],
            "!! invalid DOCKER_HOST",
        ),
        (
            Some("syslog+tls://127.0.0.1:6514"),
            &[("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true")],
            "!! route syslog+tls://127.0.0.1:6514: FATAL: TLS CA trust store is empty!",
        ),
        // Read at start-up even without a TLS route, as the original does.
        (
            None,
            &[("LOGSPOUT_TLS_CA_CERTS", "/nonexistent/ca.pem")],
            "!! error with TLSConfig: cannot read CA certificates from /nonexistent/ca.pem",
        ),
        (
            None,
            &[
                ("LOGSPOUT_TLS_CLIENT_CERT", "/nonexistent/client.pem"),
                ("LOGSPOUT_TLS_CLIENT_KEY", "/nonexistent/client.key"),
            ],
            "!! error with TLSConfig: cannot load client certificate /nonexistent/client.pem",
        ),
    ];
    for (arg, env, expected) in cases {
        let (code, stderr) = run_to_exit(*arg, env);
        assert_eq!(code, Some(1), "{arg:?} {env:?}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with(expected), "{arg:?} {env:?}: {stderr}");
        let errors = stderr.lines().filter(|l| l.starts_with("!!")).count();
        assert_eq!(errors, 1, "{stderr}");
    }
}

/// Every variable logspout reads at start-up (`LOGSPOUT_MAX_TAPS` is the sentinel below, and
/// `DEBUG` only changes logging).
const VARS: &[&str] = &[
    "ROUTE_URIS",
    "ROUTESPATH",
    "DOCKER_HOST",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "PORT",
    "HTTP_PORT",
    "HTTP_BIND_ADDRESS",
    "BACKLOG",
    "TAIL",
    "INACTIVITY_TIMEOUT",
    "ALLOW_TTY",
    "EXCLUDE_LABELS",
    "EXCLUDE_LABEL",
    "SYSLOG_FORMAT",
    "SYSLOG_TCP_FRAMING",
    "SYSLOG_PRIORITY",
    "SYSLOG_TIMESTAMP",
    "SYSLOG_HOSTNAME",
    "SYSLOG_TAG",
    "SYSLOG_PID",
    "SYSLOG_STRUCTURED_DATA",
    "SYSLOG_DATA",
    "RAW_FORMAT",
    "MULTILINE_ENABLE_DEFAULT",
    "MULTILINE_PATTERN",
    "MULTILINE_MATCH",
    "MULTILINE_FLUSH_AFTER",
    "MULTILINE_SEPARATOR",
    "MULTILINE_MAX_BYTES",
    "LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS",
    "LOGSPOUT_TLS_CA_CERTS",
    "LOGSPOUT_TLS_CLIENT_CERT",
    "LOGSPOUT_TLS_CLIENT_KEY",
    "LOGSPOUT_QUEUE_SIZE",
    "LOGSPOUT_FLUSH_TIMEOUT",
    "LOGSPOUT_POSITIONS_FILE",
    "LOGSPOUT_HTTP_TOKEN",
    "LOGSPOUT_CONNECT_TIMEOUT",
    "LOGSPOUT_TLS_HANDSHAKE_TIMEOUT",
    "LOGSPOUT_WRITE_TIMEOUT",
    "LOGSPOUT_TCP_KEEPALIVE",
    "LOGSPOUT_LOG_JSON",
];

/// Generated values for every variable (any bytes, also not UTF-8; templates, durations, sizes
/// and URIs gone wrong) and generated first arguments: logspout exits 1 with exactly one line
/// on stderr, `!! …`, and never panics. `LOGSPOUT_MAX_TAPS=0`, read last, makes a
/// configuration that is otherwise valid fail too, so no case starts logspout (or dials).
#[test]
fn generated_bad_settings_are_one_error_line_and_exit_1() {
    use proptest::prelude::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    let value = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..40),
        "\\{\\{[ .A-Za-z\"|]{0,20}(\\}\\})?".prop_map(String::into_bytes),
        "[0-9.]{0,6}(ns|us|µs|ms|s|m|h|x|KiB|MiB|G|)".prop_map(String::into_bytes),
        "(syslog|raw|tcp|udp|tls|multiline|x)(\\+[a-z]{0,5}){0,3}://[^,]{0,20}(,[^,]{0,10})?"
            .prop_map(String::into_bytes),
        "[^\\x00]{0,30}".prop_map(String::into_bytes),
    ]
    // Empty means unset, and a NUL cannot be in the environment.
    .prop_map(|mut b| {
        b.retain(|&c| c != 0);
        if b.is_empty() {
            b.push(0xff);
        }
        b
    });
    let vars = prop::collection::vec((prop::sample::select(VARS), value.clone()), 1..4);
    let strategy = (vars, prop::option::of(value));
    let ran = std::sync::atomic::AtomicUsize::new(0);
    let config = proptest::test_runner::Config {
        cases: 150,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Default::default()
    };
    let result = proptest::test_runner::TestRunner::new(config).run(&strategy, |(vars, arg)| {
        ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (mut command, _, _dir) = support::command(None, &[]);
        command
            .env("RUST_LOG", "error")
            .env("LOGSPOUT_MAX_TAPS", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (name, value) in &vars {
            command.env(name, OsString::from_vec(value.clone()));
        }
        if let Some(arg) = &arg {
            command.arg(OsString::from_vec(arg.clone()));
        }
        let output = harness::process::spawn_tied(command)
            .expect("spawn logspout")
            .wait_with_output()
            .expect("logspout output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let shown = format!("{vars:?} {arg:?}: {stderr}");
        prop_assert_eq!(output.status.code(), Some(1), "{}", shown);
        prop_assert!(!stderr.contains("panicked"), "{}", shown);
        prop_assert_eq!(lines.len(), 1, "{}", shown);
        prop_assert!(lines[0].starts_with("!! "), "{}", shown);
        Ok(())
    });
    println!(
        "generated start-up settings: {} cases",
        ran.load(std::sync::atomic::Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
