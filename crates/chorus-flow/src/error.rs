//! Errors returned by [`parse`](crate::parse).

/// Why a call-flow document was refused.
///
/// Every variant names the cause; a refused document is "invalid answer XML" for the call
/// (API.md §7.1), so the engine fails the call rather than guessing.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The document is larger than [`MAX_DOCUMENT_BYTES`](crate::MAX_DOCUMENT_BYTES).
    #[error("document is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },

    /// The XML itself is malformed (reported by the XML reader).
    #[error("malformed XML at byte {position}: {source}")]
    Syntax {
        position: u64,
        #[source]
        source: quick_xml::Error,
    },

    /// The XML is not a single well-formed element tree (unclosed tags, several roots,
    /// text outside the root, nesting too deep, no root at all).
    #[error("malformed document at byte {position}: {reason}")]
    Malformed { position: u64, reason: &'static str },

    /// The root element is not `<Response>`.
    #[error("root element must be <Response>, found <{found}>")]
    NotResponse { found: String },

    /// An element name the call-flow language does not define.
    #[error("unknown element <{element}> inside <{parent}>")]
    UnknownElement { element: String, parent: String },

    /// A known element in a place where it is not allowed (e.g. `<Conference>` inside `<GetDigits>`).
    #[error("element <{element}> is not allowed inside <{parent}>")]
    MisplacedElement { element: String, parent: String },

    /// An attribute value that does not parse or is out of range.
    #[error("<{element} {attribute}=\"{value}\">: {reason}")]
    BadAttribute {
        element: String,
        attribute: String,
        value: String,
        reason: String,
    },

    /// A required attribute is absent.
    #[error("<{element}> requires the {attribute} attribute")]
    MissingAttribute {
        element: String,
        attribute: &'static str,
    },

    /// Required content (text or child elements) is absent or empty.
    #[error("<{element}> requires {expected}")]
    MissingContent {
        element: String,
        expected: &'static str,
    },

    /// Content that does not parse, e.g. a DTMF string with letters or a Redirect target that is not a URL.
    #[error("<{element}> content \"{content}\": {reason}")]
    BadContent {
        element: String,
        content: String,
        reason: String,
    },

    /// Non-whitespace text inside an element that takes none.
    #[error("<{element}> takes no text content")]
    UnexpectedText { element: String },
}
