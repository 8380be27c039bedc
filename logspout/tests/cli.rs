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
            "!! SYSLOG_TAG: unsupported template \"{{.Nope}}\"",
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
