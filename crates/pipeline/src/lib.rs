//! The local stack's pieces shared by the `pipeline` and `bench` binaries and the tests.

pub mod admin;
pub mod backpressure;
pub mod broker;
