//! `idch-autoscaler check`: validates a configuration (`--config`) and warns about
//! thrash-prone alert rules (`--rules`).

pub mod rules;
