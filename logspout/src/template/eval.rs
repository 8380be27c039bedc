//! Executes a parsed template for one message: fields and methods of the message, the
//! container and `Time`, variables, `if`/`with`/`range`, pipelines and the built-in functions.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::gotime;
use super::parse::{Arg, Node, Pipeline};
use super::printf::sprintf;
use super::value::{Obj, Value, local, write_json};
use crate::message::{ContainerInfo, Message};

/// Runs `nodes` for `message`, appending to `out`; output written before an error stays.
pub(super) fn execute(nodes: &[Node], message: &Message, out: &mut Vec<u8>) -> Result<(), String> {
    let mut exec = Exec {
        message,
        vars: vec![("$", Value::Message(message))],
        start: out.len(),
        out,
        steps: 0,
        made: 0,
    };
    let root = Value::Message(message);
    exec.walk(nodes, &root).map(|_| ())
}

/// Range iterations and nodes walked per execution before giving up (a huge `range` over an
/// integer would otherwise stall the route).
const MAX_STEPS: usize = 10_000;

/// Bytes one execution may print, and may make in function results: a template that doubles a
/// string in a loop fails instead of eating memory.
const MAX_BYTES: usize = 1 << 20;

enum Flow {
    Normal,
    Break,
    Continue,
}

struct Exec<'a, 'o> {
    message: &'a Message,
    vars: Vec<(&'a str, Value<'a>)>,
    out: &'o mut Vec<u8>,
    /// Where this execution's output starts in `out`.
    start: usize,
    steps: usize,
    /// Bytes of strings made by functions (`printf`, `toJSON`, …) so far.
    made: usize,
}

type R<T> = Result<T, String>;

