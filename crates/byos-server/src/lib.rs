//! The byos server: start-up ([`serve`]), TLS ([`tls`]), listeners ([`listener`]), the operator's
//! control socket ([`control`]) and the ready marker ([`bootstrap`]). The binary (`main.rs`) is
//! the only place that reads the command line and the environment.

pub mod bootstrap;
pub mod control;
pub mod listener;
pub mod serve;
pub mod tls;

pub use serve::{RunningServer, ServeConfig, Services, start};
