//! # quarry-core
//!
//! The part of Quarry that knows what an operation *is*, and nothing about where it
//! runs: the query-pack model, parameter validation, SQL rendering with bind
//! parameters and cache keys ([`packs`]); source mappings and the streaming reader
//! of exports ([`ingest`]); the company matching rules ([`companies`]); file:line
//! diagnostics. It does no network or database
//! I/O; [`files`] is its only contact with the file system (reading definitions).
//!
//! ```
//! use quarry_core::packs::{loader::{build_pack_set, PackSource}, params::InputStyle};
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

// Definitions and their checks, in two halves and the company rules between them:
// query packs (what an operation is, how it is called and rendered) and ingest
// mappings (how a source's files become canonical rows); shared below them are
// diagnostics, definition files, the job state machine and the runtime ports.
pub mod companies;
pub mod diag;
pub mod files;
pub mod ingest;
pub mod jobs;
pub mod packs;
pub mod ports;
pub mod strict_json;

pub use diag::Diagnostic;

/// Whether a definition's `version` is MAJOR.MINOR.PATCH (packs, mappings,
/// company rules); the pattern is compiled once per process.
pub fn is_semver(version: &str) -> bool {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^\d+\.\d+\.\d+$").unwrap_or_else(|_| unreachable!())
    });
    RE.is_match(version)
}
pub use packs::loader::{Pack, PackSet, PackSource};
pub use packs::pack::PackSpec;