impl<'a> Exec<'a, '_> {
    fn walk(&mut self, nodes: &'a [Node], dot: &Value<'a>) -> R<Flow> {
        let mark = self.vars.len();
        let flow = self.walk_inner(nodes, dot);
        self.vars.truncate(mark);
        flow
    }

    fn walk_inner(&mut self, nodes: &'a [Node], dot: &Value<'a>) -> R<Flow> {
        for node in nodes {
            self.step()?;
            if self.out.len() - self.start > MAX_BYTES {
                return Err("template output larger than 1 MiB".into());
            }
            match node {
                Node::Text(text) => self.out.extend_from_slice(text.as_bytes()),
                Node::Action(pipe) => {
                    let value = self.pipeline(pipe, dot)?;
                    if pipe.vars.is_empty() {
                        value.print(self.out);
                    }
                }
                Node::If(branches, otherwise) | Node::With(branches, otherwise) => {
                    let with = matches!(node, Node::With(..));
                    let mut taken = false;
                    for (pipe, body) in branches {
                        let value = self.pipeline(pipe, dot)?;
                        if value.truth() {
                            let flow = if with {
                                self.walk(body, &value)?
                            } else {
                                self.walk(body, dot)?
                            };
                            if !matches!(flow, Flow::Normal) {
                                return Ok(flow);
                            }
                            taken = true;
                            break;
                        }
                    }
                    if !taken {
                        let flow = self.walk(otherwise, dot)?;
                        if !matches!(flow, Flow::Normal) {
                            return Ok(flow);
                        }
                    }
                }
                Node::Range(pipe, body, otherwise) => {
                    let mark = self.vars.len();
                    let value = self.commands(&pipe.cmds, dot)?;
                    let items = elements(&value)?;
                    if items.is_empty() {
                        self.walk(otherwise, dot)?;
                    }
                    for (key, item) in items {
                        self.step()?;
                        match pipe.vars.as_slice() {
                            [v] => self.vars.push((v, item.clone())),
                            [k, v] => {
                                self.vars.push((k, key));
                                self.vars.push((v, item.clone()));
                            }
                            _ => {}
                        }
                        let flow = self.walk(body, &item)?;
                        self.vars.truncate(mark);
                        if matches!(flow, Flow::Break) {
                            break;
                        }
                    }
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn commands(&mut self, cmds: &'a [Vec<Arg>], dot: &Value<'a>) -> R<Value<'a>> {
        let mut value = None;
        for cmd in cmds {
            value = Some(self.command(cmd, dot, value)?);
        }
        Ok(value.unwrap_or(Value::Missing))
    }

    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(format!(
                "template too expensive: more than {MAX_STEPS} steps"
            ));
        }
        Ok(())
    }

    fn pipeline(&mut self, pipe: &'a Pipeline, dot: &Value<'a>) -> R<Value<'a>> {
        let value = self.commands(&pipe.cmds, dot)?;
        for name in &pipe.vars {
            if pipe.assign {
                let slot = self
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| format!("undefined variable: {name}"))?;
                slot.1 = value.clone();
            } else {
                self.vars.push((name, value.clone()));
            }
        }
        Ok(value)
    }

    fn command(
        &mut self,
        cmd: &'a [Arg],
        dot: &Value<'a>,
        last: Option<Value<'a>>,
    ) -> R<Value<'a>> {
        let (first, rest) = cmd.split_first().ok_or("empty command")?;
        match first {
            Arg::Func(name) if name == "and" || name == "or" => {
                let and = name == "and";
                let mut value = Value::Missing;
                if rest.is_empty() && last.is_none() {
                    return Err(format!(
                        "wrong number of args for {name}: want at least 1 got 0"
                    ));
                }
                for arg in rest {
                    value = self.arg(arg, dot)?;
                    if value.truth() != and {
                        return Ok(value);
                    }
                }
                Ok(last.unwrap_or(value))
            }
            Arg::Func(name) => {
                let mut args = Vec::with_capacity(rest.len() + 1);
                for arg in rest {
                    args.push(self.arg(arg, dot)?);
                }
                args.extend(last);
                let value = call(name, args, self.message)?;
                if let Value::Str(Cow::Owned(s)) = &value {
                    self.made += s.len();
                    if self.made > MAX_BYTES {
                        return Err("template made more than 1 MiB of strings".into());
                    }
                }
                Ok(value)
            }
            Arg::Field(chain) | Arg::Var(_, chain) | Arg::Sub(_, chain)
                if !chain.is_empty() && (!rest.is_empty() || last.is_some()) =>
            {
                let (head, method) = chain.split_at(chain.len() - 1);
                let receiver = self.chain(first, head, dot)?;
                let mut args = Vec::with_capacity(rest.len() + 1);
                for arg in rest {
                    args.push(self.arg(arg, dot)?);
                }
                args.extend(last);
                field(receiver, &method[0], args)
            }
            _ if !rest.is_empty() || last.is_some() => {
                Err("can't give argument to non-function".into())
            }
            _ => self.arg(first, dot),
        }
    }

    fn chain(&mut self, arg: &'a Arg, chain: &'a [String], dot: &Value<'a>) -> R<Value<'a>> {
        let mut value = match arg {
            Arg::Field(_) => dot.clone(),
            Arg::Var(name, _) => self.var(name)?,
            Arg::Sub(pipe, _) => self.pipeline(pipe, dot)?,
            _ => return Err("fields of a constant".into()),
        };
        for name in chain {
            value = field(value, name, Vec::new())?;
        }
        Ok(value)
    }

    fn var(&self, name: &str) -> R<Value<'a>> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("undefined variable: {name}"))
    }

    fn arg(&mut self, arg: &'a Arg, dot: &Value<'a>) -> R<Value<'a>> {
        Ok(match arg {
            Arg::Field(chain) | Arg::Var(_, chain) | Arg::Sub(_, chain) => {
                self.chain(arg, chain, dot)?
            }
            Arg::Func(name) => self
                .command(std::slice::from_ref(arg), dot, None)
                .map_err(|e| format!("{name}: {e}"))?,
            Arg::Str(s) => Value::str(s),
            Arg::Int(n) => Value::Int(*n),
            Arg::Float(f) => Value::Float(*f),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Nil,
        })
    }
}

