//! First pass: XML text to a small untyped element tree.
//!
//! Kept separate from the typed conversion so that depth, size and well-formedness are
//! settled once, and the second pass only deals with names, attributes and content.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::FlowError;

/// Deepest element nesting accepted. Real documents need 4 (Response/PreAnswer/GetDigits/Speak
/// plus SSML); the cap keeps hostile input from costing stack in the conversion pass.
pub(crate) const MAX_DEPTH: usize = 16;

#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Child>,
}

#[derive(Debug)]
pub(crate) enum Child {
    Element(Node),
    Text(String),
}

impl Node {
    pub fn elements(&self) -> impl Iterator<Item = &Node> {
        self.children.iter().filter_map(|c| match c {
            Child::Element(n) => Some(n),
            Child::Text(_) => None,
        })
    }

    /// Concatenated direct text children.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.children {
            if let Child::Text(t) = c {
                out.push_str(t);
            }
        }
        out
    }
}

pub(crate) fn build(xml: &str) -> Result<Node, FlowError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;

    loop {
        let position = reader.buffer_position();
        let event = reader.read_event().map_err(|source| FlowError::Syntax {
            position: reader.error_position(),
            source,
        })?;
        match event {
            Event::Start(start) => {
                let node = open(&start, position, root.is_some())?;
                stack.push(node);
                if stack.len() > MAX_DEPTH {
                    return Err(FlowError::Malformed {
                        position,
                        reason: "elements nested too deep",
                    });
                }
            }
            Event::Empty(start) => {
                let node = open(&start, position, root.is_some())?;
                if stack.len() + 1 > MAX_DEPTH {
                    return Err(FlowError::Malformed {
                        position,
                        reason: "elements nested too deep",
                    });
                }
                close(node, &mut stack, &mut root);
            }
            Event::End(_) => {
                // The reader checks that end names match their start tags.
                let node = stack.pop().ok_or(FlowError::Malformed {
                    position,
                    reason: "end tag without a start tag",
                })?;
                close(node, &mut stack, &mut root);
            }
            Event::Text(text) => {
                let text = text
                    .unescape()
                    .map_err(|source| FlowError::Syntax { position, source })?;
                push_text(&mut stack, text.into_owned(), position)?;
            }
            Event::CData(data) => {
                let text = data.decode().map_err(|e| FlowError::Syntax {
                    position,
                    source: e.into(),
                })?;
                push_text(&mut stack, text.into_owned(), position)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }

    if !stack.is_empty() {
        return Err(FlowError::Malformed {
            position: reader.buffer_position(),
            reason: "unclosed element at end of document",
        });
    }
    root.ok_or(FlowError::Malformed {
        position: 0,
        reason: "no root element",
    })
}

fn open(start: &BytesStart<'_>, position: u64, have_root: bool) -> Result<Node, FlowError> {
    if have_root {
        return Err(FlowError::Malformed {
            position,
            reason: "content after the root element",
        });
    }
    let syntax = |source: quick_xml::Error| FlowError::Syntax { position, source };
    let name = std::str::from_utf8(start.name().as_ref())
        .map_err(|e| {
            syntax(quick_xml::Error::from(
                quick_xml::encoding::EncodingError::from(e),
            ))
        })?
        .to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| syntax(e.into()))?;
        let key = std::str::from_utf8(attr.key.as_ref())
            .map_err(|e| {
                syntax(quick_xml::Error::from(
                    quick_xml::encoding::EncodingError::from(e),
                ))
            })?
            .to_owned();
        let value = attr.unescape_value().map_err(syntax)?.into_owned();
        attrs.push((key, value));
    }
    Ok(Node {
        name,
        attrs,
        children: Vec::new(),
    })
}

fn close(node: Node, stack: &mut [Node], root: &mut Option<Node>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Child::Element(node)),
        None => *root = Some(node),
    }
}

fn push_text(stack: &mut [Node], text: String, position: u64) -> Result<(), FlowError> {
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(Child::Text(text));
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(FlowError::Malformed {
            position,
            reason: "text outside the root element",
        }),
    }
}
