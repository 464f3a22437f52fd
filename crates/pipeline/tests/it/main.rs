//! Integration tests: separate processes (`pipeline broker`, `pipeline producer`,
//! `pipeline processor`) against the embedded broker, and the files they leave behind.
//! One test binary for all of them keeps link times low.

mod avro_tests;
mod cassandra_tests;
mod compose_tests;
mod config_tests;
mod delta_tests;
mod docs_tests;
mod events_tests;
mod exactly_once_tests;
mod financial_tests;
mod fraud_tests;
mod harness;
mod kafka_tests;
mod local_stack_tests;
mod monitoring_tests;
mod outage_tests;
mod processor_tests;
mod producer_tests;
mod reliability_tests;
mod scale_out_tests;
mod secure_kafka_tests;