/// What `range` iterates: (key, element) pairs; maps sorted by key as Go does.
fn elements<'a>(value: &Value<'a>) -> R<Vec<(Value<'a>, Value<'a>)>> {
    Ok(match value {
        Value::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (Value::Int(i as i64), v.clone()))
            .collect(),
        Value::Strs(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (Value::Int(i as i64), Value::str(v)))
            .collect(),
        Value::Labels(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            keys.into_iter()
                .map(|k| (Value::str(k), Value::str(&map[k])))
                .collect()
        }
        Value::Json(serde_json::Value::Array(a), _) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (Value::Int(i as i64), Value::from_json(v, Obj::Struct)))
            .collect(),
        Value::Json(serde_json::Value::Object(o), Obj::Map) => o
            .iter()
            .map(|(k, v)| (Value::str(k), Value::from_json(v, Obj::Struct)))
            .collect(),
        Value::Int(n) if *n >= 0 => (0..(*n).min(MAX_STEPS as i64 + 1))
            .map(|i| (Value::Int(i), Value::Int(i)))
            .collect(),
        Value::Missing | Value::Nil => Vec::new(),
        other => return Err(format!("range can't iterate over {}", other.type_name())),
    })
}

/// Inspect fields that are Go maps (printed `map[k:v]`, ranged by key) rather than structs.
const MAP_FIELDS: &[&str] = &[
    "Labels",
    "ExposedPorts",
    "Volumes",
    "Networks",
    "Ports",
    "PortBindings",
    "Sysctls",
    "StorageOpt",
    "Tmpfs",
    "Data",
    "DriverOpts",
    "Options",
    "Annotations",
];

/// Inspect fields that are Go `time.Time`.
const TIME_FIELDS: &[&str] = &["Created", "StartedAt", "FinishedAt", "Start", "End"];

fn json_field<'a>(json: &'a serde_json::Value, name: &str) -> Value<'a> {
    let found = json
        .get(name)
        .or_else(|| (name == "ID").then(|| json.get("Id")).flatten());
    match found {
        None => Value::Missing,
        Some(serde_json::Value::String(s)) if TIME_FIELDS.contains(&name) => {
            chrono::DateTime::parse_from_rfc3339(s).map_or(Value::str(s), Value::Time)
        }
        Some(v) => Value::from_json(
            v,
            if MAP_FIELDS.contains(&name) {
                Obj::Map
            } else {
                Obj::Struct
            },
        ),
    }
}

fn no_args(name: &str, args: &[Value<'_>]) -> R<()> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{name} has arguments but cannot be invoked as function"
        ))
    }
}

/// `receiver.name`, with `args` for methods (`.Time.Format "…"`, `.ContainerNameSplitN`).
fn field<'a>(receiver: Value<'a>, name: &str, args: Vec<Value<'a>>) -> R<Value<'a>> {
    let c: &'a ContainerInfo;
    let value = match receiver {
        Value::Message(m) => return message_field(m, name, args),
        Value::Time(t) => return time_method(t, name, args),
        Value::Container(info) => {
            c = info;
            match name {
                "ID" | "Id" => Value::str(&c.id),
                "Name" => Value::str(&c.name),
                "Config" => Value::Config(c),
                "State" => Value::State(c),
                _ => json_field(&c.inspect_value, name),
            }
        }
        Value::Config(info) => {
            c = info;
            match name {
                "Hostname" => Value::str(&c.hostname),
                "Image" => Value::str(&c.image),
                "Labels" => Value::Labels(&c.labels),
                "Env" => Value::Strs(&c.env),
                "Tty" => Value::Bool(c.tty),
                _ => c
                    .inspect_value
                    .get("Config")
                    .map_or(Value::Missing, |cfg| json_field(cfg, name)),
            }
        }
        Value::State(info) => {
            c = info;
            match name {
                "Pid" => Value::Int(c.pid),
                _ => c
                    .inspect_value
                    .get("State")
                    .map_or(Value::Missing, |s| json_field(s, name)),
            }
        }
        Value::Labels(map) => map.get(name).map_or(Value::Missing, |v| Value::str(v)),
        Value::Json(json @ serde_json::Value::Object(_), _) => json_field(json, name),
        other => {
            return Err(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            ));
        }
    };
    no_args(name, &args)?;
    Ok(value)
}

