//! The route matcher: a tree of template segments walked one path segment
//! at a time. Literals are tried before `*`, and `*` before `**`, so the
//! most specific template wins; a template whose path matches but whose
//! method does not makes the answer 405 instead of 404 unless another
//! template matches both.

use std::collections::HashMap;

use super::template::Segment;

/// The HTTP method of a rule; `Any` is `custom` with kind `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
    Any,
}

impl Method {
    /// The method a request names; `None` for methods no rule can name,
    /// which only `Any` rules take.
    fn of_request(method: &str) -> Option<Method> {
        Some(match method {
            "GET" => Method::Get,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Any => "*",
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    literals: HashMap<Box<str>, Node>,
    single: Option<Box<Node>>,
    /// `**`: a leaf, taking whatever is left.
    multi: Option<Box<Node>>,
    /// Rules whose template ends here.
    ends: Vec<End>,
}

#[derive(Debug)]
struct End {
    method: Method,
    verb: Option<Box<str>>,
    rule: usize,
}

/// A matched rule and where the path's segments are, as byte ranges of the
/// path; the last segment excludes a matched `:verb`.
#[derive(Debug, PartialEq, Eq)]
pub struct Match {
    pub rule: usize,
    pub segments: Vec<(usize, usize)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Match),
    MethodNotAllowed,
    NotFound,
}

#[derive(Debug, Default)]
pub struct Matcher {
    root: Node,
    /// Whether any template has a verb: if none, a `:` in the last segment
    /// is just a character and one walk suffices.
    verbs: bool,
}

/// What the walk looks for at a template's end.
struct Want<'a> {
    method: Option<Method>,
    verb: Option<&'a str>,
}

impl Matcher {
    /// Adds a rule; `Err` is the rule already holding the same method,
    /// template shape and verb.
    pub fn insert(&mut self, segments: &[Segment], verb: Option<&str>, method: Method, rule: usize) -> Result<(), usize> {
        let mut node = &mut self.root;
        for segment in segments {
            node = match segment {
                Segment::Literal(text) => node.literals.entry(text.clone()).or_default(),
                Segment::Single => node.single.get_or_insert_with(Box::default),
                Segment::Multi => node.multi.get_or_insert_with(Box::default),
            };
        }
        if let Some(end) = node.ends.iter().find(|e| e.method == method && e.verb.as_deref() == verb) {
            return Err(end.rule);
        }
        self.verbs |= verb.is_some();
        node.ends.push(End { method, verb: verb.map(Into::into), rule });
        Ok(())
    }

    /// The rule for a request, by its method and percent-encoded path
    /// (no query string).
    pub fn find(&self, method: &str, path: &str) -> Lookup {
        let Some(rest) = path.strip_prefix('/') else { return Lookup::NotFound };
        let mut segments = Vec::with_capacity(8);
        let mut start = 1;
        for part in rest.split('/') {
            segments.push((start, start + part.len()));
            start += part.len() + 1;
        }
        let method = Method::of_request(method);
        let mut path_matched = false;
        let last = segments.len() - 1;
        if let Some(colon) = self.verbs.then(|| path[segments[last].0..].rfind(':')).flatten() {
            let full = segments[last];
            segments[last].1 = full.0 + colon;
            let want = Want { method, verb: Some(&path[full.0 + colon + 1..]) };
            if let Some(rule) = self.root.walk(path, &segments, 0, &want, &mut path_matched) {
                return Lookup::Found(Match { rule, segments });
            }
            segments[last] = full;
        }
        let want = Want { method, verb: None };
        if let Some(rule) = self.root.walk(path, &segments, 0, &want, &mut path_matched) {
            return Lookup::Found(Match { rule, segments });
        }
        if path_matched {
            Lookup::MethodNotAllowed
        } else {
            Lookup::NotFound
        }
    }
}

impl Node {
    /// Depth-first, most specific child first; `path_matched` records a
    /// template end reached with the wrong method.
    fn walk(&self, path: &str, segments: &[(usize, usize)], i: usize, want: &Want, path_matched: &mut bool) -> Option<usize> {
        match segments.get(i) {
            None => {
                if let Some(rule) = self.accept(want, path_matched) {
                    return Some(rule);
                }
            }
            Some(&(start, end)) => {
                let segment = &path[start..end];
                if let Some(rule) = self.literals.get(segment).and_then(|n| n.walk(path, segments, i + 1, want, path_matched)) {
                    return Some(rule);
                }
                if let Some(rule) =
                    self.single.as_ref().filter(|_| !segment.is_empty()).and_then(|n| n.walk(path, segments, i + 1, want, path_matched))
                {
                    return Some(rule);
                }
            }
        }
        self.multi.as_ref().and_then(|n| n.accept(want, path_matched))
    }

