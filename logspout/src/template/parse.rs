//! The parser of Go `text/template`: turns the lexer's items into a tree of text, actions and
//! `if`/`range`/`with` blocks, with pipelines, variables and function calls.

use super::lex::{Item, Tok, Token};

/// One node of a template.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Text(String),
    /// `{{ pipeline }}`: printed unless it declares or assigns a variable.
    Action(Pipeline),
    /// `if`/`else if` branches, then the `else` list.
    If(Vec<(Pipeline, Vec<Node>)>, Vec<Node>),
    /// `with`/`else with` branches (dot is the value), then the `else` list.
    With(Vec<(Pipeline, Vec<Node>)>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    Break,
    Continue,
}

/// `$a, $b := cmd | cmd …`
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pipeline {
    pub(super) vars: Vec<String>,
    /// `=` instead of `:=`.
    pub(super) assign: bool,
    pub(super) cmds: Vec<Vec<Arg>>,
}

/// One operand of a command.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arg {
    /// `.` or `.A.B` (fields of dot).
    Field(Vec<String>),
    /// `$x.A.B`.
    Var(String, Vec<String>),
    /// `(pipeline).A.B`.
    Sub(Box<Pipeline>, Vec<String>),
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
}

/// The functions a template may call.
pub(super) const FUNCTIONS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "print", "printf", "println", "eq", "ne", "lt",
    "le", "gt", "ge", "toJSON", "env",
];

/// Parses a whole template; the error names the action and says what is wrong.
pub(super) fn parse(items: Vec<Item>) -> Result<Vec<Node>, (String, String)> {
    let mut parser = Parser {
        items: items.into_iter(),
        range_depth: 0,
        depth: 0,
    };
    let (nodes, end) = parser.list()?;
    match end {
        End::Eof => Ok(nodes),
        End::Close(src) => Err((src, "unexpected {{end}}".into())),
        End::Else(src, _) => Err((src, "unexpected {{else}}".into())),
    }
}

enum End {
    Eof,
    Close(String),
    /// `{{else}}` (no tokens) or `{{else if …}}` / `{{else with …}}` (the tokens after `else`).
    Else(String, Vec<Token>),
}

struct Parser {
    items: std::vec::IntoIter<Item>,
    range_depth: usize,
    /// Blocks open now (`if`, `with`, `range`), bounded by [`MAX_DEPTH`].
    depth: usize,
}

/// Nesting of blocks and of parentheses: deeper templates are rejected (the parser and the
/// evaluator recurse, and no real template nests this deep).
const MAX_DEPTH: usize = 64;

type Fail = (String, String);

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, End), Fail> {
        self.depth += 1;
        let result = self.list_inner();
        self.depth -= 1;
        result
    }

    fn list_inner(&mut self) -> Result<(Vec<Node>, End), Fail> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let (tokens, src) = match item {
                Item::Text(text) => {
                    nodes.push(Node::Text(text));
                    continue;
                }
                Item::Action(tokens, src) => (tokens, src),
            };
            let fail = |reason: &str| (src.clone(), reason.to_owned());
            if self.depth > MAX_DEPTH {
                return Err(fail(&format!("blocks nested deeper than {MAX_DEPTH}")));
            }
            let keyword = match tokens.first().map(|t| &t.tok) {
                Some(Tok::Ident(word)) => word.as_str(),
                None => return Err(fail("missing value for command")),
                _ => "",
            };
            match keyword {
                "end" if tokens.len() == 1 => return Ok((nodes, End::Close(src))),
                "else" => return Ok((nodes, End::Else(src, tokens[1..].to_vec()))),
                "if" | "with" => nodes.push(self.branches(keyword, &tokens[1..], &src)?),
                "range" => {
                    let pipe = pipeline(&tokens[1..], true).map_err(|r| fail(&r))?;
                    self.range_depth += 1;
                    let (body, end) = self.list()?;
                    self.range_depth -= 1;
                    let otherwise = match end {
                        End::Close(_) => Vec::new(),
                        End::Else(s, rest) if rest.is_empty() => self.until_end(&s)?,
                        End::Else(s, _) => return Err((s, "range has no else if".into())),
                        End::Eof => return Err(fail("unexpected EOF: range has no {{end}}")),
                    };
                    nodes.push(Node::Range(pipe, body, otherwise));
                }
                "break" | "continue" if tokens.len() == 1 => {
                    if self.range_depth == 0 {
                        return Err(fail(&format!("{{{{{keyword}}}}} outside {{{{range}}}}")));
                    }
                    nodes.push(if keyword == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                "define" | "template" | "block" => {
                    return Err(fail(&format!("{keyword} is not supported")));
                }
                "end" | "break" | "continue" => {
                    return Err(fail(&format!("unexpected words after {keyword}")));
                }
                _ => nodes.push(Node::Action(
                    pipeline(&tokens, false).map_err(|r| fail(&r))?,
                )),
            }
        }
        Ok((nodes, End::Eof))
    }

    /// `if`/`with` and their `else if`/`else with` chain up to `{{end}}`.
    fn branches(&mut self, keyword: &str, tokens: &[Token], src: &str) -> Result<Node, Fail> {
        let mut branches = Vec::new();
        let mut cond = tokens.to_vec();
        let mut cond_src = src.to_owned();
        loop {
            let pipe = pipeline(&cond, true).map_err(|r| (cond_src.clone(), r))?;
            let (body, end) = self.list()?;
            branches.push((pipe, body));
            match end {
                End::Close(_) => break Ok(node(keyword, branches, Vec::new())),
                End::Else(s, rest) if rest.is_empty() => {
                    let otherwise = self.until_end(&s)?;
                    break Ok(node(keyword, branches, otherwise));
                }
                End::Else(s, rest) => match rest.first().map(|t| &t.tok) {
                    Some(Tok::Ident(w)) if w == keyword => {
                        cond = rest[1..].to_vec();
                        cond_src = s;
                    }
                    _ => return Err((s, format!("expected {{{{else {keyword} …}}}}"))),
                },
                End::Eof => {
                    return Err((
                        src.to_owned(),
                        format!("unexpected EOF: {keyword} has no {{{{end}}}}"),
                    ));
                }
            }
        }
    }

    fn until_end(&mut self, src: &str) -> Result<Vec<Node>, Fail> {
        match self.list()? {
            (nodes, End::Close(_)) => Ok(nodes),
            (_, End::Else(s, _)) => Err((s, "unexpected {{else}} after {{else}}".into())),
            (_, End::Eof) => Err((src.to_owned(), "unexpected EOF: no {{end}}".into())),
        }
    }
}