fn message_field<'a>(m: &'a Message, name: &str, args: Vec<Value<'a>>) -> R<Value<'a>> {
    let value = match name {
        "ContainerNameSplitN" => {
            let [sep, n] = args.as_slice() else {
                return Err(format!(
                    "wrong number of args for ContainerNameSplitN: want 2 got {}",
                    args.len()
                ));
            };
            let (Value::Str(sep), Value::Int(n)) = (sep, n) else {
                return Err("ContainerNameSplitN wants a string and an int".into());
            };
            let sep = String::from_utf8_lossy(sep);
            return Ok(Value::List(split_n(m.container.bare_name(), &sep, *n)));
        }
        "Data" => Value::Str(Cow::Borrowed(&m.data)),
        "Source" => Value::str(m.source.as_str()),
        "Time" => Value::Time(local(m)),
        "Container" => Value::Container(&m.container),
        "Priority" => Value::Int(super::priority(m.source).into()),
        "Timestamp" => Value::owned(super::rfc3339_seconds(m)),
        "ContainerName" => Value::str(m.container.bare_name()),
        _ => {
            return Err(format!(
                "can't evaluate field {name} in type *router.Message"
            ));
        }
    };
    no_args(name, &args)?;
    Ok(value)
}

/// Go's `strings.SplitN`.
fn split_n<'a>(s: &'a str, sep: &str, n: i64) -> Vec<Value<'a>> {
    if n == 0 {
        return Vec::new();
    }
    let parts: Vec<&'a str> = match (sep.is_empty(), n < 0) {
        (true, true) => s
            .char_indices()
            .map(|(i, c)| &s[i..i + c.len_utf8()])
            .collect(),
        (true, false) => {
            let mut parts: Vec<&str> = Vec::new();
            let mut rest = s;
            while let Some(c) = rest.chars().next() {
                if parts.len() as i64 == n - 1 {
                    break;
                }
                parts.push(&rest[..c.len_utf8()]);
                rest = &rest[c.len_utf8()..];
            }
            if !rest.is_empty() {
                parts.push(rest);
            }
            parts
        }
        (false, true) => s.split(sep).collect(),
        (false, false) => s
            .splitn(usize::try_from(n).unwrap_or(usize::MAX), sep)
            .collect(),
    };
    parts.into_iter().map(Value::str).collect()
}

fn time_method<'a>(
    t: chrono::DateTime<chrono::FixedOffset>,
    name: &str,
    args: Vec<Value<'a>>,
) -> R<Value<'a>> {
    use chrono::{Datelike, Timelike};
    if name == "Format" {
        let [Value::Str(layout)] = args.as_slice() else {
            return Err("Format wants one string argument".into());
        };
        let mut out = Vec::new();
        gotime::format(&t, &String::from_utf8_lossy(layout), &mut out);
        return Ok(Value::Str(Cow::Owned(out)));
    }
    no_args(name, &args)?;
    Ok(match name {
        "Unix" => Value::Int(t.timestamp()),
        "UnixMilli" => Value::Int(t.timestamp_millis()),
        "UnixMicro" => Value::Int(t.timestamp_micros()),
        "UnixNano" => Value::Int(t.timestamp_nanos_opt().unwrap_or(0)),
        "UTC" => Value::Time(t.to_utc().fixed_offset()),
        "Local" => Value::Time(t.with_timezone(&chrono::Local).fixed_offset()),
        "Year" => Value::Int(t.year().into()),
        "Month" => Value::str(gotime::month(&t)),
        "Day" => Value::Int(t.day().into()),
        "Hour" => Value::Int(t.hour().into()),
        "Minute" => Value::Int(t.minute().into()),
        "Second" => Value::Int(t.second().into()),
        "Nanosecond" => Value::Int((t.nanosecond() % 1_000_000_000).into()),
        "YearDay" => Value::Int(t.ordinal().into()),
        "Weekday" => Value::str(gotime::weekday(&t)),
        "String" => {
            let mut out = Vec::new();
            gotime::string(&t, &mut out);
            Value::Str(Cow::Owned(out))
        }
        _ => return Err(format!("can't evaluate field {name} in type time.Time")),
    })
}

