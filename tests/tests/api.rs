//! Black-box HTTP tests: the real `quarry serve` on a loopback port, a fresh
//! database, plain HTTP/1.1 requests written by hand on a TcpStream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use quarry_tests::{fixture_db, quarry_bin, repo_root, TestDb};
use serde_json::{json, Value};

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(db: &TestDb, extra: &[&str]) -> Server {
    let mut child = Command::new(quarry_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .current_dir(repo_root())
        .env("DATABASE_URL", &db.url)
        .env_remove("QUARRY_ALLOW_CUSTOM_SQL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start quarry serve");
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
    Server { child, addr }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn request(
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
    if !body.is_empty() {
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
    let body = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
    Reply {
        status,
        headers,
        body,
    }
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

#[tokio::test]
async fn the_walkthrough_requests_work() {
    let db = fixture_db().await;
    let s = serve(&db, &[]);
    let h = request(&s, "GET", "/health", None, &[]);
    assert_eq!(h.status, 200);
    assert_eq!(
        (h.body["database"].clone(), h.body["operations"].clone()),
        (json!("reachable"), json!(11))
    );
    assert!(
        h.header("x-request-id").is_some(),
        "every response carries a request id"
    );

    let r = request(&s, "GET", "/analytics?operation=simple_demo", None, &[]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["rows"][0]["entity"], json!("organizations"));
    assert_eq!(r.body["rows"][0]["row_count"], json!(11));

    let r = request(&s, "GET", "/analytics?operation=database_info", None, &[]);
    assert_eq!(r.status, 200);
    let r = request(
        &s,
        "GET",
        "/analytics?operation=customer_analysis",
        None,
        &[],
    );
    assert_eq!((r.status, r.body["row_count"].clone()), (200, json!(11)));
    let r = request(
        &s,
        "POST",
        "/analytics",
        Some(
            r#"{"operation": "customer_analysis", "parameters": {"metric": "lifetime_value", "group_by": "industry"}}"#,
        ),
        &[],
    );
    assert_eq!(r.status, 200, "{:?}", r.body);

    let ops = request(&s, "GET", "/operations", None, &[]);
    assert_eq!(ops.body["operations"].as_array().map(Vec::len), Some(11));
    let one = request(&s, "GET", "/operations/customer_analysis", None, &[]);
    assert_eq!(
        one.body["parameters"]["properties"]["group_by"]["enum"],
        json!(["industry", "country", "tier", "source_system", "region"])
    );
}

#[tokio::test]
async fn errors_are_problem_json() {
    let db = fixture_db().await;
    let s = serve(&db, &[]);
    let cases: [(&str, &str, Option<&str>, u16, &str); 7] = [
        (
            "POST",
            "/analytics",
            Some(r#"{"operation": "invalid_operation"}"#),
            400,
            "/problems/unknown-operation",
        ),
        (
            "POST",
            "/analytics",
            Some(r#"{"operation": "simple_demo", "#),
            400,
            "/problems/malformed-request",
        ),
        (
            "GET",
            "/analytics?operation=customer_analysis&group_by=bogus",
            None,
            422,
            "/problems/invalid-parameters",
        ),
        (
            "GET",
            "/analytics?operation=revenue_analysis&moving_window=abc",
            None,
            422,
            "/problems/invalid-parameters",
        ),
        (
            "GET",
            "/analytics",
            None,
            400,
            "/problems/malformed-request",
        ),
        (
            "POST",
            "/analytics",
            Some(
                r#"{"operation": "custom_complex_query", "parameters": {"query": "SELECT * FROM non_existent_table"}}"#,
            ),
            403,
            "/problems/forbidden",
        ),
        ("GET", "/nowhere", None, 404, "/problems/not-found"),
    ];
    for (method, path, body, status, kind) in cases {
        let r = request(&s, method, path, body, &[]);
        assert_eq!(r.status, status, "{method} {path}: {:?}", r.body);
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{method} {path}"
        );
        assert_eq!(r.body["type"], json!(kind), "{method} {path}");
        assert_eq!(r.body["status"], json!(status));
        assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let r = request(
        &s,
        "GET",
        "/analytics?operation=customer_analysis&group_by=bogus",
        None,
        &[],
    );
    assert_eq!(r.body["errors"][0]["parameter"], json!("group_by"));
    let huge = format!("/analytics?operation=simple_demo&x={}", "a".repeat(9000));
    assert_eq!(request(&s, "GET", &huge, None, &[]).status, 414);
}

#[tokio::test]
async fn custom_sql_errors_name_the_sqlstate_when_enabled() {
    let db = fixture_db().await;
    let s = serve(&db, &["--allow-custom-sql"]);
    let r = request(
        &s,
        "POST",
        "/analytics",
        Some(
            r#"{"operation": "custom_complex_query", "parameters": {"query": "SELECT * FROM non_existent_table"}}"#,
        ),
        &[],
    );
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["type"], json!("/problems/sql-error"));
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("42P01"),
        "{:?}",
        r.body
    );
    let ok = request(
        &s,
        "POST",
        "/analytics",
        Some(
            r#"{"operation": "custom_complex_query", "parameters": {"query": "SELECT count(*) AS n FROM canonical.orders"}}"#,
        ),
        &[],
    );
    assert_eq!(
        (ok.status, ok.body["rows"][0]["n"].clone()),
        (200, json!(8))
    );
}

#[tokio::test]
async fn cache_hits_until_an_ingest_commits() {
    let db = fixture_db().await;
    let s = serve(&db, &[]);
    let path = "/analytics?operation=simple_demo&source_system=crm";
    let first = request(&s, "GET", path, None, &[]);
    assert_eq!(first.header("x-cache"), Some("miss"));
    let etag = first.header("etag").expect("etag").to_string();
    let second = request(&s, "GET", path, None, &[]);
    assert_eq!(second.header("x-cache"), Some("hit"));
    assert_eq!(second.body, first.body);
    assert_eq!(
        request(&s, "GET", path, None, &[("If-None-Match", &etag)]).status,
        304
    );
    // An ingest commits: the data version moves and the next answer is fresh.
    let out = Command::new(quarry_bin())
        .args([
            "ingest",
            "tests/fixtures/ingest/exports/crm-data/accounts-2024-06-01-00.json",
        ])
        .current_dir(repo_root())
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("ingest");
    assert!(out.status.success());
    let third = request(&s, "GET", path, None, &[]);
    assert_eq!(third.header("x-cache"), Some("miss"));
    assert_eq!(
        third.body["rows"][0]["row_count"],
        json!(9),
        "6 fixture accounts + 3 ingested"
    );
    assert_ne!(third.header("etag"), Some(etag.as_str()));
}

#[test]
fn refuses_a_public_address_without_keys() {
    let out = Command::new(quarry_bin())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .current_dir(repo_root())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to listen"));
}
