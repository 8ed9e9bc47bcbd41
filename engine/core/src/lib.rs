//! # quarry-core
//!
//! The part of Quarry that knows what an operation *is*, and nothing about where it
//! runs: the query-pack model, parameter validation, SQL rendering with bind
//! parameters, cache keys and file:line diagnostics. It does no network or database
//! I/O; [`files`] is its only contact with the file system (reading definitions).
//!
//! ```
//! use quarry_core::{loader::{build_pack_set, PackSource}, params::InputStyle};
//! let yaml = "# yaml-language-server: $schema=../schemas/query-pack.schema.json\n\
//! name: top\nversion: 1.0.0\ntitle: Top\ndescription: Top rows\ncost: light\n\
//! timeout_seconds: 5\ncache_ttl_seconds: 60\nmax_rows: 100\n\
//! parameters:\n  limit: {type: integer, description: rows, default: 10, minimum: 1}\n\
//! columns:\n  - {name: n, type: integer}\n";
//! let src = PackSource { yaml_file: "top.yaml".into(), yaml_text: yaml.into(),
//!     sql_file: "top.sql".into(), sql_text: Some("SELECT n FROM t LIMIT {{ limit }}".into()) };
//! let set = build_pack_set(&[src]).unwrap();
//! let pack = set.get("top").unwrap();
//! let params = pack.resolve(&serde_json::Map::new(), InputStyle::Json).unwrap();
//! let q = pack.render(&params).unwrap();
//! assert_eq!(q.sql, "SELECT n FROM t LIMIT $1");
//! ```

pub mod breaking;
pub mod cache;
pub mod canonical;
pub mod companies;
pub mod cost;
pub mod diag;
pub mod files;
pub mod jobs;
pub mod loader;
pub mod mapping;
pub mod pack;
pub mod packtest;
pub mod params;
pub mod ports;
pub mod preview;
pub mod render;
pub mod sqlcheck;
pub mod stream;
pub mod strict_json;
pub mod transform;

pub use diag::Diagnostic;
pub use loader::{Pack, PackSet, PackSource};
pub use pack::PackSpec;