fn want(name: &str, args: &[Value<'_>], n: usize) -> R<()> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ))
    }
}

fn call<'a>(name: &str, mut args: Vec<Value<'a>>, m: &'a Message) -> R<Value<'a>> {
    Ok(match name {
        "not" => {
            want(name, &args, 1)?;
            Value::Bool(!args[0].truth())
        }
        "len" => {
            want(name, &args, 1)?;
            Value::Int(length(&args[0])? as i64)
        }
        "index" => {
            let mut items = args.into_iter();
            let mut value = items
                .next()
                .ok_or("wrong number of args for index: want at least 1 got 0")?;
            for key in items {
                value = index(value, &key)?;
            }
            value
        }
        "slice" => {
            let mut items = args.into_iter();
            let value = items
                .next()
                .ok_or("wrong number of args for slice: want at least 1 got 0")?;
            let bounds: Vec<usize> = items
                .map(|v| match v {
                    Value::Int(n) if n >= 0 => Ok(n as usize),
                    _ => Err("slice index must be a non-negative integer".to_string()),
                })
                .collect::<R<_>>()?;
            slice(value, &bounds)?
        }
        "print" | "println" => {
            let mut out = Vec::new();
            for (i, arg) in args.iter().enumerate() {
                let is_str = |v: &Value<'_>| matches!(v, Value::Str(_));
                if i > 0 && (name == "println" || !(is_str(arg) || is_str(&args[i - 1]))) {
                    out.push(b' ');
                }
                arg.print(&mut out);
            }
            if name == "println" {
                out.push(b'\n');
            }
            Value::Str(Cow::Owned(out))
        }
        "printf" => {
            if args.is_empty() {
                return Err("wrong number of args for printf: want at least 1 got 0".into());
            }
            let format = match args.remove(0) {
                Value::Str(s) => s,
                other => {
                    return Err(format!(
                        "printf wants a format string, got {}",
                        other.type_name()
                    ));
                }
            };
            let mut out = Vec::new();
            sprintf(&format, &args, &mut out);
            Value::Str(Cow::Owned(out))
        }
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            let mut any = false;
            for other in &args[1..] {
                if compare(&args[0], other)? == Ordering::Equal {
                    any = true;
                    break;
                }
            }
            Value::Bool(any)
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want(name, &args, 2)?;
            if name != "ne" && !matches!(args[0], Value::Int(_) | Value::Float(_) | Value::Str(_)) {
                return Err(format!(
                    "invalid type for comparison: {}",
                    args[0].type_name()
                ));
            }
            let ord = compare(&args[0], &args[1])?;
            Value::Bool(match name {
                "ne" => ord != Ordering::Equal,
                "lt" => ord == Ordering::Less,
                "le" => ord != Ordering::Greater,
                "gt" => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            })
        }
        "toJSON" => {
            want(name, &args, 1)?;
            let mut out = Vec::new();
            write_json(&args[0].to_json(), &mut out);
            Value::Str(Cow::Owned(out))
        }
        "env" => {
            want(name, &args, 1)?;
            let Value::Str(key) = &args[0] else {
                return Err("env wants a string".into());
            };
            let key = String::from_utf8_lossy(key);
            Value::str(m.container.env_var(&key).unwrap_or(""))
        }
        other => return Err(format!("function {other:?} not defined")),
    })
}

