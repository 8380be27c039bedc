//! Go `text/template` for logspout's format variables (`SYSLOG_TAG`, `RAW_FORMAT`, …): the
//! [`lex`]er, [`parse`]r and [`eval`]uator, Go's [`printf`] and [`gotime`] layouts. Templates
//! made only of text and plain fields (the defaults) take a direct path without the evaluator.

mod eval;
mod gotime;
mod lex;
mod parse;
mod printf;
mod value;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use chrono::{Local, SecondsFormat};
use prometheus::IntCounterVec;

use crate::message::{Message, Source};
use parse::{Arg, Node};

/// Why a template was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: bad template {action:?}: {reason}")]
pub struct TemplateError {
    /// The variable the template came from (`SYSLOG_TAG`).
    pub setting: String,
    /// The offending `{{ … }}` action (or the start of the text if it is malformed).
    pub action: String,
    pub reason: String,
}

/// `logspout_template_errors_total{template}`: executions that failed (the line is still sent,
/// with what was rendered up to the error).
pub static ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        prometheus::Opts::new(
            "logspout_template_errors_total",
            "Template executions that failed at run time (the line is sent with what was rendered before the error)",
        ),
        &["template"],
    )
    .unwrap_or_else(|e| unreachable!("static metric definition: {e}"))
});

/// A value the direct path can print.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Data,
    Source,
    /// `.Timestamp`: RFC 3339, whole seconds, local zone (`Z` for UTC).
    Timestamp,
    /// `.Priority`: 14 for stdout, 11 for stderr.
    Priority,
    /// `.ContainerName`: the name without its leading `/`.
    ContainerName,
    /// `.Container.Name`: with the leading `/`.
    ContainerFullName,
    ContainerId,
    Hostname,
    Image,
    Pid,
    /// `index .Container.Config.Labels "key"` (empty when missing).
    Label(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
    /// `toJSON .Data`.
    JsonData,
}

#[derive(Debug)]
enum Body {
    /// Text and plain fields only.
    Direct(Vec<Part>),
    Tree(Vec<Node>),
}

/// A compiled template (cheap to clone: routes share it).
#[derive(Debug, Clone)]
pub struct Template(Arc<Compiled>);

#[derive(Debug)]
struct Compiled {
    setting: String,
    body: Body,
    /// Whether a run-time error was logged at warn level already (later ones go to debug).
    warned: AtomicBool,
}

impl Template {
    /// Compiles `text`; `setting` names its source in errors.
    pub fn compile(setting: &str, text: &str) -> Result<Self, TemplateError> {
        let error = |(action, reason): (String, String)| TemplateError {
            setting: setting.to_owned(),
            action,
            reason,
        };
        let items = lex::items(text).map_err(error)?;
        let nodes = parse::parse(items).map_err(error)?;
        check(&nodes, true).map_err(|reason| error((text.chars().take(60).collect(), reason)))?;
        let body = match direct(&nodes) {
            Some(parts) => Body::Direct(parts),
            None => Body::Tree(nodes),
        };
        Ok(Self(Arc::new(Compiled {
            setting: setting.into(),
            body,
            warned: AtomicBool::new(false),
        })))
    }

    /// Renders the template for `message`, appending to `out`. A run-time error (an index out
    /// of range, a comparison of a number with a string, …) keeps what was rendered before it,
    /// is counted in [`ERRORS`] and logged (warn once per template, then debug).
    pub fn render(&self, message: &Message, out: &mut Vec<u8>) {
        let this = &self.0;
        let tree = match &this.body {
            Body::Direct(parts) => {
                for part in parts {
                    match part {
                        Part::Text(text) => out.extend_from_slice(text.as_bytes()),
                        Part::Field(field) => write_field(field, message, out),
                        Part::JsonData => value::write_json(
                            &serde_json::Value::String(
                                String::from_utf8_lossy(&message.data).into_owned(),
                            ),
                            out,
                        ),
                    }
                }
                return;
            }
            Body::Tree(nodes) => nodes,
        };
        if let Err(error) = eval::execute(tree, message, out) {
            ERRORS.with_label_values(&[&this.setting]).inc();
            if this.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(template = %this.setting, %error, "template failed");
            } else {
                tracing::warn!(
                    template = %this.setting,
                    %error,
                    "template failed; the line is sent with what was rendered before the error (further failures are logged at debug level and counted in logspout_template_errors_total)"
                );
            }
        }
    }

    /// Renders to a string (invalid UTF-8 in the line becomes U+FFFD).
    pub fn render_string(&self, message: &Message) -> String {
        let mut out = Vec::new();
        self.render(message, &mut out);
        match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

/// The fields of the message (syslog's wrapper methods included) and of the container, as Go
/// names them; a misspelt field there is a start-up error, not a failure at every line.
const MESSAGE_FIELDS: &[&str] = &[
    "Data",
    "Source",
    "Time",
    "Container",
    "Priority",
    "Timestamp",
    "ContainerName",
    "ContainerNameSplitN",
];
const CONTAINER_FIELDS: &[&str] = &[
    "ID",
    "Id",
    "Created",
    "Path",
    "Args",
    "Config",
    "State",
    "Image",
    "Node",
    "NetworkSettings",
    "SysInitPath",
    "ResolvConfPath",
    "HostnamePath",
    "HostsPath",
    "LogPath",
    "Name",
    "Driver",
    "Mounts",
    "Volumes",
    "VolumesRW",
    "HostConfig",
    "ExecIDs",
    "GraphDriver",
    "RestartCount",
    "AppArmorProfile",
    "MountLabel",
    "ProcessLabel",
    "Platform",
    "SizeRw",
    "SizeRootFs",
];

/// Checks the field chains that start at the message (dot at the top level, or `$`).
fn check(nodes: &[Node], top: bool) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(_) | Node::Break | Node::Continue => {}
            Node::Action(pipe) => check_pipe(pipe, top)?,
            Node::If(branches, otherwise) | Node::With(branches, otherwise) => {
                let with = matches!(node, Node::With(..));
                for (pipe, body) in branches {
                    check_pipe(pipe, top)?;
                    check(body, top && !with)?;
                }
                check(otherwise, top)?;
            }
            Node::Range(pipe, body, otherwise) => {
                check_pipe(pipe, top)?;
                check(body, false)?;
                check(otherwise, top)?;
            }
        }
    }
    Ok(())
}

