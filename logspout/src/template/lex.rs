//! The lexer of Go `text/template`: splits a template into text and actions (`{{ … }}`, with
//! `{{-`/`-}}` trimming and `{{/* comments */}}`) and an action into tokens.

/// One token inside an action.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// `.` alone.
    Dot,
    /// `.Name` (without the dot).
    Field(String),
    /// `$` or `$name` (with the `$`).
    Var(String),
    /// A function name or keyword.
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
}

/// A token and whether white space came right before it (`.A.B` is one chain, `.A .B` two).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) spaced: bool,
}

/// A piece of the template.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Item {
    Text(String),
    /// The tokens of one action and its source text (for errors).
    Action(Vec<Token>, String),
}

/// Splits `text` into text and actions.
pub(super) fn items(text: &str) -> Result<Vec<Item>, (String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut literal = &rest[..open];
        if trim_next {
            literal = literal.trim_start_matches(is_space);
        }
        let mut skip = open + 2;
        if let Some(after) = rest[skip..].strip_prefix('-')
            && after.starts_with(is_space)
        {
            literal = literal.trim_end_matches(is_space);
            skip += 1;
        }
        let body = &rest[skip..];
        if !literal.is_empty() {
            out.push(Item::Text(literal.to_owned()));
        }
        let (tokens, used, trim) = action(body).map_err(|reason| {
            let shown: String = rest[open..].chars().take(60).collect();
            (shown, reason)
        })?;
        let source = &rest[open..skip + used];
        trim_next = trim;
        if let Some(tokens) = tokens {
            out.push(Item::Action(tokens, source.to_owned()));
        }
        rest = &body[used..];
    }
    let literal = if trim_next {
        rest.trim_start_matches(is_space)
    } else {
        rest
    };
    if !literal.is_empty() {
        out.push(Item::Text(literal.to_owned()));
    }
    Ok(out)
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Reads one action body up to and including its `}}`: its tokens (`None` for a comment), the
/// bytes used and whether it ended with ` -}}`.
fn action(body: &str) -> Result<(Option<Vec<Token>>, usize, bool), String> {
    let trimmed = body.trim_start_matches(is_space);
    if let Some(comment) = trimmed.strip_prefix("/*") {
        let end = comment.find("*/").ok_or("unclosed comment")?;
        let after = &comment[end + 2..];
        let skipped = body.len() - after.len();
        let (used, trim) = close_at(after).ok_or("comment ends before the closing delimiter")?;
        return Ok((None, skipped + used, trim));
    }
    let bytes = body.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut spaced = false;
    loop {
        if i >= bytes.len() {
            return Err("unclosed action".into());
        }
        if let Some((used, trim)) = close_at(&body[i..]) {
            return Ok((Some(tokens), i + used, trim));
        }
        let c = bytes[i];
        if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            spaced = true;
            i += 1;
            continue;
        }
        let (tok, len) = token(&body[i..])?;
        tokens.push(Token { tok, spaced });
        spaced = false;
        i += len;
    }
}

/// `}}` or ` -}}` (white space, dash, delimiter) at the start of `s`: bytes used, trim.
fn close_at(s: &str) -> Option<(usize, bool)> {
    if s.starts_with("}}") {
        return Some((2, false));
    }
    let rest = s.trim_start_matches(is_space);
    if rest.len() < s.len() {
        if rest.starts_with("}}") {
            return Some((s.len() - rest.len() + 2, false));
        }
        if rest.starts_with("-}}") {
            return Some((s.len() - rest.len() + 3, true));
        }
    }
    None
}

