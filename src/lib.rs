//! The library behind `oci-push`: push an OCI image layout to a registry, by digest, then its
//! tags. The binary (`main.rs`) is a thin shell over it; the modules are public so that tests,
//! property tests and fuzzers can reach the parsers directly.

#![forbid(unsafe_code)]

pub mod artifact;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod destinations;
pub mod error;
pub mod files;
pub mod layout;
pub mod push;
pub mod reference;
pub mod referrer;
pub mod registry;
pub mod report;
pub mod tags;
pub mod units;
