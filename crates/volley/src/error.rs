//! `Error`: a configuration or setup failure (a bad target, an invalid option), as opposed to
//! a call's [`crate::Status`].

use std::fmt;

/// A failure to set something up: an invalid target, an invalid option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error saying `message`; for crates built on Volley (resolvers, balancers) that
    /// report their own setup failures.
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
