//! The values a template works with — borrowed from the message and the container where they
//! can be — and how Go prints them (`fmt.Print`), tests them (`if`) and marshals them (`toJSON`).

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, SecondsFormat};

use super::gotime;
use crate::message::{ContainerInfo, Message};

/// Whether a JSON object of the inspect result is a Go struct or a Go map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Obj {
    Struct,
    Map,
}

#[derive(Debug, Clone)]
pub(super) enum Value<'a> {
    /// A missing map key or field (`<no value>`).
    Missing,
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Go strings are bytes (a line need not be UTF-8).
    Str(Cow<'a, [u8]>),
    Time(DateTime<FixedOffset>),
    List(Vec<Value<'a>>),
    Strs(&'a [String]),
    Labels(&'a HashMap<String, String>),
    Json(&'a serde_json::Value, Obj),
    Message(&'a Message),
    Container(&'a ContainerInfo),
    Config(&'a ContainerInfo),
    State(&'a ContainerInfo),
}

impl<'a> Value<'a> {
    pub(super) fn str(s: &'a str) -> Self {
        Self::Str(Cow::Borrowed(s.as_bytes()))
    }

    pub(super) fn owned(s: String) -> Self {
        Self::Str(Cow::Owned(s.into_bytes()))
    }

    /// A JSON value of the inspect result as a template value (objects stay borrowed).
    pub(super) fn from_json(v: &'a serde_json::Value, kind: Obj) -> Self {
        use serde_json::Value as J;
        match v {
            J::Null => Self::Nil,
            J::Bool(b) => Self::Bool(*b),
            J::Number(n) => n
                .as_i64()
                .map(Self::Int)
                .unwrap_or_else(|| Self::Float(n.as_f64().unwrap_or(0.0))),
            J::String(s) => Self::str(s),
            J::Array(_) | J::Object(_) => Self::Json(v, kind),
        }
    }

    /// Go's truth: false, 0, nil, empty strings, slices and maps are false; structs are true.
    pub(super) fn truth(&self) -> bool {
        match self {
            Self::Missing | Self::Nil => false,
            Self::Bool(b) => *b,
            Self::Int(n) => *n != 0,
            Self::Float(f) => *f != 0.0,
            Self::Str(s) => !s.is_empty(),
            Self::List(l) => !l.is_empty(),
            Self::Strs(l) => !l.is_empty(),
            Self::Labels(m) => !m.is_empty(),
            Self::Json(serde_json::Value::Array(a), _) => !a.is_empty(),
            Self::Json(serde_json::Value::Object(o), Obj::Map) => !o.is_empty(),
            Self::Json(..)
            | Self::Time(_)
            | Self::Message(_)
            | Self::Container(_)
            | Self::Config(_)
            | Self::State(_) => true,
        }
    }

    /// Go's type name, as `printf` shows it in `%!d(string=x)`.
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Self::Missing | Self::Nil => "<nil>",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float64",
            Self::Str(_) => "string",
            Self::Time(_) => "time.Time",
            Self::List(_) => "[]interface {}",
            Self::Strs(_) => "[]string",
            Self::Labels(_) => "map[string]string",
            Self::Json(serde_json::Value::Array(_), _) => "[]interface {}",
            Self::Json(_, Obj::Map) => "map[string]interface {}",
            Self::Json(..) => "struct",
            Self::Message(_) => "*router.Message",
            Self::Container(_) => "*docker.Container",
            Self::Config(_) => "*docker.Config",
            Self::State(_) => "docker.State",
        }
    }

    /// `fmt.Print` of the value.
    pub(super) fn print(&self, out: &mut Vec<u8>) {
        match self {
            Self::Missing => out.extend_from_slice(b"<no value>"),
            Self::Nil => out.extend_from_slice(b"<nil>"),
            Self::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Self::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Self::Float(f) => out.extend_from_slice(go_float(*f).as_bytes()),
            Self::Str(s) => out.extend_from_slice(s),
            Self::Time(t) => gotime::string(t, out),
            Self::List(items) => list(out, items.iter().cloned()),
            Self::Strs(items) => list(out, items.iter().map(|s| Value::str(s))),
            Self::Labels(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.extend_from_slice(b"map[");
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(k.as_bytes());
                    out.push(b':');
                    out.extend_from_slice(map[k].as_bytes());
                }
                out.push(b']');
            }
            Self::Json(serde_json::Value::Array(a), _) => {
                list(out, a.iter().map(|v| Value::from_json(v, Obj::Struct)))
            }
            Self::Json(serde_json::Value::Object(o), kind) => {
                out.extend_from_slice(if *kind == Obj::Map { b"map[" } else { b"{" });
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    if *kind == Obj::Map {
                        out.extend_from_slice(k.as_bytes());
                        out.push(b':');
                    }
                    Value::from_json(v, Obj::Struct).print(out);
                }
                out.push(if *kind == Obj::Map { b']' } else { b'}' });
            }
            Self::Json(v, _) => Value::from_json(v, Obj::Struct).print(out),
            Self::Message(m) => {
                out.extend_from_slice(b"&{");
                Value::Container(&m.container).print(out);
                out.push(b' ');
                out.extend_from_slice(m.source.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(&m.data);
                out.push(b' ');
                gotime::string(&local(m), out);
                out.push(b'}');
            }
            Self::Container(c) => pair(out, &c.id, &c.name),
            Self::Config(c) => pair(out, &c.hostname, &c.image),
            Self::State(c) => {
                out.push(b'{');
                out.extend_from_slice(c.pid.to_string().as_bytes());
                out.push(b'}');
            }
        }
    }

    /// Go's `json.Marshal` of the value (HTML-safe, as Go escapes).
    pub(super) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Self::Missing | Self::Nil => J::Null,
            Self::Bool(b) => J::Bool(*b),
            Self::Int(n) => J::from(*n),
            Self::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Self::Str(s) => J::String(String::from_utf8_lossy(s).into_owned()),
            Self::Time(t) => J::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Self::List(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Self::Strs(items) => J::Array(items.iter().map(|s| J::String(s.clone())).collect()),
            Self::Labels(map) => J::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), J::String(v.clone())))
                    .collect(),
            ),
            Self::Json(v, _) => (*v).clone(),
            Self::Message(m) => serde_json::json!({
                "Container": Value::Container(&m.container).to_json(),
                "Source": m.source.as_str(),
                "Data": String::from_utf8_lossy(&m.data),
                "Time": Value::Time(local(m)).to_json(),
            }),
            Self::Container(c) => {
                let mut v = c.inspect_value.as_ref().clone();
                if !v.is_object() {
                    v = J::Object(serde_json::Map::new());
                }
                v["Id"] = J::String(c.id.clone());
                v["Name"] = J::String(c.name.clone());
                v["Config"] = Value::Config(c).to_json();
                v["State"] = Value::State(c).to_json();
                v
            }
            Self::Config(c) => {
                let mut v = c.inspect_value.get("Config").cloned().unwrap_or_default();
                if !v.is_object() {
                    v = J::Object(serde_json::Map::new());
                }
                v["Hostname"] = J::String(c.hostname.clone());
                v["Image"] = J::String(c.image.clone());
                v["Labels"] = Value::Labels(&c.labels).to_json();
                v["Env"] = Value::Strs(&c.env).to_json();
                v
            }
            Self::State(c) => {
                let mut v = c.inspect_value.get("State").cloned().unwrap_or_default();
                if !v.is_object() {
                    v = J::Object(serde_json::Map::new());
                }
                v["Pid"] = J::from(c.pid);
                v
            }
        }
    }
}

