//! Query packs: an operation's YAML and SQL template as a checked model
//! ([`pack`], [`loader`]), its parameters ([`params`]), rendering with bind
//! parameters ([`render`]), cache keys ([`cache`]), the checks run before merge
//! ([`sqlcheck`], [`cost`], [`breaking`]) and pack tests as data ([`packtest`]).

pub mod breaking;
pub mod cache;
pub mod cost;
pub mod loader;
pub mod pack;
pub mod packtest;
pub mod params;
pub mod render;
pub mod sqlcheck;
