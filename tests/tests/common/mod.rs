//! A real `quarry serve` on a loopback port and plain HTTP/1.1 requests written
//! by hand on a TcpStream (no client library between the test and the wire).

#![allow(dead_code)]

pub mod contract;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quarry_tests::{quarry_bin, repo_root, TestDb};
use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    /// The server's /openapi.json, every response is checked against.
    pub contract: contract::Slot,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Stops the server the hard way (SIGKILL): no graceful shutdown.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary folder, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("quarry-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of `queries/` plus the test packs of tests/fixtures/packs.
pub fn queries_with_test_packs() -> TempDir {
    let dir = TempDir::new("queries");
    for src in [
        repo_root().join("queries"),
        repo_root().join("tests/fixtures/packs"),
    ] {
        for e in std::fs::read_dir(&src).expect("read queries") {
            let p = e.expect("entry").path();
            if p.is_file() {
                std::fs::copy(&p, dir.0.join(p.file_name().expect("name"))).expect("copy");
            }
        }
    }
    dir
}

/// Starts `quarry serve` on 127.0.0.1:0 against `db` with extra arguments and
/// environment, and waits for its "listening" line.
pub fn serve_with(db: &TestDb, args: &[&str], env: &[(&str, &str)], data_dir: &Path) -> Server {
    let mut cmd = Command::new(quarry_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(repo_root())
        .env("DATABASE_URL", &db.url)
        .env("QUARRY_DATA_DIR", data_dir)
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("QUARRY_TEST_SERVER_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    for (k, _) in std::env::vars() {
        if k.starts_with("QUARRY_") && k != "QUARRY_TEST_ADMIN_URL" && k != "QUARRY_LOG" {
            cmd.env_remove(&k);
        }
    }
    cmd.env("QUARRY_DATA_DIR", data_dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start quarry serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "unexpected first line: {line:?}"
    );
    Server {
        child,
        addr,
        data_dir: data_dir.to_path_buf(),
        contract: contract::Slot::new(),
    }
}

/// `quarry serve` with the shipped packs beside the test packs
/// ([`queries_with_test_packs`]) and `env` set: the server, its queries folder
/// and its data folder (keep both while the server runs).
pub fn serve_test_packs(db: &TestDb, env: &[(&str, &str)]) -> (Server, TempDir, TempDir) {
    let q = queries_with_test_packs();
    let data = TempDir::new("data");
    let s = serve_with(
        db,
        &["--queries", q.0.to_str().unwrap_or_default()],
        env,
        &data.0,
    );
    (s, q, data)
}

/// `quarry serve` with defaults and a private data folder (kept with the server).
pub fn serve(db: &TestDb, args: &[&str]) -> (Server, TempDir) {
    let data = TempDir::new("data");
    let s = serve_with(db, args, &[], &data.0);
    (s, data)
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub raw: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn request(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> Reply {
    let mut stream = TcpStream::connect(&s.addr).expect("connect");
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        s.addr,
        body.len()
    );
    if !body.is_empty()
        && !extra_headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let payload = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    let body = serde_json::from_str(&payload).unwrap_or(Value::String(payload.clone()));
    let reply = Reply {
        status,
        headers,
        body,
        raw: payload,
    };
    if path != "/openapi.json" && !path.starts_with("/results/") {
        let c = s.contract.get_or_init(|| {
            let doc = request(s, "GET", "/openapi.json", None, &[]);
            contract::Contract::new(doc.body)
        });
        if let Err(e) = c.check(
            method,
            path,
            reply.status,
            reply.header("content-type"),
            &reply.raw,
        ) {
            panic!("the response breaks the OpenAPI contract: {e}");
        }
    }
    reply
}

pub fn get(s: &Server, path: &str) -> Reply {
    request(s, "GET", path, None, &[])
}

pub fn post(s: &Server, path: &str, body: &str) -> Reply {
    request(s, "POST", path, Some(body), &[])
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n.min(after.len())]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls a job until it is succeeded or failed; returns its final status.
pub fn wait_job(s: &Server, id: &str, headers: &[(&str, &str)]) -> Value {
    wait_for("the job to finish", Duration::from_secs(60), || {
        let r = request(s, "GET", &format!("/analytics/jobs/{id}"), None, headers);
        assert_eq!(r.status, 200, "{:?}", r.body);
        let state = r.body["state"].as_str().unwrap_or_default().to_string();
        (state == "succeeded" || state == "failed").then_some(r.body)
    })
}

/// Runs a `quarry` command against `db`; returns stdout, asserting success.
pub fn quarry(db: &TestDb, args: &[&str]) -> String {
    let out = Command::new(quarry_bin())
        .args(args)
        .current_dir(repo_root())
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run quarry");
    assert!(
        out.status.success(),
        "quarry {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}