/// The message's time in the process's zone, as the original's `time.Now()` was.
pub(super) fn local(m: &Message) -> DateTime<FixedOffset> {
    m.time.with_timezone(&chrono::Local).fixed_offset()
}

/// `&{a b}`: a pointer to a struct, shown by two of its fields (Go prints all of them).
fn pair(out: &mut Vec<u8>, a: &str, b: &str) {
    out.extend_from_slice(b"&{");
    out.extend_from_slice(a.as_bytes());
    out.push(b' ');
    out.extend_from_slice(b.as_bytes());
    out.push(b'}');
}

fn list<'a>(out: &mut Vec<u8>, items: impl Iterator<Item = Value<'a>>) {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        item.print(out);
    }
    out.push(b']');
}

/// Go's `%v` of a float64: shortest representation, exponent form below 1e-4 and from 1e21.
pub(super) fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format!("{f}")
}

/// Go's `json.Marshal` escaping on top of serde's: `<`, `>`, `&`, U+2028 and U+2029.
pub(super) fn write_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    for ch in value.to_string().chars() {
        match ch {
            '<' => out.extend_from_slice(b"\\u003c"),
            '>' => out.extend_from_slice(b"\\u003e"),
            '&' => out.extend_from_slice(b"\\u0026"),
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            other => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_go() {
        for (f, go) in [
            (1.5, "1.5"),
            (100.0, "100"),
            (1e21, "1e+21"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (0.0, "0"),
        ] {
            assert_eq!(go_float(f), go);
        }
    }
}
