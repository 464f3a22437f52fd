//! The outputs every dataset shares (bronze, quarantine, the console preview), and the Arrow
//! column helpers the datasets' outputs build their rows with. Where their pieces go is the
//! sinks' business ([`crate::sinks`]).

pub mod bronze;
pub mod columns;
pub mod console;
pub mod quarantine;