fn check_pipe(pipe: &parse::Pipeline, top: bool) -> Result<(), String> {
    for arg in pipe.cmds.iter().flatten() {
        let chain = match arg {
            Arg::Field(chain) if top => chain,
            Arg::Var(name, chain) if name == "$" => chain,
            Arg::Sub(inner, _) => {
                check_pipe(inner, top)?;
                continue;
            }
            _ => continue,
        };
        match chain.as_slice() {
            [first, ..] if !MESSAGE_FIELDS.contains(&first.as_str()) => {
                return Err(format!(
                    "the message has no field {first} (it has {})",
                    MESSAGE_FIELDS.join(", ")
                ));
            }
            [c, second, ..] if c == "Container" && !CONTAINER_FIELDS.contains(&second.as_str()) => {
                return Err(format!("the container has no field {second}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The direct form of a template made only of text and single plain fields.
fn direct(nodes: &[Node]) -> Option<Vec<Part>> {
    nodes
        .iter()
        .map(|node| match node {
            Node::Text(text) => Some(Part::Text(text.clone())),
            Node::Action(pipe) if pipe.vars.is_empty() => match pipe.cmds.as_slice() {
                [cmd] => match cmd.as_slice() {
                    [Arg::Field(chain)] => plain_field(chain).map(Part::Field),
                    [Arg::Func(f), Arg::Field(chain)] if f == "toJSON" && chain == &["Data"] => {
                        Some(Part::JsonData)
                    }
                    [Arg::Func(f), Arg::Field(chain), Arg::Str(key)]
                        if f == "index" && chain == &["Container", "Config", "Labels"] =>
                    {
                        Some(Part::Field(Field::Label(key.clone())))
                    }
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn plain_field(chain: &[String]) -> Option<Field> {
    let names: Vec<&str> = chain.iter().map(String::as_str).collect();
    Some(match names.as_slice() {
        ["Data"] => Field::Data,
        ["Source"] => Field::Source,
        ["Timestamp"] => Field::Timestamp,
        ["Priority"] => Field::Priority,
        ["ContainerName"] => Field::ContainerName,
        ["Container", "Name"] => Field::ContainerFullName,
        ["Container", "ID"] => Field::ContainerId,
        ["Container", "Config", "Hostname"] => Field::Hostname,
        ["Container", "Config", "Image"] => Field::Image,
        ["Container", "State", "Pid"] => Field::Pid,
        _ => return None,
    })
}

/// The syslog priority of a line: LOG_USER|LOG_INFO for stdout, LOG_USER|LOG_ERR for stderr.
pub fn priority(source: Source) -> u8 {
    match source {
        Source::Stdout => 14,
        Source::Stderr => 11,
    }
}

/// Go's `time.RFC3339` in the local zone: whole seconds, `Z` when the zone is UTC.
pub fn rfc3339_seconds(message: &Message) -> String {
    message
        .time
        .with_timezone(&Local)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn write_field(field: &Field, m: &Message, out: &mut Vec<u8>) {
    let c = &m.container;
    match field {
        Field::Data => out.extend_from_slice(&m.data),
        Field::Source => out.extend_from_slice(m.source.as_str().as_bytes()),
        Field::Timestamp => out.extend_from_slice(rfc3339_seconds(m).as_bytes()),
        Field::Priority => out.extend_from_slice(priority(m.source).to_string().as_bytes()),
        Field::ContainerName => out.extend_from_slice(c.bare_name().as_bytes()),
        Field::ContainerFullName => out.extend_from_slice(c.name.as_bytes()),
        Field::ContainerId => out.extend_from_slice(c.id.as_bytes()),
        Field::Hostname => out.extend_from_slice(c.hostname.as_bytes()),
        Field::Image => out.extend_from_slice(c.image.as_bytes()),
        Field::Pid => out.extend_from_slice(c.pid.to_string().as_bytes()),
        Field::Label(key) => {
            out.extend_from_slice(c.labels.get(key).map_or("", String::as_str).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
