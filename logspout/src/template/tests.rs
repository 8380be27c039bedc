//! Table tests of whole templates: what people write in `SYSLOG_TAG`/`RAW_FORMAT`, with the
//! output Go's `text/template` gives for the same message and container.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{TimeZone, Utc};

use super::*;
use crate::message::ContainerInfo;

/// A swarm task of service `shop_web`, also carrying Kubernetes-style labels, with an inspect
/// result; its line `hello` at 2021-12-06 15:04:05.7 UTC.
fn message(source: Source, data: &str) -> Message {
    let inspect = serde_json::json!({
        "Id": "abc123def4567890",
        "Created": "2021-12-06T15:00:00.123456789Z",
        "Name": "/stale-name",
        "Config": {"Cmd": ["nginx", "-g", "daemon off;"], "WorkingDir": "/srv"},
        "State": {"Status": "running", "Running": true, "ExitCode": 0},
        "HostConfig": {"NetworkMode": "bridge", "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}},
        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
        "RestartCount": 2,
    });
    let labels = [
        ("com.docker.swarm.service.name", "shop_web"),
        ("io.kubernetes.pod.name", "web-7d9f"),
        ("io.kubernetes.pod.namespace", "prod"),
        ("team", "core"),
    ];
    let container = ContainerInfo {
        id: "abc123def4567890".into(),
        name: "/shop_web.1.k3j2h1".into(),
        hostname: "abc123".into(),
        image: "nginx:1.25".into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        env: vec!["APP=shop".into(), "EMPTY=".into()],
        pid: 4242,
        inspect_value: Arc::new(inspect),
        ..ContainerInfo::default()
    };
    Message {
        container: Arc::new(container),
        source,
        data: Bytes::copy_from_slice(data.as_bytes()),
        time: Utc.with_ymd_and_hms(2021, 12, 6, 15, 4, 5).unwrap()
            + chrono::Duration::milliseconds(700),
    }
}

fn render(text: &str, m: &Message) -> String {
    let template = Template::compile("T", text).unwrap_or_else(|e| panic!("{e}"));
    template.render_string(m)
}

/// (template, stdout line, expected): the expectations are Go `text/template` output.
const CASES: &[(&str, &str, &str)] = &[
    // Fields and the direct path.
    ("{{.Data}}", "hello", "hello"),
    ("{{.Source}}:{{.Data}}", "hello", "stdout:hello"),
    (
        "{{.Container.Name}}|{{.Source}}|{{.Data}}\n",
        "hello",
        "/shop_web.1.k3j2h1|stdout|hello\n",
    ),
    ("{{.ContainerName}}", "", "shop_web.1.k3j2h1"),
    (
        "{{ .Container.Config.Hostname }} {{.Container.Config.Image}}",
        "",
        "abc123 nginx:1.25",
    ),
    (
        "{{.Container.State.Pid}} {{.Container.ID}} {{.Priority}}",
        "",
        "4242 abc123def4567890 14",
    ),
    ("a {{- .Data -}} b", "x", "axb"),
    ("plain", "", "plain"),
    // Swarm and Kubernetes labels.
    (
        r#"{{ index .Container.Config.Labels "com.docker.swarm.service.name" }}"#,
        "",
        "shop_web",
    ),
    (
        r#"{{ index .Container.Config.Labels "io.kubernetes.pod.namespace" }}/{{ index .Container.Config.Labels "io.kubernetes.pod.name" }}"#,
        "",
        "prod/web-7d9f",
    ),
    ("{{.Container.Config.Labels.team}}", "", "core"),
    (
        r#"[{{ index .Container.Config.Labels "missing" }}]"#,
        "",
        "[]",
    ),
    ("{{ .Container.Config.Labels.missing }}", "", "<no value>"),
    (
        "{{ .Container.Config.Labels }}",
        "",
        "map[com.docker.swarm.service.name:shop_web io.kubernetes.pod.name:web-7d9f io.kubernetes.pod.namespace:prod team:core]",
    ),
    (
        "{{ range $k, $v := .Container.Config.Labels }}{{$k}}={{$v}};{{ end }}",
        "",
        "com.docker.swarm.service.name=shop_web;io.kubernetes.pod.name=web-7d9f;io.kubernetes.pod.namespace=prod;team=core;",
    ),
    (
        "{{ range .Container.Config.Labels }}{{.}},{{ end }}",
        "",
        "shop_web,web-7d9f,prod,core,",
    ),
    ("{{ len .Container.Config.Labels }}", "", "4"),
    // ContainerNameSplitN (swarm task names).
    (
        r#"{{ index (.ContainerNameSplitN "." 2) 0 }}"#,
        "",
        "shop_web",
    ),
    (
        r#"{{ .ContainerNameSplitN "." -1 }}"#,
        "",
        "[shop_web 1 k3j2h1]",
    ),
    (
        r#"{{ .ContainerNameSplitN "." 2 }}"#,
        "",
        "[shop_web 1.k3j2h1]",
    ),
    (
        r#"{{ range $i, $e := .ContainerNameSplitN "." 3 }}{{ if $i }}-{{ end }}{{ $e }}{{ end }}"#,
        "",
        "shop_web-1-k3j2h1",
    ),
    // printf and pipelines.
    (
        r#"{{ printf "%s-%d" .ContainerName .Container.State.Pid }}"#,
        "",
        "shop_web.1.k3j2h1-4242",
    ),
    (
        r#"{{ .Container.Name | printf "%s" }}"#,
        "",
        "/shop_web.1.k3j2h1",
    ),
    (r#"{{ .ContainerName | printf "%.8s" }}"#, "", "shop_web"),
    (
        r#"{{ printf "%03d|%-6s|%q" .Priority .Source .Data }}"#,
        "a\"b",
        "014|stdout|\"a\\\"b\"",
    ),
    (r#"{{ printf "%d" .Source }}"#, "", "%!d(string=stdout)"),
    ("{{ .Data | len }}", "hello", "5"),
    (r#"{{ .Source | eq "stdout" }}"#, "", "true"),
    (r#"{{ print "a" 1 2 "b" }}"#, "", "a1 2b"),
    ("{{ slice .ContainerName 0 8 }}", "", "shop_web"),
    // Conditions, comparisons, variables.
    (
        r#"{{ if eq .Source "stderr" }}ERR{{ else }}OUT{{ end }} {{.Data}}"#,
        "hello",
        "OUT hello",
    ),
    (
        r#"{{ if eq .Source "stderr" }}E{{ else if eq .Container.Config.Image "nginx:1.25" }}N{{ else }}X{{ end }}"#,
        "",
        "N",
    ),
    (
        r#"{{ if and (eq .Source "stdout") (gt (len .Data) 3) }}long{{ end }}"#,
        "hello",
        "long",
    ),
    (
        r#"{{ lt 1 2 }} {{ ge 2.5 2.5 }} {{ ne "a" "b" }} {{ not true }} {{ or "" "x" }} {{ and 1 0 }}"#,
        "",
        "true true true false x 0",
    ),
    (r#"{{ eq .Source "stderr" "stdout" }}"#, "", "true"),
    (
        r#"{{ $svc := index .Container.Config.Labels "com.docker.swarm.service.name" }}{{ if $svc }}{{ $svc }}{{ else }}{{ .ContainerName }}{{ end }}"#,
        "",
        "shop_web",
    ),
    (
        "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
        "",
        "2",
    ),
    (
        r#"{{ with index .Container.Config.Labels "team" }}team={{ . }}{{ else }}no team{{ end }}"#,
        "",
        "team=core",
    ),
    (
        r#"{{ with index .Container.Config.Labels "nope" }}team={{ . }}{{ else }}no team{{ end }}"#,
        "",
        "no team",
    ),
    (
        r#"{{ range .Container.Config.Env }}{{ if eq . "EMPTY=" }}{{ break }}{{ end }}{{ . }},{{ end }}"#,
        "",
        "APP=shop,",
    ),
    (
        "{{ range .Container.Config.Env }}{{ $.Source }} {{ end }}",
        "",
        "stdout stdout ",
    ),
    (
        "{{ range $i, $e := .Container.Config.Env }}{{ $i }}{{ else }}none{{ end }}",
        "",
        "01",
    ),
    ("{{ .Container.Config.Env }}", "", "[APP=shop EMPTY=]"),
    (r#"{{ env "APP" }}-{{ env "NOPE" }}"#, "", "shop-"),
    (
        "{{- /* tag */ -}} {{ .ContainerName }}",
        "",
        "shop_web.1.k3j2h1",
    ),
    ("{{ `{{` }}", "", "{{"),
    // Time.
    ("{{.Time.Unix}}", "", "1638803045"),
    (
        r#"{{ .Time.UTC.Format "2006-01-02T15:04:05Z07:00" }}"#,
        "",
        "2021-12-06T15:04:05Z",
    ),
    (
        r#"{{ .Time.UTC.Format "2006-01-02T15:04:05.000Z07:00" }}"#,
        "",
        "2021-12-06T15:04:05.700Z",
    ),
    (
        r#"{{ .Time.UTC.Format "2006-01-02T15:04:05.999999999Z07:00" }}"#,
        "",
        "2021-12-06T15:04:05.7Z",
    ),
    (
        r#"{{ .Time.UTC.Format "Jan _2 15:04:05" }}"#,
        "",
        "Dec  6 15:04:05",
    ),
    (
        r#"{{ .Time.UTC.Format "02/Jan/2006:15:04:05 -0700" }}"#,
        "",
        "06/Dec/2021:15:04:05 +0000",
    ),
    ("{{ .Time.UTC }}", "", "2021-12-06 15:04:05.7 +0000 UTC"),
    (
        "{{ .Time.UTC.Year }} {{ .Time.UTC.Month }} {{ .Time.UTC.Weekday }}",
        "",
        "2021 December Monday",
    ),
    // The rest of the inspect object.
    (
        "{{ .Container.HostConfig.RestartPolicy.Name }}",
        "",
        "always",
    ),
    (
        "{{ .Container.State.Running }} {{ .Container.State.Status }}",
        "",
        "true running",
    ),
    ("{{ .Container.RestartCount }}", "", "2"),
    (
        "{{ .Container.NetworkSettings.Networks.bridge.IPAddress }}",
        "",
        "172.17.0.2",
    ),
    (
        "{{ range $n, $v := .Container.NetworkSettings.Networks }}{{$n}}:{{$v.IPAddress}}{{end}}",
        "",
        "bridge:172.17.0.2",
    ),
    (
        "{{ .Container.Config.Cmd }} {{ .Container.Config.WorkingDir }}",
        "",
        "[nginx -g daemon off;] /srv",
    ),
    (
        r#"{{ .Container.Created.UTC.Format "2006-01-02 15:04:05.000" }}"#,
        "",
        "2021-12-06 15:00:00.123",
    ),
    // JSON lines.
    (
        "{{toJSON .Data}}",
        "say \"hi\" <b>",
        "\"say \\\"hi\\\" \\u003cb\\u003e\"",
    ),
    ("{{toJSON .Container.State.Pid}}", "", "4242"),
    (
        "{{ toJSON .Container.Config.Labels }}",
        "",
        r#"{"com.docker.swarm.service.name":"shop_web","io.kubernetes.pod.name":"web-7d9f","io.kubernetes.pod.namespace":"prod","team":"core"}"#,
    ),
    (
        r#"{"time":"{{ .Time.UTC.Format "2006-01-02T15:04:05.000Z07:00" }}","container":{{ toJSON .Container.Name }},"service":{{ toJSON (index .Container.Config.Labels "com.docker.swarm.service.name") }},"source":"{{ .Source }}","line":{{ toJSON .Data }}}"#,
        "a & b",
        r#"{"time":"2021-12-06T15:04:05.700Z","container":"/shop_web.1.k3j2h1","service":"shop_web","source":"stdout","line":"a \u0026 b"}"#,
    ),
];

#[test]
fn templates_render_as_go_does() {
    for (text, data, expected) in CASES {
        let m = message(Source::Stdout, data);
        assert_eq!(render(text, &m), *expected, "{text}");
    }
}

#[test]
fn source_selects_the_branch() {
    let text = r#"{{ if eq .Source "stderr" }}ERR{{ else }}OUT{{ end }} {{.Priority}}"#;
    assert_eq!(render(text, &message(Source::Stderr, "")), "ERR 11");
    assert_eq!(render(text, &message(Source::Stdout, "")), "OUT 14");
}

#[test]
fn timestamp_is_rfc3339_seconds_in_the_local_zone() {
    if Local::now().offset().local_minus_utc() == 0 {
        let m = message(Source::Stdout, "");
        assert_eq!(render("{{.Timestamp}}", &m), "2021-12-06T15:04:05Z");
        assert_eq!(
            render(r#"{{.Time.Format "2006-01-02T15:04:05Z07:00"}}"#, &m),
            "2021-12-06T15:04:05Z"
        );
    }
}

#[test]
fn the_default_templates_take_the_direct_path() {
    for text in [
        "{{.Data}}\n",
        "{{.Priority}}",
        "{{.Timestamp}}",
        "{{.Container.Config.Hostname}}",
        "{{.ContainerName}}.app",
        "{{.Container.State.Pid}}",
        "{{ toJSON .Data }}\n",
        "{{ index .Container.Config.Labels \"com.docker.swarm.service.name\" }}",
    ] {
        let t = Template::compile("T", text).unwrap();
        assert!(matches!(&t.0.body, Body::Direct(_)), "{text}");
    }
    let t = Template::compile("T", "{{ printf \"%s\" .Data }}").unwrap();
    assert!(matches!(&t.0.body, Body::Tree(_)));
}

/// A run-time error keeps what was rendered before it, is counted, and later lines render.
#[test]
fn run_time_errors_keep_the_output_so_far_and_are_counted() {
    let m = message(Source::Stdout, "hello");
    for (text, before) in [
        (r#"a{{ index (.ContainerNameSplitN "." 2) 5 }}b"#, "a"),
        (r#"x{{ eq .Container.State.Pid "4242" }}"#, "x"),
        ("{{ .Data }}{{ .Data.Foo }}", "hello"),
        ("{{ range 1000000 }}{{ end }}", ""),
        ("{{ index .Container.Config.Labels 3 }}", ""),
        ("{{ lt true false }}", ""),
        (r#"{{ .Time.Format }}"#, ""),
        (
            r#"{{ $x := "ab" }}{{ range 40 }}{{ $x = printf "%s%s" $x $x }}{{ end }}{{ len $x }}"#,
            "",
        ),
    ] {
        let setting = format!("ERR{}", text.len());
        let t = Template::compile(&setting, text).unwrap();
        let counter = ERRORS.with_label_values(&[setting.as_str()]);
        let errors = counter.get();
        assert_eq!(t.render_string(&m), before, "{text}");
        assert_eq!(counter.get(), errors + 1, "{text}");
        assert_eq!(t.render_string(&m), before, "{text}");
    }
}

/// A template that prints in a loop stops at about 1 MiB (the line is still sent).
#[test]
fn output_is_bounded() {
    let t = Template::compile("BIG", r#"{{ range 5000 }}{{ printf "%500d" 1 }}{{ end }}"#).unwrap();
    let out = t.render_string(&message(Source::Stdout, ""));
    assert!(
        ((1 << 20) - 1000..(1 << 20) + 1000).contains(&out.len()),
        "{}",
        out.len()
    );
    let counter = ERRORS.with_label_values(&["BIG"]);
    assert_eq!(counter.get(), 1);
}

#[test]
fn bad_templates_are_errors_naming_the_setting() {
    for text in [
        "{{.Nope}}",
        "{{.Hostname}}",
        "{{ .Container.Nope }}",
        "{{ $.Nope }}",
        "{{ if .Data }}x",
        "{{ end }}",
        "{{ nope .Data }}",
        "{{.Data",
        "{{}}",
        "{{env \"unterminated}}",
        "{{ template \"x\" }}",
        "{{ .Data | 3 }}",
    ] {
        let err = Template::compile("SYSLOG_TAG", text).unwrap_err();
        assert!(
            err.to_string().starts_with("SYSLOG_TAG: bad template"),
            "{text}: {err}"
        );
    }
}

proptest::proptest! {
    /// Hostile templates never panic: compiling returns an error or a template, and rendering
    /// a compiled one finishes.
    #[test]
    fn random_templates_never_panic(text in r#"([{}]{1,3}|[-.$| ()"`',:=]|if|else|end|range|with|\.Data|\.Container|printf|index|len|eq|[a-z0-9%]{1,4}|\PC)*"#) {
        if let Ok(t) = Template::compile("T", &text) {
            let _ = t.render_string(&message(Source::Stdout, "hello"));
        }
    }

    #[test]
    fn random_bytes_never_panic(text in "\\PC*") {
        if let Ok(t) = Template::compile("T", &format!("{{{{{text}}}}}")) {
            let _ = t.render_string(&message(Source::Stderr, "x"));
        }
    }
}