fn length(v: &Value<'_>) -> R<usize> {
    Ok(match v {
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        Value::Strs(l) => l.len(),
        Value::Labels(m) => m.len(),
        Value::Json(serde_json::Value::Array(a), _) => a.len(),
        Value::Json(serde_json::Value::Object(o), Obj::Map) => o.len(),
        other => return Err(format!("len of type {}", other.type_name())),
    })
}

fn index<'a>(value: Value<'a>, key: &Value<'_>) -> R<Value<'a>> {
    let position = |len: usize| match key {
        Value::Int(i) if *i >= 0 && (*i as usize) < len => Ok(*i as usize),
        Value::Int(i) => Err(format!("error calling index: index out of range: {i}")),
        other => Err(format!(
            "cannot index slice/array with type {}",
            other.type_name()
        )),
    };
    let name = |key: &Value<'_>| match key {
        Value::Str(s) => Ok(String::from_utf8_lossy(s).into_owned()),
        other => Err(format!(
            "value has type {}; should be string",
            other.type_name()
        )),
    };
    Ok(match value {
        Value::List(items) => {
            let i = position(items.len())?;
            items.into_iter().nth(i).unwrap_or(Value::Missing)
        }
        Value::Strs(items) => Value::str(&items[position(items.len())?]),
        Value::Str(s) => Value::Int(s[position(s.len())?].into()),
        Value::Json(serde_json::Value::Array(a), _) => {
            Value::from_json(&a[position(a.len())?], Obj::Struct)
        }
        Value::Labels(map) => Value::str(map.get(&name(key)?).map_or("", String::as_str)),
        Value::Json(serde_json::Value::Object(o), Obj::Map) => o
            .get(&name(key)?)
            .map_or(Value::Nil, |v| Value::from_json(v, Obj::Struct)),
        Value::Missing | Value::Nil => return Err("index of untyped nil".into()),
        other => return Err(format!("can't index item of type {}", other.type_name())),
    })
}

fn slice<'a>(value: Value<'a>, bounds: &[usize]) -> R<Value<'a>> {
    let range = |len: usize| -> R<(usize, usize)> {
        let (start, end) = match bounds {
            [] => (0, len),
            [i] => (*i, len),
            [i, j] => (*i, *j),
            _ => return Err("too many slice indexes".into()),
        };
        if start > end || end > len {
            return Err(format!("index out of range: {start}:{end} of {len}"));
        }
        Ok((start, end))
    };
    Ok(match value {
        Value::Str(Cow::Borrowed(s)) => {
            let (i, j) = range(s.len())?;
            Value::Str(Cow::Borrowed(&s[i..j]))
        }
        Value::Str(Cow::Owned(s)) => {
            let (i, j) = range(s.len())?;
            Value::Str(Cow::Owned(s[i..j].to_vec()))
        }
        Value::List(items) => {
            let (i, j) = range(items.len())?;
            Value::List(items[i..j].to_vec())
        }
        Value::Strs(items) => {
            let (i, j) = range(items.len())?;
            Value::Strs(&items[i..j])
        }
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    })
}

/// Go's comparison of basic kinds (`eq` also compares nil with nil).
fn compare(a: &Value<'_>, b: &Value<'_>) -> R<Ordering> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Less),
        (Value::Str(x), Value::Str(y)) => x.as_ref().cmp(y.as_ref()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Nil | Value::Missing, Value::Nil | Value::Missing) => Ordering::Equal,
        (Value::Time(x), Value::Time(y)) => x.cmp(y),
        _ if std::mem::discriminant(a) == std::mem::discriminant(b) => {
            return Err(format!("non-comparable type {}", a.type_name()));
        }
        _ => return Err("incompatible types for comparison".into()),
    })
}
