//! Go's `fmt.Sprintf` for template values: the verbs `%v %s %q %d %x %X %o %b %c %f %e %g %t`,
//! flags `-+0 #`, width and precision, and Go's `%!d(string=x)` / `%!s(MISSING)` notes.

use super::value::{Value, go_float};

pub(super) fn sprintf(format: &[u8], args: &[Value<'_>], out: &mut Vec<u8>) {
    let mut next = 0;
    let mut i = 0;
    while i < format.len() {
        let c = format[i];
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut spec = Spec::default();
        while let Some(&f) = format.get(i) {
            match f {
                b'-' => spec.minus = true,
                b'+' => spec.plus = true,
                b'0' => spec.zero = true,
                b' ' => spec.space = true,
                b'#' => spec.sharp = true,
                _ => break,
            }
            i += 1;
        }
        spec.width = digits(format, &mut i);
        if format.get(i) == Some(&b'.') {
            i += 1;
            spec.precision = Some(digits(format, &mut i).unwrap_or(0));
        }
        let Some(&verb) = format.get(i) else {
            out.extend_from_slice(b"%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == b'%' {
            out.push(b'%');
            continue;
        }
        match args.get(next) {
            Some(arg) => {
                next += 1;
                verb_of(verb, &spec, arg, out);
            }
            None => {
                out.extend_from_slice(b"%!");
                out.push(verb);
                out.extend_from_slice(b"(MISSING)");
            }
        }
    }
    if next < args.len() {
        out.extend_from_slice(b"%!(EXTRA ");
        for (n, arg) in args[next..].iter().enumerate() {
            if n > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(arg.type_name().as_bytes());
            out.push(b'=');
            arg.print(out);
        }
        out.push(b')');
    }
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

fn digits(format: &[u8], i: &mut usize) -> Option<usize> {
    let start = *i;
    while format.get(*i).is_some_and(u8::is_ascii_digit) {
        *i += 1;
    }
    std::str::from_utf8(&format[start..*i])
        .ok()?
        .parse()
        .ok()
        .map(|n: usize| n.min(1 << 16))
}

fn verb_of(verb: u8, spec: &Spec, arg: &Value<'_>, out: &mut Vec<u8>) {
    let body: Vec<u8> = match (verb, arg) {
        (b'v' | b's', Value::Str(s)) => truncate(s, spec.precision),
        (b'v', _) | (b's', Value::Time(_) | Value::List(_) | Value::Strs(_) | Value::Labels(_)) => {
            let mut v = Vec::new();
            arg.print(&mut v);
            truncate(&v, spec.precision)
        }
        (b'q', Value::Str(s)) => quote(&String::from_utf8_lossy(s)).into_bytes(),
        (b'd', Value::Int(n)) => signed(*n, spec, n.unsigned_abs().to_string()),
        (b'x', Value::Int(n)) => signed(*n, spec, format!("{:x}", n.unsigned_abs())),
        (b'X', Value::Int(n)) => signed(*n, spec, format!("{:X}", n.unsigned_abs())),
        (b'o', Value::Int(n)) => signed(*n, spec, format!("{:o}", n.unsigned_abs())),
        (b'b', Value::Int(n)) => signed(*n, spec, format!("{:b}", n.unsigned_abs())),
        (b'x', Value::Str(s)) => s
            .iter()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect(),
        (b'X', Value::Str(s)) => s
            .iter()
            .flat_map(|b| format!("{b:02X}").into_bytes())
            .collect(),
        (b'c', Value::Int(n)) => u32::try_from(*n)
            .ok()
            .and_then(char::from_u32)
            .unwrap_or('\u{FFFD}')
            .to_string()
            .into_bytes(),
        (b'q', Value::Int(n)) => format!(
            "'{}'",
            u32::try_from(*n)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}')
        )
        .into_bytes(),
        (b'f' | b'F' | b'e' | b'g', Value::Float(f)) => {
            let p = spec.precision;
            let text = match verb {
                b'e' => go_exp(*f, p.unwrap_or(6)),
                b'g' => match p {
                    Some(p) => format!("{:.*}", p, f),
                    None => go_float(*f),
                },
                _ => format!("{:.*}", p.unwrap_or(6), f),
            };
            match text.strip_prefix('-') {
                Some(abs) => signed(-1, spec, abs.to_owned()),
                None => signed(1, spec, text),
            }
        }
        (b't', Value::Bool(b)) => b.to_string().into_bytes(),
        _ => {
            let mut v = format!("%!{}(", verb as char).into_bytes();
            if matches!(arg, Value::Nil | Value::Missing) {
                v.extend_from_slice(b"<nil>");
            } else {
                v.extend_from_slice(arg.type_name().as_bytes());
                v.push(b'=');
                arg.print(&mut v);
            }
            v.push(b')');
            out.extend_from_slice(&v);
            return;
        }
    };
    let numeric = matches!(arg, Value::Int(_) | Value::Float(_)) && verb != b'c';
    pad(&body, spec, numeric, out);
}

fn truncate(s: &[u8], precision: Option<usize>) -> Vec<u8> {
    match precision {
        None => s.to_vec(),
        Some(p) => {
            let text = String::from_utf8_lossy(s);
            text.chars().take(p).collect::<String>().into_bytes()
        }
    }
}

fn signed(n: i64, spec: &Spec, digits: String) -> Vec<u8> {
    let mut s = String::new();
    if n < 0 {
        s.push('-');
    } else if spec.plus {
        s.push('+');
    } else if spec.space {
        s.push(' ');
    }
    let _ = spec.sharp;
    s.push_str(&digits);
    s.into_bytes()
}

fn pad(body: &[u8], spec: &Spec, numeric: bool, out: &mut Vec<u8>) {
    let len = String::from_utf8_lossy(body).chars().count();
    let fill = spec.width.unwrap_or(0).saturating_sub(len);
    if spec.minus {
        out.extend_from_slice(body);
        out.extend(std::iter::repeat_n(b' ', fill));
    } else if spec.zero && numeric {
        let sign = body
            .first()
            .filter(|c| matches!(c, b'-' | b'+' | b' '))
            .is_some();
        let (head, tail) = body.split_at(usize::from(sign));
        out.extend_from_slice(head);
        out.extend(std::iter::repeat_n(b'0', fill));
        out.extend_from_slice(tail);
    } else {
        out.extend(std::iter::repeat_n(b' ', fill));
        out.extend_from_slice(body);
    }
}

/// `%e`: `1.500000e+00`.
fn go_exp(f: f64, precision: usize) -> String {
    let s = format!("{:.*e}", precision, f);
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!(
        "{mantissa}e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

/// Go's `strconv.Quote`.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(format: &str, args: &[Value<'_>]) -> String {
        let mut out = Vec::new();
        sprintf(format.as_bytes(), args, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Expected values are what Go's `fmt.Sprintf` prints.
    #[test]
    fn verbs_like_go() {
        let s = Value::str("web");
        assert_eq!(f("%s-%d", &[s.clone(), Value::Int(7)]), "web-7");
        assert_eq!(
            f("%5s|%-5s|%.2s", &[s.clone(), s.clone(), s.clone()]),
            "  web|web  |we"
        );
        assert_eq!(
            f(
                "%05d %+d %x %X %o %b",
                &[
                    Value::Int(-42),
                    Value::Int(3),
                    Value::Int(255),
                    Value::Int(255),
                    Value::Int(8),
                    Value::Int(5)
                ]
            ),
            "-0042 +3 ff FF 10 101"
        );
        assert_eq!(
            f(
                "%q %v %t",
                &[Value::str("a\"b\n"), Value::Bool(true), Value::Bool(false)]
            ),
            "\"a\\\"b\\n\" true false"
        );
        assert_eq!(
            f(
                "%.2f %e %g %v",
                &[
                    Value::Float(1.23456),
                    Value::Float(1500.0),
                    Value::Float(0.5),
                    Value::Float(2.0)
                ]
            ),
            "1.23 1.500000e+03 0.5 2"
        );
        assert_eq!(f("%d", std::slice::from_ref(&s)), "%!d(string=web)");
        assert_eq!(f("%s %s", std::slice::from_ref(&s)), "web %!s(MISSING)");
        assert_eq!(f("%s", &[s.clone(), Value::Int(1)]), "web%!(EXTRA int=1)");
        assert_eq!(
            f("100%% %c %x", &[Value::Int(65), Value::str("hi")]),
            "100% A 6869"
        );
        assert_eq!(f("%", &[]), "%!(NOVERB)");
        assert_eq!(f("%s", &[Value::Int(5)]), "%!s(int=5)");
    }
}
