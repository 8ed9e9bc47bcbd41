//! The local object store: a folder, with links signed by HMAC-SHA256 that the
//! API itself serves at `/results/{key}?expires=..&signature=..`.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use quarry_core::ports::{ObjectStore, ObjectWriter, PortError, PortResult};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Objects as files under `root`; keys are relative paths of safe segments.
pub struct FolderStore {
    root: PathBuf,
    signing_key: Vec<u8>,
}

impl FolderStore {
    pub fn new(root: PathBuf, signing_key: Vec<u8>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&root).map_err(|e| {
            anyhow::anyhow!("cannot create the results folder {}: {e}", root.display())
        })?;
        Ok(FolderStore { root, signing_key })
    }

    fn path(&self, key: &str) -> PortResult<PathBuf> {
        let rel = Path::new(key);
        let safe = !key.is_empty()
            && rel.components().all(|c| matches!(c, Component::Normal(_)))
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !safe {
            return Err(PortError::Invalid(format!("invalid object key {key:?}")));
        }
        Ok(self.root.join(rel))
    }

    fn signature(&self, key: &str, expires: i64) -> String {
        let mut mac = match HmacSha256::new_from_slice(&self.signing_key) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Removes the objects under `prefix` (a folder: `pages`, `answers`) last
    /// written longer than `age` ago, and the folders left empty; how many.
    pub fn sweep_prefix(&self, prefix: &str, age: std::time::Duration) -> usize {
        fn walk(dir: &Path, age: std::time::Duration, removed: &mut usize) -> bool {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return false;
            };
            let mut empty = true;
            for e in entries.flatten() {
                let p = e.path();
                let Ok(meta) = e.metadata() else {
                    empty = false;
                    continue;
                };
                if meta.is_dir() {
                    if walk(&p, age, removed) && std::fs::remove_dir(&p).is_ok() {
                        continue;
                    }
                    empty = false;
                } else if meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|e| e > age)
                    && std::fs::remove_file(&p).is_ok()
                {
                    *removed += 1;
                } else {
                    empty = false;
                }
            }
            empty
        }
        let mut removed = 0;
        if let Ok(dir) = self.path(prefix) {
            walk(&dir, age, &mut removed);
        }
        removed
    }

    /// Removes an object; missing objects are fine.
    pub async fn delete(&self, key: &str) -> PortResult<()> {
        let p = self.path(key)?;
        match tokio::fs::remove_file(&p).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(PortError::Unavailable(format!("deleting {key}: {e}"))),
        }
    }
}

#[async_trait]
impl ObjectStore for FolderStore {
    async fn put(&self, key: &str, body: Vec<u8>, _content_type: &str) -> PortResult<()> {
        let p = self.path(key)?;
        if let Some(dir) = p.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| PortError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        // Write beside, then rename: a reader never sees half an object.
        let tmp = p.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&tmp, body)
            .await
            .map_err(|e| PortError::Unavailable(format!("writing {}: {e}", tmp.display())))?;
        tokio::fs::rename(&tmp, &p)
            .await
            .map_err(|e| PortError::Unavailable(format!("storing {key}: {e}")))
    }

    async fn writer<'a>(
        &'a self,
        key: &str,
        _content_type: &str,
    ) -> PortResult<Box<dyn ObjectWriter + 'a>> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| PortError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        let partial = path.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| PortError::Unavailable(format!("writing {}: {e}", partial.display())))?;
        Ok(Box::new(FolderWriter {
            file: Some(tokio::io::BufWriter::with_capacity(1 << 20, file)),
            partial,
            path,
            written: 0,
        }))
    }

    async fn get(&self, key: &str) -> PortResult<Option<Vec<u8>>> {
        let p = self.path(key)?;
        match tokio::fs::read(&p).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PortError::Unavailable(format!("reading {key}: {e}"))),
        }
    }

    async fn signed_url(&self, key: &str, ttl: Duration) -> PortResult<String> {
        self.path(key)?;
        let expires = chrono::Utc::now().timestamp() + ttl.as_secs() as i64;
        Ok(format!(
            "/results/{key}?expires={expires}&signature={}",
            self.signature(key, expires)
        ))
    }

    fn local_file(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }

    fn verify_signed(&self, key: &str, expires: i64, signature: &str) -> bool {
        if expires < chrono::Utc::now().timestamp() {
            return false;
        }
        let Ok(sig) = hex::decode(signature) else {
            return false;
        };
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.signing_key) else {
            return false;
        };
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac.verify_slice(&sig).is_ok()
    }
}