fn node(keyword: &str, branches: Vec<(Pipeline, Vec<Node>)>, otherwise: Vec<Node>) -> Node {
    if keyword == "if" {
        Node::If(branches, otherwise)
    } else {
        Node::With(branches, otherwise)
    }
}

/// Parses `[vars :=] cmd | cmd …`; `control` allows `$i, $v :=` (range, if, with).
fn pipeline(tokens: &[Token], control: bool) -> Result<Pipeline, String> {
    let mut depth = 0usize;
    for t in tokens {
        match t.tok {
            Tok::LParen => depth += 1,
            Tok::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_DEPTH {
            return Err(format!("parentheses nested deeper than {MAX_DEPTH}"));
        }
    }
    let mut vars = Vec::new();
    let mut assign = false;
    let mut rest = tokens;
    if let Some(pos) = tokens
        .iter()
        .position(|t| matches!(t.tok, Tok::Declare | Tok::Assign))
    {
        let head = &tokens[..pos];
        let names: Vec<&Token> = head.iter().filter(|t| t.tok != Tok::Comma).collect();
        let well_formed = head.iter().enumerate().all(|(i, t)| match &t.tok {
            Tok::Var(_) => i % 2 == 0,
            Tok::Comma => i % 2 == 1,
            _ => false,
        }) && head.len() % 2 == 1;
        if well_formed && (names.len() == 1 || (control && names.len() == 2)) {
            for name in names {
                if let Tok::Var(v) = &name.tok {
                    vars.push(v.clone());
                }
            }
            assign = tokens[pos].tok == Tok::Assign;
            rest = &tokens[pos + 1..];
        } else if !head.iter().any(|t| t.tok == Tok::LParen) {
            return Err("bad variable declaration".into());
        }
    }
    let mut cmds = Vec::new();
    let mut pos = 0;
    loop {
        let (cmd, used) = command(&rest[pos..])?;
        if cmd.is_empty() {
            return Err("missing value for command".into());
        }
        cmds.push(cmd);
        pos += used;
        match rest.get(pos).map(|t| &t.tok) {
            None => break,
            Some(Tok::Pipe) => pos += 1,
            Some(other) => return Err(format!("unexpected {other:?} in command")),
        }
    }
    for cmd in &cmds[1..] {
        if !matches!(
            cmd[0],
            Arg::Field(_) | Arg::Var(..) | Arg::Sub(..) | Arg::Func(_)
        ) {
            return Err("non executable command in pipeline stage 2".into());
        }
    }
    Ok(Pipeline { vars, assign, cmds })
}

/// One command: operands up to `|`, `)` or the end; returns them and the tokens used.
fn command(tokens: &[Token]) -> Result<(Vec<Arg>, usize), String> {
    let mut args = Vec::new();
    let mut i = 0;
    while let Some(token) = tokens.get(i) {
        if !args.is_empty() && !token.spaced && !matches!(token.tok, Tok::Pipe | Tok::RParen) {
            return Err("missing space between arguments".into());
        }
        let arg = match &token.tok {
            Tok::Pipe | Tok::RParen => break,
            Tok::Dot => Arg::Field(Vec::new()),
            Tok::Field(name) => Arg::Field(vec![name.clone()]),
            Tok::Var(name) => Arg::Var(name.clone(), Vec::new()),
            Tok::Ident(w) if w == "true" || w == "false" => Arg::Bool(w == "true"),
            Tok::Ident(w) if w == "nil" => Arg::Nil,
            Tok::Ident(w) if FUNCTIONS.contains(&w.as_str()) => Arg::Func(w.clone()),
            Tok::Ident(w) => return Err(format!("function {w:?} not defined")),
            Tok::Str(s) => Arg::Str(s.clone()),
            Tok::Int(n) => Arg::Int(*n),
            Tok::Float(f) => Arg::Float(*f),
            Tok::LParen => {
                let depth_end = matching_paren(&tokens[i..])?;
                let inner = pipeline(&tokens[i + 1..i + depth_end], true)?;
                i += depth_end;
                Arg::Sub(Box::new(inner), Vec::new())
            }
            other => return Err(format!("unexpected {other:?} in operand")),
        };
        i += 1;
        // Fields chained right onto the operand: `.A.B`, `$x.A`, `(…).A`.
        let mut arg = arg;
        while let Some(Token {
            tok: Tok::Field(name),
            spaced: false,
        }) = tokens.get(i)
        {
            match &mut arg {
                Arg::Field(chain) | Arg::Var(_, chain) | Arg::Sub(_, chain) => {
                    chain.push(name.clone())
                }
                _ => return Err(format!("unexpected .{name} after a constant")),
            }
            i += 1;
        }
        args.push(arg);
    }
    Ok((args, i))
}

/// The index of the `)` that closes the `(` at `tokens[0]`.
fn matching_paren(tokens: &[Token]) -> Result<usize, String> {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t.tok {
            Tok::LParen => depth += 1,
            Tok::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
    }
    Err("unclosed left paren".into())
}

#[cfg(test)]
mod tests {
    use super::super::lex::items;
    use super::*;

    fn tree(text: &str) -> Result<Vec<Node>, String> {
        let items = items(text).map_err(|e| e.1)?;
        parse(items).map_err(|e| e.1)
    }

    #[test]
    fn blocks_nest() {
        let nodes = tree("{{if .A}}a{{else if .B}}b{{else}}c{{end}}").unwrap();
        let [Node::If(branches, otherwise)] = nodes.as_slice() else {
            panic!("{nodes:?}")
        };
        assert_eq!(branches.len(), 2);
        assert_eq!(otherwise, &[Node::Text("c".into())]);
        let nodes = tree("{{range $k, $v := .L}}{{$k}}{{break}}{{end}}").unwrap();
        let [Node::Range(pipe, body, _)] = nodes.as_slice() else {
            panic!("{nodes:?}")
        };
        assert_eq!(pipe.vars, ["$k", "$v"]);
        assert_eq!(body.len(), 2);
    }

    #[test]
    fn pipelines_and_parens() {
        let nodes = tree(r#"{{ index (.ContainerNameSplitN "." 2) 0 | printf "%s" }}"#).unwrap();
        let [Node::Action(pipe)] = nodes.as_slice() else {
            panic!("{nodes:?}")
        };
        assert_eq!(pipe.cmds.len(), 2);
        assert!(matches!(&pipe.cmds[0][1], Arg::Sub(inner, _) if inner.cmds[0].len() == 3));
    }

    #[test]
    fn structural_errors() {
        for bad in [
            "{{if .A}}",
            "{{end}}",
            "{{else}}",
            "{{range .A}}{{else if .B}}{{end}}",
            "{{break}}",
            "{{nope .A}}",
            "{{.A.B\"x\"}}",
            "{{(.A}}",
            "{{ .A | 3 }}",
            "{{ $x, $y := .A }}",
            "{{template \"x\"}}",
            "{{}}",
            "{{ | }}",
            "{{ 3.X }}",
            format!("{{{{{}1{}}}}}", "(".repeat(10_000), ")".repeat(10_000)).as_str(),
            "{{if 1}}".repeat(10_000).as_str(),
            "{{range 1}}".repeat(10_000).as_str(),
        ] {
            assert!(tree(bad).is_err(), "{bad}");
        }
    }
}
