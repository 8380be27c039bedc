//! Go templates end to end: real containers on the real Docker Engine, logspout as a process,
//! real raw and syslog receivers, templates of the kind people run (JSON lines, swarm task
//! names, labels, conditions on the stream, fields of the inspect object).

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use harness::{ContainerSpec, SyslogReceiver, TestDocker};
use support::{Logspout, WAIT, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_format_builds_json_lines() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let name = unique("ls-json");
    let port = receiver.port();
    let routes = format!("raw+tcp://127.0.0.1:{port}?filter.name={name}");
    let format = concat!(
        r#"{"service":{{ toJSON (index .Container.Config.Labels "com.docker.swarm.service.name") }},"#,
        r#""name":{{ toJSON .Container.Name }},"#,
        r#""stream":"{{ if eq .Source "stderr" }}err{{ else }}out{{ end }}","#,
        r#""net":{{ toJSON .Container.HostConfig.NetworkMode }},"#,
        r#""running":{{ toJSON .Container.State.Running }},"#,
        // The harness's own labels (`io.harness…`) sort after these and are left out.
        r#""labels":"{{ range $k, $v := .Container.Config.Labels }}{{ if lt $k "io." }}{{ $k }}={{ $v }};{{ end }}{{ end }}","#,
        r#""day":"{{ .Time.UTC.Format "2006-01-02" }}","#,
        r#""line":{{ toJSON .Data }}}"#,
        "\n"
    );
    let _logspout = Logspout::start(Some(&routes), &[("RAW_FORMAT", format)]).await;
    let _container = docker
        .run(
            ContainerSpec::shell(r#"echo 'say "hi" <b>'; sleep 1; echo oops >&2; sleep 30"#)
                .name(&name)
                .network_mode("none")
                .label("com.docker.swarm.service.name", "shop_web")
                .label("a.first", "1"),
        )
        .await;
    let messages = receiver.wait_for_count(2, WAIT).await;
    let lines: Vec<String> = messages.iter().map(|m| m.raw_text()).collect();
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let line = |stream: &str, data: &str| {
        format!(
            r#"{{"service":"shop_web","name":"/{name}","stream":"{stream}","net":"none","running":true,"labels":"a.first=1;com.docker.swarm.service.name=shop_web;","day":"{day}","line":{data}}}"#
        )
    };
    assert_eq!(
        lines,
        [
            line("out", r#""say \"hi\" \u003cb\u003e""#),
            line("err", r#""oops""#)
        ]
    );
    for line in &lines {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(parsed["service"], "shop_web", "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tag_from_the_swarm_task_name_and_failing_lines_still_arrive() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let service = unique("ls-task");
    let name = format!("{service}.1.k3j2h1");
    let port = receiver.port();
    let routes = format!("syslog+tcp://127.0.0.1:{port}?filter.name={service}*");
    let env = [
        (
            "SYSLOG_TAG",
            r#"{{ index (.ContainerNameSplitN "." 2) 0 }}"#,
        ),
        (
            "SYSLOG_STRUCTURED_DATA",
            r#"meta@1 team="{{ .Container.Config.Labels.team }}" len="{{ printf "%03d" (len .Data) }}""#,
        ),
        // stderr lines hit an index out of range: they are sent with what was rendered.
        (
            "SYSLOG_DATA",
            r#"{{ .Data }}{{ if eq .Source "stderr" }} !{{ index .Container.Config.Env 99 }}{{ end }}"#,
        ),
    ];
    let logspout = Logspout::start(Some(&routes), &env).await;
    let _container = docker
        .run(
            ContainerSpec::shell("echo hello; sleep 1; echo oops >&2; sleep 30")
                .name(&name)
                .hostname("abc123")
                .label("team", "core"),
        )
        .await;
    let hello = receiver.wait_for_msg("hello", WAIT).await;
    assert_eq!(hello.appname.as_deref(), Some(service.as_str()));
    let raw = hello.raw_text();
    let after_pid = raw.split_once(" - ").map(|(_, rest)| rest).unwrap();
    assert_eq!(after_pid, "[meta@1 team=\"core\" len=\"005\"] hello");
    let oops = receiver.wait_for_msg("oops !", WAIT).await;
    assert_eq!(oops.appname.as_deref(), Some(service.as_str()));
    assert_eq!(logspout.metric("logspout_template_errors_total").await, 1.0);
    assert!(
        logspout.log().contains("template failed"),
        "{}",
        logspout.log()
    );
}
