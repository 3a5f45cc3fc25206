//! The IDCloudHost side: the API client, its wire types, and the built-in simulator.

pub mod client;
pub mod sim;
pub mod wire;

pub use client::{CloudClient, CloudError};
pub use wire::{FloatingIp, Vm};