/// An object of the folder being written: a file beside its final name,
/// renamed into place by `finish` (so a reader never sees half an object) and
/// removed if the writer is aborted or dropped.
struct FolderWriter {
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    partial: PathBuf,
    path: PathBuf,
    written: u64,
}

#[async_trait]
impl ObjectWriter for FolderWriter {
    async fn write(&mut self, chunk: &[u8]) -> PortResult<()> {
        use tokio::io::AsyncWriteExt;
        let Some(file) = self.file.as_mut() else {
            return Err(PortError::Invalid("the object was already finished".into()));
        };
        file.write_all(chunk).await.map_err(|e| {
            PortError::Unavailable(format!("writing {}: {e}", self.partial.display()))
        })?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> PortResult<u64> {
        use tokio::io::AsyncWriteExt;
        let Some(mut file) = self.file.take() else {
            return Err(PortError::Invalid("the object was already finished".into()));
        };
        let stored = async {
            file.flush().await?;
            drop(file);
            tokio::fs::rename(&self.partial, &self.path).await
        }
        .await;
        match stored {
            Ok(()) => Ok(self.written),
            Err(e) => {
                let _ = std::fs::remove_file(&self.partial);
                Err(PortError::Unavailable(format!(
                    "storing {}: {e}",
                    self.path.display()
                )))
            }
        }
    }

    async fn abort(self: Box<Self>) {
        // Drop removes the partial file.
    }
}

impl Drop for FolderWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// The signing key: configured, or generated once into `<data_dir>/signing.key`.
pub fn signing_key(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(k) = configured {
        if k.len() < 32 {
            anyhow::bail!("storage.signing_key must have at least 32 characters");
        }
        return Ok(k.as_bytes().to_vec());
    }
    let path = data_dir.join("signing.key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if let Ok(k) = hex::decode(existing.trim()) {
            if k.len() >= 32 {
                return Ok(k);
            }
        }
        anyhow::bail!(
            "{} is not a valid signing key; delete it to generate a new one",
            path.display()
        );
    }
    std::fs::create_dir_all(data_dir)?;
    let key: [u8; 32] = rand::random();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    f.write_all(hex::encode(key).as_bytes())?;
    Ok(key.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signed_links_verify_and_tampering_fails() {
        let dir = std::env::temp_dir().join(format!("quarry-store-{}", uuid::Uuid::new_v4()));
        let s = FolderStore::new(dir.clone(), b"k".repeat(32)).expect("store");
        s.put("results/a.json", b"[1]".to_vec(), "application/json")
            .await
            .expect("put");
        assert_eq!(
            s.get("results/a.json").await.expect("get"),
            Some(b"[1]".to_vec())
        );
        assert_eq!(s.get("results/none.json").await.expect("get"), None);
        let url = s
            .signed_url("results/a.json", Duration::from_secs(60))
            .await
            .expect("url");
        let q = url.split_once('?').map(|x| x.1).unwrap_or_default();
        let pairs: std::collections::HashMap<_, _> =
            url::form_urlencoded::parse(q.as_bytes()).collect();
        let exp: i64 = pairs["expires"].parse().expect("expires");
        assert!(s.verify_signed("results/a.json", exp, &pairs["signature"]));
        assert!(!s.verify_signed("results/b.json", exp, &pairs["signature"]));
        assert!(!s.verify_signed("results/a.json", exp + 1, &pairs["signature"]));
        assert!(!s.verify_signed("results/a.json", 1, &pairs["signature"]));
        assert!(s.put("../escape", vec![], "x").await.is_err());
        assert!(s.get("/etc/passwd").await.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn sweeping_removes_only_old_objects_and_empty_folders() {
        let dir = std::env::temp_dir().join(format!("quarry-sweep-{}", uuid::Uuid::new_v4()));
        let s = FolderStore::new(dir.clone(), b"k".repeat(32)).expect("store");
        for key in [
            "pages/old/0.json",
            "pages/old/meta.json",
            "pages/new/0.json",
        ] {
            s.put(key, b"[]".to_vec(), "application/json")
                .await
                .expect("put");
        }
        let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
        for f in ["pages/old/0.json", "pages/old/meta.json"] {
            std::fs::File::options()
                .write(true)
                .open(dir.join(f))
                .and_then(|h| h.set_modified(two_hours_ago))
                .expect("age the file");
        }
        assert_eq!(s.sweep_prefix("pages", Duration::from_secs(3600)), 2);
        assert!(
            !dir.join("pages/old").exists(),
            "the emptied folder went too"
        );
        assert!(dir.join("pages/new/0.json").exists());
        assert_eq!(s.sweep_prefix("answers", Duration::from_secs(1)), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
