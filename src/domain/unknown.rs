/// A stored or received word that names no value of an enum: `unknown machine state 'lost'`.
/// The `FromStr` impls of the domain's enums return it, so that a bad value is an error that
/// names what it is, never a silent default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}'")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

impl UnknownValue {
    pub fn new(what: &'static str, value: &str) -> Self {
        Self {
            what,
            value: value.to_string(),
        }
    }
}
