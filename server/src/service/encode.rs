//! Where [`EncodedResponse`] lived before the wire module: kept so that code importing it
//! from here builds while it moves to [`crate::wire`]; new code imports it from there.

pub use crate::wire::EncodedResponse;
