//! The benchmark report of `supervisor bench`, apart from measuring it: pure
//! data and text, no root, no testbed, no processes.
//!
//! Bottom-up: [`stats`] (median, spread, flags), [`model`] (the results
//! model: cells, their medians and ratios), [`markdown`] (its human form),
//! [`resume`] (saving and continuing a report), [`plot`] (the figures).

pub mod markdown;
pub mod model;
pub mod plot;
pub mod resume;
pub mod stats;
