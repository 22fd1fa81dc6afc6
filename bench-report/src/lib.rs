//! The benchmark report of `supervisor bench`, apart from measuring it: pure
//! data and text, no root, no testbed, no processes.
//!
//! Bottom-up: [`stats`] (median, spread, flags), [`report`] (the results
//! model and its markdown), [`resume`] (saving and continuing a report),
//! [`plot`] (the figures).

pub mod plot;
pub mod report;
pub mod resume;
pub mod stats;
