//! (filled by the trust work)

mod support;
