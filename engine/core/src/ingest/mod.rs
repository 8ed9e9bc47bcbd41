//! Ingest definitions: a source's versioned mapping and its checker
//! ([`mapping`]), the field transforms ([`transform`]), the streaming reader of
//! JSON, NDJSON and CSV exports ([`stream`]), the canonical tables a mapping may
//! fill ([`canonical`]) and the dry run that mapping tests compare ([`preview`]).

pub mod canonical;
pub mod mapping;
pub mod preview;
pub mod stream;
pub mod transform;
