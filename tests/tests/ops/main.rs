//! Every operation in queries/, run against a fresh database holding the small
//! fixture dataset (tests/fixtures/small.sql), with expected values computed by
//! hand from that dataset, never by the pack's own SQL.

// Tuples of expected values read best inline in these tests.
#![allow(clippy::type_complexity)]

mod support;

mod custom_complex_query;
mod simple_demo;

mod customer_analysis;
mod multi_dimensional_analytics;
mod revenue_analysis;

mod cross_system_integrity;
mod data_integrity_analysis;
mod relationship_analysis;

mod database_info;
mod entity_resolution;
mod time_series_patterns;
