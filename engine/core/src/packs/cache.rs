//! Cache keys: sha256 over the pack's identity, its content, the resolved
//! parameters and the data version.

use sha2::{Digest, Sha256};

use crate::packs::loader::Pack;
use crate::packs::params::ResolvedParams;

/// The cache key of one operation call, as lowercase hex. `data_version` is `None`
/// where no data version is known (the CLI); the API always passes it, so that no
/// answer given after an ingest commits comes from data before it.
pub fn cache_key(pack: &Pack, params: &ResolvedParams, data_version: Option<i64>) -> String {
    let mut h = Sha256::new();
    for part in [
        "quarry-cache-v1",
        pack.spec.name.as_str(),
        pack.spec.version.as_str(),
        pack.content_digest.as_str(),
        params.canonical_json().as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    match data_version {
        Some(v) => h.update(v.to_string().as_bytes()),
        None => h.update(b"-"),
    }
    hex::encode(h.finalize())
}