    /// The rule ending here for the wanted verb: the request's own method
    /// first, then an `Any` rule.
    fn accept(&self, want: &Want, path_matched: &mut bool) -> Option<usize> {
        let mut any = None;
        for end in self.ends.iter().filter(|e| e.verb.as_deref() == want.verb) {
            *path_matched = true;
            if Some(end.method) == want.method {
                return Some(end.rule);
            }
            if end.method == Method::Any {
                any = Some(end.rule);
            }
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::super::template::parse;
    use super::*;
    use proptest::prelude::*;

    fn matcher(rules: &[(Method, &str)]) -> Matcher {
        let mut m = Matcher::default();
        for (i, (method, text)) in rules.iter().enumerate() {
            let t = parse(text).unwrap();
            m.insert(&t.segments, t.verb.as_deref(), *method, i).unwrap();
        }
        m
    }

    fn rule(m: &Matcher, method: &str, path: &str) -> Option<usize> {
        match m.find(method, path) {
            Lookup::Found(found) => Some(found.rule),
            _ => None,
        }
    }

    #[test]
    fn literal_beats_single_beats_multi() {
        let m = matcher(&[(Method::Get, "/a/**"), (Method::Get, "/a/*"), (Method::Get, "/a/b")]);
        assert_eq!(rule(&m, "GET", "/a/b"), Some(2));
        assert_eq!(rule(&m, "GET", "/a/c"), Some(1));
        assert_eq!(rule(&m, "GET", "/a/c/d"), Some(0));
        assert_eq!(rule(&m, "GET", "/a"), Some(0), "`**` takes zero segments");
    }

    #[test]
    fn backtracks_from_a_literal_to_a_wildcard() {
        let m = matcher(&[(Method::Get, "/a/b/c"), (Method::Get, "/a/*/d")]);
        assert_eq!(rule(&m, "GET", "/a/b/d"), Some(1));
        assert_eq!(rule(&m, "GET", "/a/b/c"), Some(0));
    }

    #[test]
    fn wrong_method_is_405_unless_another_template_takes_it() {
        let m = matcher(&[(Method::Post, "/a/b"), (Method::Get, "/a/*")]);
        assert_eq!(m.find("PUT", "/a/b"), Lookup::MethodNotAllowed);
        assert_eq!(m.find("HEAD", "/a/c"), Lookup::MethodNotAllowed);
        assert_eq!(rule(&m, "GET", "/a/b"), Some(1));
        assert_eq!(m.find("GET", "/b"), Lookup::NotFound);
        assert_eq!(m.find("GET", "a/b"), Lookup::NotFound);
        assert_eq!(m.find("GET", "/a/b/c"), Lookup::NotFound);
    }

    #[test]
    fn custom_any_takes_every_method_after_the_exact_one() {
        let m = matcher(&[(Method::Any, "/x"), (Method::Get, "/x")]);
        assert_eq!(rule(&m, "GET", "/x"), Some(1));
        assert_eq!(rule(&m, "OPTIONS", "/x"), Some(0));
        assert_eq!(rule(&m, "DELETE", "/x"), Some(0));
    }

    #[test]
    fn single_needs_a_non_empty_segment() {
        let m = matcher(&[(Method::Get, "/carts/{id}")]);
        assert_eq!(m.find("GET", "/carts/"), Lookup::NotFound);
        assert_eq!(m.find("GET", "/carts"), Lookup::NotFound);
        assert_eq!(m.find("GET", "/"), Lookup::NotFound);
    }

    #[test]
    fn verbs_split_the_last_segment() {
        let m = matcher(&[(Method::Post, "/ops/*:cancel"), (Method::Post, "/ops/*"), (Method::Post, "/files/**:undo")]);
        let Lookup::Found(found) = m.find("POST", "/ops/o1:cancel") else { panic!() };
        assert_eq!(found, Match { rule: 0, segments: vec![(1, 4), (5, 7)] });
        assert_eq!(rule(&m, "POST", "/ops/o1:other"), Some(1), "an unknown verb is part of the segment");
        assert_eq!(rule(&m, "POST", "/ops/o1"), Some(1));
        assert_eq!(rule(&m, "POST", "/files/a/b:undo"), Some(2));
        assert_eq!(m.find("POST", "/files/a/b"), Lookup::NotFound);
    }

    #[test]
    fn a_colon_is_a_plain_character_without_verb_templates() {
        let m = matcher(&[(Method::Get, "/a/*")]);
        let Lookup::Found(found) = m.find("GET", "/a/b:c") else { panic!() };
        assert_eq!(found.segments, vec![(1, 2), (3, 6)]);
    }

    #[test]
    fn duplicates_are_refused_whatever_the_variable_names() {
        let mut m = matcher(&[(Method::Get, "/a/{x}")]);
        let t = parse("/a/*").unwrap();
        assert_eq!(m.insert(&t.segments, None, Method::Get, 7), Err(0));
        assert_eq!(m.insert(&t.segments, None, Method::Post, 7), Ok(()));
        assert_eq!(m.insert(&t.segments, Some("v"), Method::Get, 8), Ok(()));
    }

    /// A reference matcher: templates as regex-free recursive descent over
    /// whole segment lists, with the same precedence.
    fn reference(templates: &[Vec<Segment>], path: &[&str]) -> Option<usize> {
        fn score(t: &[Segment], p: &[&str]) -> Option<Vec<u8>> {
            match (t.first(), p.first()) {
                (Some(Segment::Multi), _) => Some(vec![3]),
                (None, None) => Some(vec![]),
                (Some(Segment::Literal(l)), Some(s)) if **l == **s => score(&t[1..], &p[1..]).map(|r| [vec![1], r].concat()),
                (Some(Segment::Single), Some(s)) if !s.is_empty() => score(&t[1..], &p[1..]).map(|r| [vec![2], r].concat()),
                _ => None,
            }
        }
        (0..templates.len()).filter_map(|i| score(&templates[i], path).map(|s| (s, i))).min().map(|(_, i)| i)
    }

    fn segment() -> impl Strategy<Value = Segment> {
        prop_oneof![
            3 => prop::sample::select(vec!["a", "b"]).prop_map(|s| Segment::Literal(s.into())),
            2 => Just(Segment::Single),
            1 => Just(Segment::Multi),
        ]
    }

    fn template() -> impl Strategy<Value = Vec<Segment>> {
        prop::collection::vec(segment(), 1..4).prop_map(|mut t| {
            if let Some(i) = t.iter().position(|s| *s == Segment::Multi) {
                t.truncate(i + 1);
            }
            t
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn matches_the_most_specific_template(
            templates in prop::collection::vec(template(), 1..6),
            path in prop::collection::vec(prop::sample::select(vec!["a", "b", "c", ""]), 1..5),
        ) {
            let mut m = Matcher::default();
            let mut kept = Vec::new();
            for t in &templates {
                if m.insert(t, None, Method::Get, kept.len()).is_ok() {
                    kept.push(t.clone());
                }
            }
            let text = format!("/{}", path.join("/"));
            prop_assert_eq!(rule(&m, "GET", &text), reference(&kept, &path));
        }
    }
}