fn token(s: &str) -> Result<(Tok, usize), String> {
    let bytes = s.as_bytes();
    let word_len = |from: usize| {
        s[from..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(s.len(), |n| n + from)
    };
    Ok(match bytes[0] {
        b'(' => (Tok::LParen, 1),
        b')' => (Tok::RParen, 1),
        b'|' => (Tok::Pipe, 1),
        b',' => (Tok::Comma, 1),
        b'=' => (Tok::Assign, 1),
        b':' if bytes.get(1) == Some(&b'=') => (Tok::Declare, 2),
        b'"' => quoted(s)?,
        b'`' => {
            let end = s[1..].find('`').ok_or("unterminated raw quoted string")?;
            (Tok::Str(s[1..1 + end].to_owned()), end + 2)
        }
        b'\'' => {
            let (tok, len) = quoted(s)?;
            match tok {
                Tok::Str(ch) if ch.chars().count() == 1 => {
                    (Tok::Int(ch.chars().next().map_or(0, |c| c as i64)), len)
                }
                _ => return Err("malformed character constant".into()),
            }
        }
        b'.' if bytes.get(1).is_some_and(|c| c.is_ascii_digit()) => number(s)?,
        b'.' => {
            let end = word_len(1);
            if end == 1 {
                (Tok::Dot, 1)
            } else {
                (Tok::Field(s[1..end].to_owned()), end)
            }
        }
        b'$' => {
            let end = word_len(1);
            (Tok::Var(s[..end].to_owned()), end)
        }
        b'0'..=b'9' | b'-' | b'+' => number(s)?,
        _ => {
            let end = word_len(0);
            if end == 0 {
                let c = s.chars().next().unwrap_or('?');
                return Err(format!("unexpected {c:?} in action"));
            }
            (Tok::Ident(s[..end].to_owned()), end)
        }
    })
}

/// A `"…"` or `'…'` literal with Go's escapes.
fn quoted(s: &str) -> Result<(Tok, usize), String> {
    let quote = s.as_bytes()[0] as char;
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((Tok::Str(out), i + 1)),
            '\n' => break,
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated quoted string")?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = chars.by_ref().take(n).map(|(_, c)| c).collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == n)
                            .and_then(char::from_u32)
                            .ok_or("bad escape in quoted string")?;
                        out.push(code);
                    }
                    _ => return Err(format!("unknown escape sequence \\{e}")),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

fn number(s: &str) -> Result<(Tok, usize), String> {
    let end = s
        .char_indices()
        .skip(1)
        .find(|&(i, c)| {
            !(c.is_ascii_alphanumeric()
                || c == '.'
                || c == '_'
                || ((c == '+' || c == '-') && matches!(s.as_bytes()[i - 1], b'e' | b'E')))
        })
        .map_or(s.len(), |(i, _)| i);
    let text = s[..end].replace('_', "");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let radix = match digits.get(..2) {
        Some("0x" | "0X") => Some(16),
        Some("0o" | "0O") => Some(8),
        Some("0b" | "0B") => Some(2),
        _ => None,
    };
    let int = match radix {
        Some(r) => i64::from_str_radix(&digits[2..], r).ok(),
        None if digits.len() > 1
            && digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            i64::from_str_radix(&digits[1..], 8).ok()
        }
        None => digits.parse::<i64>().ok(),
    };
    if let Some(v) = int {
        return Ok((Tok::Int(if negative { -v } else { v }), end));
    }
    match digits.parse::<f64>() {
        Ok(v) if radix.is_none() && digits.bytes().any(|b| b.is_ascii_digit()) => {
            Ok((Tok::Float(if negative { -v } else { v }), end))
        }
        _ => Err(format!("bad number syntax: {:?}", &s[..end])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(action: &str) -> Vec<Tok> {
        match items(action).unwrap().as_slice() {
            [Item::Action(tokens, _)] => tokens.iter().map(|t| t.tok.clone()).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn actions_split_into_tokens() {
        assert_eq!(
            toks(r#"{{ printf "%s-%d" .A.B 7 | len }}"#),
            [
                Tok::Ident("printf".into()),
                Tok::Str("%s-%d".into()),
                Tok::Field("A".into()),
                Tok::Field("B".into()),
                Tok::Int(7),
                Tok::Pipe,
                Tok::Ident("len".into())
            ]
        );
        assert_eq!(
            toks("{{$x := -1.5e3}}"),
            [Tok::Var("$x".into()), Tok::Declare, Tok::Float(-1500.0)]
        );
        assert_eq!(
            toks("{{'a' 0x1F `r\\n`}}"),
            [Tok::Int(97), Tok::Int(31), Tok::Str("r\\n".into())]
        );
        assert_eq!(toks(r#"{{"}}"}}"#), [Tok::Str("}}".into())]);
    }

    #[test]
    fn trim_markers_and_comments() {
        let got = items("a  {{- .X -}}  b {{/* c */}} {{- /* d */ -}} e").unwrap();
        let texts: Vec<_> = got
            .iter()
            .map(|i| match i {
                Item::Text(t) => t.clone(),
                Item::Action(_, src) => format!("<{src}>"),
            })
            .collect();
        assert_eq!(texts, ["a", "<{{- .X -}}>", "b ", "e"]);
    }

    #[test]
    fn malformed_actions_are_errors() {
        for bad in ["{{.Data", "{{\"abc}}", "{{/* x }}", "{{ # }}", "{{ 0x }}"] {
            assert!(items(bad).is_err(), "{bad}");
        }
    }
}
