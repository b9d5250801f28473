//! A TOML document as a tree in which every key and value knows its byte span, so that
//! each problem can be reported at the line of the key that causes it, and so that all
//! problems can be collected instead of stopping at the first one (as serde would).

use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub span: Range<usize>,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    String(String),
    // Numbers are thresholds (`[governance] shared_max_sources = 3`); date-times are
    // kept only to say what was found instead.
    Integer(i128),
    Float(f64),
    Boolean(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub node: Node,
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::String(_) => "a string",
            Self::Integer(_) => "an integer",
            Self::Float(_) => "a float",
            Self::Boolean(_) => "a boolean",
            Self::Datetime => "a date-time",
            Self::Array(_) => "an array",
            Self::Table(_) => "a table",
        }
    }
}

/// A TOML syntax error, or a value the tree cannot hold (a date).
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub span: Option<Range<usize>>,
    pub message: String,
}

/// Parses a whole document; its root is a table spanning the text.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    match toml::from_str::<Value>(text) {
        Ok(value) => Ok(Node {
            span: 0..text.len(),
            value,
        }),
        Err(e) => Err(SyntaxError {
            span: e.span(),
            message: e.message().trim().to_owned(),
        }),
    }
}

// `toml` hands out spans through `toml::Spanned`, but refuses it for implicit tables
// (`a.b = 1` makes `a` one) instead of falling back to the plain value. So `Node` speaks
// the span protocol itself (the names below are what `toml::Spanned` asks for, fixed
// within toml 0.8 / serde_spanned 0.6; the tests in this module notice a change) and
// accepts both answers.
const SPANNED: &str = "$__serde_spanned_private_Spanned";
const START: &str = "$__serde_spanned_private_start";
const END: &str = "$__serde_spanned_private_end";
const VALUE: &str = "$__serde_spanned_private_value";

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(SPANNED, &[START, END, VALUE], NodeVisitor)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// How `toml` hands a date-time to a generic visitor.
const DATETIME: &str = "$__toml_private_datetime";

fn table_or_datetime(entries: Vec<Entry>) -> Value {
    match entries.as_slice() {
        [Entry { key, .. }] if key == DATETIME => Value::Datetime,
        _ => Value::Table(entries),
    }
}

/// A node without a span (only implicit tables) gets the span of its first entry.
fn unspanned(value: Value) -> Node {
    let span = match &value {
        Value::Table(entries) => entries.first().map_or(0..0, |e| e.node.span.clone()),
        Value::Array(items) => items.first().map_or(0..0, |n| n.span.clone()),
        _ => 0..0,
    };
    Node { span, value }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        ValueVisitor.visit_bool(v).map(unspanned)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        ValueVisitor.visit_i64(v).map(unspanned)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        ValueVisitor.visit_u64(v).map(unspanned)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        ValueVisitor.visit_f64(v).map(unspanned)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        ValueVisitor.visit_str(v).map(unspanned)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Node, A::Error> {
        ValueVisitor.visit_seq(seq).map(unspanned)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(unspanned(Value::Table(Vec::new())));
        };
        if first != START {
            let node = map.next_value::<Node>()?;
            let mut entries = vec![Entry { key: first, node }];
            read_entries(&mut map, &mut entries)?;
            return Ok(unspanned(table_or_datetime(entries)));
        }
        let start: usize = map.next_value()?;
        let mut end = start;
        let mut value = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                END => end = map.next_value()?,
                VALUE => value = Some(map.next_value::<Value>()?),
                _ => return Err(de::Error::unknown_field(&key, &[START, END, VALUE])),
            }
        }
        let value = value.ok_or_else(|| de::Error::missing_field(VALUE))?;
        Ok(Node {
            span: start..end,
            value,
        })
    }
}

fn read_entries<'de, A: MapAccess<'de>>(
    map: &mut A,
    entries: &mut Vec<Entry>,
) -> Result<(), A::Error> {
    // Keys are read as plain strings (a value always starts on its key's line, so its
    // span gives the key's line too).
    while let Some(key) = map.next_key::<String>()? {
        let node = map.next_value::<Node>()?;
        entries.push(Entry { key, node });
    }
    Ok(())
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Integer(i128::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Integer(i128::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        read_entries(&mut map, &mut entries)?;
        Ok(table_or_datetime(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(node: &'a Node, key: &str) -> &'a Node {
        match &node.value {
            Value::Table(entries) => &entries.iter().find(|e| e.key == key).unwrap().node,
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn spans_cover_values_tables_and_implicit_tables() {
        let text = "a = 1\n[[t]]\nname = \"x\"\n\n[[t]]\nname = \"y\"\n[s]\nk.j = [1, 2]\nd = 1979-05-27\n";
        let root = parse(text).unwrap();
        let span = |n: &Node| text[n.span.clone()].to_owned();
        assert_eq!(span(find(&root, "a")), "1");
        let Value::Array(items) = &find(&root, "t").value else {
            panic!()
        };
        assert_eq!(span(&items[1]), "[[t]]\nname = \"y\"");
        assert_eq!(span(find(&items[1], "name")), "\"y\"");
        let s = find(&root, "s");
        assert!(span(s).starts_with("[s]"));
        // `k` is implicit: it borrows the span of its first entry.
        assert_eq!(span(find(s, "k")), "[1, 2]");
        assert!(matches!(find(s, "d").value, Value::Datetime));
    }

    #[test]
    fn syntax_errors_have_spans() {
        let e = parse("a = 1\nb = \n").unwrap_err();
        assert_eq!(e.span.map(|s| s.start), Some(10));
        assert!(
            parse("a = 1\na = 2\n")
                .unwrap_err()
                .message
                .contains("duplicate")
        );
    }
}
