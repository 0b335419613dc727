//! Path templates of `google.api.http` rules, parsed once at discovery:
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! Variables are flattened into the segment list and remembered as ranges
//! of it, so the matcher only ever compares one segment at a time.

/// One path segment of a template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches itself, byte for byte (as written, still percent-encoded).
    Literal(Box<str>),
    /// `*`: exactly one non-empty segment.
    Single,
    /// `**`: the rest of the path (zero or more segments); last only.
    Multi,
}

/// A `{field.path}` or `{field.path=segments}` binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    /// The field names, outermost first.
    pub field_path: Vec<String>,
    /// The template segments it captures: `segments[start..end]`.
    pub start: usize,
    pub end: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub segments: Vec<Segment>,
    pub variables: Vec<Variable>,
    /// The `:verb` suffix of the last segment.
    pub verb: Option<Box<str>>,
}

/// Parses a template; `Err` says what is wrong and where.
pub fn parse(text: &str) -> Result<Template, String> {
    let mut parser = Parser { text, pos: 0, template: Template { segments: Vec::new(), variables: Vec::new(), verb: None } };
    parser.expect(b'/')?;
    parser.segments(false)?;
    if parser.eat(b':') {
        let verb = parser.literal()?;
        parser.template.verb = Some(verb);
    }
    if parser.pos != text.len() {
        return Err(parser.error("unexpected character"));
    }
    let template = parser.template;
    if let Some(i) = template.segments.iter().position(|s| *s == Segment::Multi) {
        if i + 1 != template.segments.len() {
            return Err("`**` is allowed only as the last segment".to_owned());
        }
    }
    Ok(template)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    template: Template,
}

/// Bytes a literal may not contain: they delimit the grammar, or would be
/// a query or fragment.
fn is_literal_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"/*{}:=?#".contains(&b)
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.pos += usize::from(hit);
        hit
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", b as char)))
        }
    }

    fn error(&self, what: &str) -> String {
        match self.peek() {
            Some(_) => format!("{what} at offset {} in [{}]", self.pos, self.text),
            None => format!("{what} at the end of [{}]", self.text),
        }
    }

    /// `Segments`; `in_variable` forbids nested variables.
    fn segments(&mut self, in_variable: bool) -> Result<(), String> {
        loop {
            self.segment(in_variable)?;
            if !self.eat(b'/') {
                return Ok(());
            }
        }
    }

    fn segment(&mut self, in_variable: bool) -> Result<(), String> {
        match self.peek() {
            Some(b'*') => {
                self.pos += 1;
                let segment = if self.eat(b'*') { Segment::Multi } else { Segment::Single };
                self.template.segments.push(segment);
            }
            Some(b'{') if in_variable => return Err(self.error("nested variable")),
            Some(b'{') => self.variable()?,
            _ => {
                let literal = self.literal()?;
                self.template.segments.push(Segment::Literal(literal));
            }
        }
        Ok(())
    }

    fn variable(&mut self) -> Result<(), String> {
        self.expect(b'{')?;
        let mut field_path = vec![self.ident()?];
        while self.eat(b'.') {
            field_path.push(self.ident()?);
        }
        let start = self.template.segments.len();
        if self.eat(b'=') {
            self.segments(true)?;
        } else {
            self.template.segments.push(Segment::Single);
        }
        self.expect(b'}')?;
        let end = self.template.segments.len();
        self.template.variables.push(Variable { field_path, start, end });
        Ok(())
    }

    fn literal(&mut self) -> Result<Box<str>, String> {
        let start = self.pos;
        while self.peek().is_some_and(is_literal_byte) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected a literal segment"));
        }
        Ok(self.text[start..self.pos].into())
    }

    fn ident(&mut self) -> Result<String, String> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            self.pos += 1;
        }
        let ident = &self.text[start..self.pos];
        if ident.is_empty() || ident.as_bytes()[0].is_ascii_digit() {
            self.pos = start;
            return Err(self.error("expected a field name"));
        }
        Ok(ident.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Segment::*;

    fn lit(s: &str) -> Segment {
        Literal(s.into())
    }

    fn var(path: &[&str], start: usize, end: usize) -> Variable {
        Variable { field_path: path.iter().map(|s| s.to_string()).collect(), start, end }
    }

    #[test]
    fn literals_and_wildcards() {
        let t = parse("/v1/shelves/*/books/**").unwrap();
        assert_eq!(t.segments, vec![lit("v1"), lit("shelves"), Single, lit("books"), Multi]);
        assert!(t.variables.is_empty());
        assert_eq!(t.verb, None);
    }

    #[test]
    fn variables_default_to_one_segment_and_may_capture_several() {
        let t = parse("/carts/{user_id}/items/{item.id=products/*/x}").unwrap();
        assert_eq!(t.segments, vec![lit("carts"), Single, lit("items"), lit("products"), Single, lit("x")]);
        assert_eq!(t.variables, vec![var(&["user_id"], 1, 2), var(&["item", "id"], 3, 6)]);
        let t = parse("/files/{name=**}").unwrap();
        assert_eq!(t.segments, vec![lit("files"), Multi]);
        assert_eq!(t.variables, vec![var(&["name"], 1, 2)]);
    }

    #[test]
    fn verb_suffix() {
        let t = parse("/v1/{name=operations/*}:cancel").unwrap();
        assert_eq!(t.segments, vec![lit("v1"), lit("operations"), Single]);
        assert_eq!(t.verb.as_deref(), Some("cancel"));
        assert_eq!(parse("/a/**:undelete").unwrap().verb.as_deref(), Some("undelete"));
    }

    #[test]
    fn literal_may_hold_dots_and_percent_escapes() {
        let t = parse("/cloudstate.tck.model.valueentity.ValueEntityTwo/Call").unwrap();
        assert_eq!(t.segments, vec![lit("cloudstate.tck.model.valueentity.ValueEntityTwo"), lit("Call")]);
        assert_eq!(parse("/a%20b").unwrap().segments, vec![lit("a%20b")]);
    }

    #[test]
    fn malformed_templates_say_what_is_wrong() {
        let cases = [
            ("", "expected `/` at the end"),
            ("v1/a", "expected `/` at offset 0"),
            ("/", "expected a literal segment at the end"),
            ("/a//b", "expected a literal segment at offset 3"),
            ("/a/", "expected a literal segment at the end"),
            ("/a/{b", "expected `}` at the end"),
            ("/a/{}", "expected a field name at offset 4"),
            ("/a/{1x}", "expected a field name at offset 4"),
            ("/a/{b.}", "expected a field name at offset 6"),
            ("/a/{b={c}}", "nested variable at offset 6"),
            ("/a/**/b", "`**` is allowed only as the last segment"),
            ("/{x=**}/b", "`**` is allowed only as the last segment"),
            ("/a:", "expected a literal segment at the end"),
            ("/a:b/c", "unexpected character at offset 4"),
            ("/a?b", "unexpected character at offset 2"),
            ("/a b", "unexpected character at offset 2"),
            ("/a/***", "unexpected character at offset 5"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
