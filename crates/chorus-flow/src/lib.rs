//! Parser and sans-IO interpreter for the Plivo / Vobiz XML call-flow language (API.md §7–§10).
//!
//! [`parse`] turns an answer document into a typed [`Response`]: one [`Element`] per verb,
//! every documented attribute as a typed field with its documented default applied (for
//! example `maxMembers` = 200, API.md §15; `stayAlone` and `timeLimit` stay `None` when absent
//! because the engine's configuration and room timer treat absence specially).
//! [`Interpreter`] runs a document without doing any IO: the engine carries out each
//! [`Step`] and reports back; [`Collector`] collects digits against a clock passed in.
//!
//! # Rules
//!
//! - The root must be `<Response>`; documents over [`MAX_DOCUMENT_BYTES`] are refused before
//!   any parsing.
//! - Unknown *attributes* are ignored (API.md §7.1 [DECISION]); unknown *elements* are an
//!   error, as is a known element in the wrong place.
//! - Booleans are `true` / `false` in any case; integers are range-checked; enumerations
//!   (`method`, `voice`, `recordFileFormat`, sounds…) must be one of their values. A bad value
//!   is a [`FlowError::BadAttribute`] naming the element and attribute.
//! - `<GetDigits>`, `<GetInput>` and `<Gather>` all become [`Element::GetDigits`].
//!
//! # Invariants
//!
//! The input comes from the network (answer URLs), so [`parse`] never panics: every bad
//! document yields a [`FlowError`]. Nesting depth is capped, so hostile input cannot exhaust
//! the stack.
//!
//! # Example
//!
//! ```
//! use chorus_flow::{parse, Element};
//!
//! let doc = r#"<Response>
//!     <Speak voice="MAN">Joining you now</Speak>
//!     <Conference muted="true" maxParticipants="10">
//!         sales-standup
//!     </Conference>
//! </Response>"#;
//! let response = parse(doc)?;
//! let Element::Conference(conf) = &response.elements[1] else { panic!("not a conference") };
//! assert_eq!(conf.room, "sales-standup");
//! assert!(conf.muted);
//! assert_eq!(conf.max_members, 10);
//! assert_eq!(conf.stay_alone, None); // absent: the engine's default applies
//! assert_eq!(conf.time_limit_secs(), 14_400); // documented default
//! # Ok::<(), chorus_flow::FlowError>(())
//! ```

mod ast;
mod attrs;
mod convert;
pub mod digits;
mod error;
pub mod interp;
mod tree;

pub use ast::*;
pub use digits::{Collector, DigitsMatcher};
pub use error::FlowError;
pub use interp::{
    DigitsOutcome, EndCause, FetchFailure, FetchKind, Input, Interpreter, Limits, Params, Step,
    Target,
};

/// Largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 100 * 1024;

/// Parses one call-flow document.
pub fn parse(xml: &str) -> Result<Response, FlowError> {
    if xml.len() > MAX_DOCUMENT_BYTES {
        return Err(FlowError::TooLarge {
            size: xml.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let root = tree::build(xml)?;
    convert::response(&root)
}
