//! The IDCloudHost API client and its wire types.

pub mod client;
pub mod wire;

pub use client::{CloudClient, CloudError};
pub use wire::{FloatingIp, Vm};
