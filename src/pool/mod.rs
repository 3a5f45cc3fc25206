//! The pool's pure rules: backends and their lifecycle, the webhook decision and the
//! reconciler's plan.
//!
//! Architecture invariant: nothing here does I/O, reads a clock, draws a random number or
//! (de)serialises. Every function takes data (including `now`) and returns data.

pub mod backend;
pub mod cost;
pub mod decide;
pub mod plan;
pub mod refresh;
pub mod schedule;
pub mod slow_start;
pub mod target;

pub use backend::*;
