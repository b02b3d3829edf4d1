//! Small tools the binaries share: argument parsing, logging, a seeded RNG.

pub mod cli;
pub mod histogram;
pub mod logger;
pub mod rng;
#[doc(hidden)]
pub mod testing;

/// An error with its `source()` chain, `: `-separated, for a log line. A cause whose text the
/// message already shows (errors that print their source themselves) is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}
