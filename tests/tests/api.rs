//! Black-box HTTP tests of the synchronous API: the real `quarry serve` on a
//! loopback port, a fresh database, plain HTTP/1.1 requests (see common/).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use quarry_tests::{fixture_db, quarry_bin, repo_root};
use serde_json::json;

#[tokio::test]
async fn the_walkthrough_requests_work() {
    let db = fixture_db().await;
    let (s, _data) = serve(&db, &[]);
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
    let (s, _data) = serve(&db, &[]);
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
    // A key given twice is refused, not silently the last one.
    let r = post(
        &s,
        "/analytics",
        r#"{"operation": "customer_analysis", "parameters": {"group_by": "country", "group_by": "industry"}}"#,
    );
    assert_eq!(
        (r.status, r.body["type"].clone()),
        (400, json!("/problems/malformed-request")),
        "{:?}",
        r.body
    );
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("duplicate key `group_by`")),
        "{:?}",
        r.body
    );
    // A range the wrong way round names both ends.
    let r = get(
        &s,
        "/analytics?operation=revenue_analysis&start_date=2024-05-01&end_date=2024-04-01",
    );
    assert_eq!(r.status, 422, "{:?}", r.body);
    let named: Vec<&str> = r.body["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["parameter"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(named, ["start_date", "end_date"], "{:?}", r.body);
    let huge = format!("/analytics?operation=simple_demo&x={}", "a".repeat(9000));
    let r = get(&s, &huge);
    assert_eq!(
        (r.status, r.body["type"].clone()),
        (414, json!("/problems/query-too-long"))
    );
    let big = format!(
        r#"{{"operation": "simple_demo", "parameters": {{"x": "{}"}}}}"#,
        "a".repeat(70_000)
    );
    for path in ["/analytics", "/analytics/jobs"] {
        let r = post(&s, path, &big);
        assert_eq!(
            (r.status, r.body["type"].clone()),
            (413, json!("/problems/payload-too-large")),
            "{path}"
        );
    }
    let r = request(&s, "DELETE", "/analytics", None, &[]);
    assert_eq!(
        (r.status, r.body["type"].clone()),
        (405, json!("/problems/method-not-allowed"))
    );
    let r = request(
        &s,
        "POST",
        "/analytics",
        Some("operation=simple_demo"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(
        (r.status, r.body["type"].clone()),
        (400, json!("/problems/malformed-request"))
    );
}

#[tokio::test]
async fn custom_sql_errors_name_the_sqlstate_when_enabled() {
    let db = fixture_db().await;
    // Caller SQL needs the admin scope, which open access never has.
    let key = quarry(
        &db,
        &["keys", "create", "--name", "ops", "--scope", "admin"],
    );
    let auth = format!("Bearer {}", key.trim());
    let hdr = [("Authorization", auth.as_str())];
    let (s, _data) = serve(&db, &["--allow-custom-sql"]);
    let r = request(
        &s,
        "POST",
        "/analytics",
        Some(
            r#"{"operation": "custom_complex_query", "parameters": {"query": "SELECT * FROM non_existent_table"}}"#,
        ),
        &hdr,
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
        &hdr,
    );
    assert_eq!(
        (ok.status, ok.body["rows"][0]["n"].clone()),
        (200, json!(8))
    );
}

#[tokio::test]
async fn cache_hits_until_an_ingest_commits() {
    let db = fixture_db().await;
    let (s, _data) = serve(&db, &[]);
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
        json!(10),
        "6 fixture accounts + 4 ingested (the bad e-mail is kept in attributes)"
    );
    assert_ne!(third.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn heavy_operations_on_the_sync_path_become_jobs() {
    let db = fixture_db().await;
    let (s, _data) = serve(&db, &[]);
    let r = get(
        &s,
        "/analytics?operation=multi_dimensional_analytics&timeframe=3%20months",
    );
    assert_eq!(r.status, 202, "{:?}", r.body);
    let loc = r.header("location").expect("Location").to_string();
    assert_eq!(
        loc,
        format!(
            "/analytics/jobs/{}",
            r.body["job_id"].as_str().unwrap_or("")
        )
    );
    assert!(r.header("retry-after").is_some());
    let done = wait_job(&s, r.body["job_id"].as_str().unwrap_or(""), &[]);
    assert_eq!(done["state"], json!("succeeded"), "{done:?}");
    // The job filled the cache: the same call now answers at once.
    let again = get(
        &s,
        "/analytics?operation=multi_dimensional_analytics&timeframe=3%20months",
    );
    assert_eq!(
        (again.status, again.header("x-cache")),
        (200, Some("hit")),
        "{:?}",
        again.body
    );
}

#[tokio::test]
async fn a_light_query_past_its_timeout_is_504() {
    let db = fixture_db().await;
    let q = queries_with_test_packs();
    let (s, _data) = serve(&db, &["--queries", q.0.to_str().unwrap_or_default()]);
    let r = get(&s, "/analytics?operation=slow_light");
    assert_eq!(r.status, 504, "{:?}", r.body);
    assert_eq!(r.body["type"], json!("/problems/query-timeout"));
}

#[tokio::test]
async fn an_unreachable_database_is_503() {
    let db = fixture_db().await;
    let data = TempDir::new("data");
    // The reader role points at a port where nothing listens.
    let s = serve_with(
        &db,
        &[],
        &[(
            "QUARRY_READER_URL",
            "postgres://quarry_reader@127.0.0.1:9/nowhere",
        )],
        &data.0,
    );
    let h = get(&s, "/health");
    assert_eq!(
        (h.status, h.body["database"].clone()),
        (503, json!("unreachable"))
    );
    let r = get(&s, "/analytics?operation=simple_demo");
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.body["type"], json!("/problems/database-unavailable"));
    assert!(r.header("retry-after").is_some());
    assert!(
        !r.raw.contains("127.0.0.1:9"),
        "no internal detail leaks: {}",
        r.raw
    );
}

#[tokio::test]
async fn openapi_describes_every_operation_and_metrics_count_requests() {
    let db = fixture_db().await;
    let (s, _data) = serve(&db, &[]);
    let doc = get(&s, "/openapi.json");
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], json!("3.1.0"));
    let variants = doc.body["components"]["schemas"]["AnalyticsRequest"]["oneOf"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = variants
        .iter()
        .filter_map(|v| v["properties"]["operation"]["enum"][0].as_str())
        .collect();
    assert_eq!(names.len(), 11, "{names:?}");
    // The latest version answers to its name and to name@MAJOR.
    assert_eq!(
        variants[0]["properties"]["operation"]["enum"][1],
        json!(format!("{}@1", names[0]))
    );
    assert!(names.contains(&"customer_analysis"));
    let ca = variants
        .iter()
        .find(|v| v["properties"]["operation"]["enum"][0] == json!("customer_analysis"))
        .cloned()
        .unwrap_or_default();
    let params = ca["properties"]["parameters"]["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .unwrap_or_default();
    assert_eq!(
        doc.body["components"]["schemas"][params]["properties"]["group_by"]["enum"][0],
        json!("industry")
    );
    for path in [
        "/analytics/jobs",
        "/analytics/jobs/{id}",
        "/analytics/jobs/{id}/result",
        "/metrics",
    ] {
        assert!(doc.body["paths"][path].is_object(), "{path} documented");
    }
    get(&s, "/analytics?operation=simple_demo");
    let m = get(&s, "/metrics");
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain"));
    let line = m
        .raw
        .lines()
        .find(|l| {
            l.starts_with("quarry_http_requests_total{")
                && l.contains("route=\"/analytics\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_default()
        .to_string();
    let n: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(n >= 1.0, "metrics: {line:?}");
    assert!(
        m.raw.contains("quarry_cache_requests_total"),
        "cache metrics present"
    );
}

#[tokio::test]
async fn each_operation_has_typed_paths_and_answers_are_compressed() {
    let db = fixture_db().await;
    let (s, _data) = serve(&db, &[]);
    let doc = get(&s, "/openapi.json").body;
    // Its own paths, typed by the pack: parameters with enums and defaults,
    // rows from the declared columns.
    let op = &doc["paths"]["/analytics/customer_analysis"];
    let params = op["get"]["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let group_by = params
        .iter()
        .find(|p| p["name"] == json!("group_by"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(group_by["in"], json!("query"));
    assert_eq!(group_by["schema"]["default"], json!("industry"));
    assert!(group_by["schema"]["enum"]
        .as_array()
        .is_some_and(|e| e.contains(&json!("country"))));
    let min = params
        .iter()
        .find(|p| p["name"] == json!("min_segment_size"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(min["schema"]["minimum"], json!(1.0));
    assert_eq!(
        op["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        json!("#/components/schemas/CustomerAnalysisParameters")
    );
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["CustomerAnalysisAnswer"]["properties"]["rows"]["items"]["$ref"],
        json!("#/components/schemas/CustomerAnalysisRow")
    );
    assert_eq!(
        schemas["CustomerAnalysisRow"]["properties"]["segment_size"]["type"],
        json!(["integer", "null"])
    );
    // An optional parameter without a value declares no null default.
    let rev = &schemas["RevenueAnalysisParameters"]["properties"]["start_date"];
    assert_eq!(rev["format"], json!("date"));
    assert!(rev.get("default").is_none(), "{rev}");
    // Every documented problem status has the problem document.
    assert_eq!(
        op["get"]["responses"]["422"]["content"]["application/problem+json"]["schema"]["$ref"],
        json!("#/components/schemas/Problem")
    );

    // The paths answer as documented, by query string and by JSON body.
    let by_get = get(
        &s,
        "/analytics/customer_analysis?group_by=country&level=segment",
    );
    assert_eq!(by_get.status, 200, "{}", by_get.raw);
    let by_post = post(
        &s,
        "/analytics/customer_analysis",
        r#"{"group_by": "country", "level": "segment"}"#,
    );
    assert_eq!(by_post.status, 200, "{}", by_post.raw);
    assert_eq!(by_get.body["rows"], by_post.body["rows"]);
    assert!(by_get.body["row_count"].as_u64().is_some_and(|n| n > 1));
    let defaults = post(&s, "/analytics/customer_analysis", "");
    assert_eq!(defaults.body["parameters"]["group_by"], json!("industry"));
    let not_object = post(&s, "/analytics/customer_analysis", "[1]");
    assert_eq!(not_object.status, 400, "{}", not_object.raw);
    let unknown = get(&s, "/analytics/no_such_operation");
    assert_eq!(unknown.status, 404, "{}", unknown.raw);
    let bad = get(&s, "/analytics/customer_analysis?min_segment_size=0");
    assert_eq!(bad.status, 422);
    assert_eq!(
        bad.body["errors"][0]["parameter"],
        json!("min_segment_size")
    );

    // Compression as the client asks, each decoding to the same answer.
    let path = "/analytics/customer_analysis?group_by=country";
    let plain = get(&s, path);
    assert_eq!(plain.header("content-encoding"), None);
    let url = format!("http://{}{path}", s.addr);
    let undecoded = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .build()
        .expect("client");
    for enc in ["gzip", "br", "zstd"] {
        let raw = undecoded
            .get(&url)
            .header("Accept-Encoding", enc)
            .send()
            .await
            .expect("get");
        assert_eq!(
            raw.headers()
                .get("content-encoding")
                .and_then(|v| v.to_str().ok()),
            Some(enc),
            "{enc}"
        );
        let compressed = raw.bytes().await.expect("body").len();
        assert!(
            compressed * 3 < plain.raw.len(),
            "{enc}: {compressed} bytes for {} plain",
            plain.raw.len()
        );
        let b = reqwest::Client::builder();
        let b = match enc {
            "gzip" => b.no_brotli().no_zstd(),
            "br" => b.no_gzip().no_zstd(),
            _ => b.no_gzip().no_brotli(),
        };
        let resp = b
            .build()
            .expect("client")
            .get(&url)
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.expect("decoded json");
        assert_eq!(body["rows"], plain.body["rows"], "{enc}");
    }
}

#[tokio::test]
async fn answers_take_the_format_accept_asks_for() {
    let db = fixture_db().await;
    let (s, _data) = serve(&db, &[]);
    let path = "/analytics/customer_analysis?group_by=country&level=segment";
    let json = get(&s, path);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let rows = json.body["rows"].as_array().cloned().unwrap_or_default();
    let columns: Vec<String> = json.body["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();

    let csv = request(&s, "GET", path, None, &[("Accept", "text/csv")]);
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(csv.header("vary").is_some_and(|v| v.contains("accept")));
    let lines: Vec<&str> = csv.raw.lines().collect();
    assert_eq!(lines.first().copied(), Some(columns.join(",").as_str()));
    assert_eq!(lines.len(), rows.len() + 1, "{}", csv.raw);
    assert_ne!(
        csv.header("etag"),
        json.header("etag"),
        "formats differ in tags"
    );

    let nd = request(
        &s,
        "GET",
        path,
        None,
        &[("Accept", "text/html;q=0.9, application/x-ndjson")],
    );
    assert_eq!(nd.header("content-type"), Some("application/x-ndjson"));
    let nd_rows: Vec<serde_json::Value> = nd
        .raw
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row per line"))
        .collect();
    assert_eq!(nd_rows, rows);

    // The POST form negotiates the same way.
    let posted = request(
        &s,
        "POST",
        "/analytics/customer_analysis",
        Some(r#"{"group_by": "country", "level": "segment"}"#),
        &[("Accept", "text/csv")],
    );
    assert_eq!(posted.raw, csv.raw);

    let refused = request(&s, "GET", path, None, &[("Accept", "application/xml")]);
    assert_eq!(refused.status, 406, "{}", refused.raw);
    assert_eq!(refused.body["type"], json!("/problems/not-acceptable"));
}

/// Lines of a streamed body, counted as they arrive (never held whole), and
/// the first two lines.
async fn count_lines(resp: reqwest::Response) -> (u64, u64, Vec<String>) {
    use futures_util::StreamExt;
    let mut lines = 0u64;
    let mut bytes = 0u64;
    let mut head = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("a complete body");
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        if head.len() < 200 {
            head.push_str(&String::from_utf8_lossy(&chunk[..chunk.len().min(200)]));
        }
    }
    (
        lines,
        bytes,
        head.lines().take(2).map(str::to_string).collect(),
    )
}

#[tokio::test]
async fn a_million_rows_stream_page_and_compress_with_flat_memory() {
    let db = fixture_db().await;
    let q = queries_with_test_packs();
    let (s, _data) = serve(&db, &["--queries", q.0.to_str().unwrap_or_default()]);
    let base = format!("http://{}", s.addr);
    let url = format!("{base}/analytics/series?rows=1000000");
    let plain = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .build()
        .expect("client");
    // Warm-up through the same paths with a tenth of the answer: the first
    // requests' one-time costs (the pool's connection, the prepared statement,
    // the allocator's heaps on each worker thread, a zstd context of a few MiB)
    // are not growth with the answer's size, which is what is measured below.
    for (accept, encoding) in [
        ("text/csv", "identity"),
        ("application/x-ndjson", "gzip"),
        ("text/csv", "zstd"),
    ] {
        for _ in 0..2 {
            let resp = plain
                .get(format!("{base}/analytics/series?rows=100000"))
                .header("Accept", accept)
                .header("Accept-Encoding", encoding)
                .send()
                .await
                .expect("warm-up");
            assert_eq!(resp.status(), 200);
            let _ = count_lines(resp).await;
        }
    }
    let start_kib = peak_rss_kib(s.child.id());

    // CSV, streamed: a header and a million lines.
    let resp = plain
        .get(&url)
        .header("Accept", "text/csv")
        .send()
        .await
        .expect("csv");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("chunked"),
        "streamed, not sized up front"
    );
    let (lines, csv_bytes, head) = count_lines(resp).await;
    assert_eq!(lines, 1_000_001);
    assert_eq!(
        head,
        vec!["n,label,amount".to_string(), "1,row 1,0.01".to_string()]
    );

    // NDJSON, compressed with gzip and decoded by the client.
    let gzip = reqwest::Client::builder()
        .no_brotli()
        .no_zstd()
        .build()
        .expect("client");
    let resp = gzip
        .get(&url)
        .header("Accept", "application/x-ndjson")
        .send()
        .await
        .expect("ndjson");
    assert_eq!(resp.status(), 200);
    let (lines, _, head) = count_lines(resp).await;
    assert_eq!(lines, 1_000_000);
    assert_eq!(head[0], r#"{"n":1,"label":"row 1","amount":0.01}"#);
    // On the wire the same CSV compressed is a fraction of it.
    let resp = plain
        .get(&url)
        .header("Accept", "text/csv")
        .header("Accept-Encoding", "zstd")
        .send()
        .await
        .expect("zstd");
    assert_eq!(
        resp.headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("zstd")
    );
    let (_, wire, _) = count_lines(resp).await;
    assert!(wire * 4 < csv_bytes, "zstd: {wire} of {csv_bytes} bytes");

    // Streaming kept memory flat: the server grew by a small fraction of one
    // answer over three of them (a buffered answer costs several times its size).
    let streamed_kib = peak_rss_kib(s.child.id());
    let grown = streamed_kib.saturating_sub(start_kib) * 1024;
    assert!(
        grown < csv_bytes / 4,
        "streaming grew the server by {} KiB for a {} KiB answer",
        grown / 1024,
        csv_bytes / 1024
    );

    // Paged: the answer as 100 pages of a snapshot, walked by `next`.
    let first = plain
        .get(format!("{url}&page_size=10000"))
        .send()
        .await
        .expect("page 0");
    assert_eq!(first.status(), 200);
    let link = first
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut page: serde_json::Value = first.json().await.expect("json");
    assert_eq!(
        page["page"],
        json!({"number": 0, "size": 10000, "total_rows": 1000000, "total_pages": 100})
    );
    let next = page["next"].as_str().unwrap_or_default().to_string();
    assert_eq!(link, format!("<{next}>; rel=\"next\""));
    let mut seen = 0u64;
    let mut pages = 0;
    loop {
        let rows = page["rows"].as_array().cloned().unwrap_or_default();
        assert_eq!(rows.first().map(|r| r["n"].clone()), Some(json!(seen + 1)));
        seen += rows.len() as u64;
        pages += 1;
        let Some(next) = page["next"].as_str().map(str::to_string) else {
            break;
        };
        page = plain
            .get(format!("{base}{next}"))
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("json");
    }
    assert_eq!((pages, seen), (100, 1_000_000));

    // Paging holds one page at a time: bounded by the page size, not the answer.
    let peak_kib = peak_rss_kib(s.child.id());
    assert!(
        peak_kib.saturating_sub(start_kib) / 1024 < 64,
        "paging grew the server to a peak of {} MiB",
        peak_kib / 1024
    );
}

#[tokio::test]
async fn pages_come_from_one_snapshot_whatever_changes_between_them() {
    let db = fixture_db().await;
    let (s, _data) = serve(&db, &[]);
    let path = "/analytics/customer_analysis?group_by=country&page_size=2";
    let first = get(&s, path);
    assert_eq!(first.status, 200, "{}", first.raw);
    let next = first.body["next"].as_str().unwrap_or_default().to_string();
    assert!(next.contains("cursor="), "{}", first.raw);
    let total = first.body["page"]["total_rows"].as_u64().unwrap_or(0);
    assert!(total > 2);
    assert_eq!(
        first.header("x-total-count"),
        Some(total.to_string().as_str())
    );

    // The data changes between page 1 and page 2.
    db.exec("UPDATE canonical.organizations SET name = name || ' (renamed)'")
        .await;
    let second = get(&s, &next);
    assert_eq!(second.status, 200, "{}", second.raw);
    assert_eq!(second.body["page"]["number"], json!(1));
    assert!(
        !second.raw.contains("(renamed)"),
        "page 2 comes from the snapshot of page 1: {}",
        second.raw
    );
    // A new first page sees the change.
    let fresh = get(&s, path);
    assert!(fresh.raw.contains("(renamed)"), "{}", fresh.raw);
    // The same page as CSV.
    let csv = request(&s, "GET", &next, None, &[("Accept", "text/csv")]);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(csv.raw.lines().count(), 3, "{}", csv.raw);

    // Bad sizes and cursors are named.
    let zero = get(&s, "/analytics/customer_analysis?page_size=0");
    assert_eq!(zero.status, 422);
    assert_eq!(zero.body["errors"][0]["parameter"], json!("page_size"));
    let forged = get(&s, "/analytics/customer_analysis?cursor=nonsense");
    assert_eq!(forged.status, 404, "{}", forged.raw);
    let other_op = get(&s, &next.replace("customer_analysis", "simple_demo"));
    assert_eq!(other_op.status, 404, "a cursor belongs to its operation");
}

#[tokio::test]
async fn every_response_is_checked_against_the_document_and_the_check_can_fail() {
    let db = fixture_db().await;
    let (s, _data) = serve(&db, &[]);
    // What the tests' client checks every response with (tests/common/contract.rs).
    let c = common::contract::Contract::new(get(&s, "/openapi.json").body);
    let ok = get(&s, "/analytics/simple_demo");
    let ct = Some("application/json");
    assert_eq!(
        c.check("GET", "/analytics/simple_demo", 200, ct, &ok.raw),
        Ok(())
    );
    // An undeclared field, a row column the pack does not declare, a wrong
    // type, an undocumented status and content type are all findings.
    let mut extra = ok.body.clone();
    extra["surprise"] = json!(1);
    let mut column = ok.body.clone();
    column["rows"][0]["undeclared_column"] = json!("x");
    let mut wrong = ok.body.clone();
    wrong["row_count"] = json!("many");
    for (what, body) in [("field", extra), ("column", column), ("type", wrong)] {
        assert!(
            c.check("GET", "/analytics/simple_demo", 200, ct, &body.to_string())
                .is_err(),
            "an undocumented {what} is found"
        );
    }
    // An undocumented status falls back to `default`: a problem document,
    // which an empty object is not.
    assert!(c.check("GET", "/operations", 418, ct, "{}").is_err());
    assert!(c
        .check(
            "GET",
            "/analytics/simple_demo",
            200,
            Some("text/html"),
            "<p>"
        )
        .is_err());
}

#[tokio::test]
async fn packs_reload_on_change_and_a_broken_change_keeps_the_old_set() {
    let db = fixture_db().await;
    let (s, q, _data) = serve_test_packs(&db, &[("QUARRY_RELOAD__DEBOUNCE_MS", "100")]);
    let title = |s: &Server| get(s, "/operations/slow_light").body["title"].clone();
    assert_eq!(title(&s), json!("Test pack that overruns its timeout"));
    let yaml = q.0.join("slow_light.yaml");
    let text = std::fs::read_to_string(&yaml).expect("read");
    std::fs::write(
        &yaml,
        text.replace(
            "title: Test pack that overruns its timeout",
            "title: Renamed",
        ),
    )
    .expect("write");
    wait_for("the reload", Duration::from_secs(10), || {
        (title(&s) == json!("Renamed")).then_some(())
    });
    // A broken change is refused: the previous set keeps serving.
    // Every pack in the folder is served: one operation per YAML file.
    let packs = std::fs::read_dir(&q.0)
        .expect("queries")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        })
        .count();
    std::fs::write(&yaml, "name: slow_light\nversion: [\n").expect("write");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(title(&s), json!("Renamed"));
    assert_eq!(
        get(&s, "/operations").body["operations"]
            .as_array()
            .map(Vec::len),
        Some(packs)
    );
    // A change that passes the offline checks but fails against the database is
    // refused too, and says so in /health and the metrics.
    let sql = q.0.join("slow_light.sql");
    let sql_text = std::fs::read_to_string(&sql).expect("read");
    std::fs::write(
        &sql,
        "SELECT slept_for::text AS slept\nFROM pg_sleep({{ seconds }}) AS t(slept)\n",
    )
    .expect("write");
    std::fs::write(&yaml, &text).expect("restore");
    // The broken YAML above was rejected already; this rejection names the SQL.
    let h = wait_for("the rejected reload", Duration::from_secs(10), || {
        let h = get(&s, "/health").body;
        h["reload"]["first_problem"]
            .as_str()
            .is_some_and(|p| p.ends_with("slow_light.sql:1:8"))
            .then_some(h)
    });
    assert_eq!(h["reload"]["status"], json!("rejected"), "{h}");
    assert_eq!(
        title(&s),
        json!("Renamed"),
        "the previous pack keeps serving"
    );
    assert!(
        get(&s, "/metrics")
            .raw
            .contains("quarry_pack_reload_rejected 1"),
        "rejection in the metrics"
    );
    // A new pack appears on SIGHUP too (the watcher may be off).
    std::fs::write(&sql, sql_text).expect("restore");
    let pid = s.child.id().to_string();
    let _ = Command::new("kill").args(["-HUP", &pid]).status();
    wait_for("the SIGHUP reload", Duration::from_secs(10), || {
        (title(&s) == json!("Test pack that overruns its timeout")).then_some(())
    });
    assert_eq!(
        get(&s, "/health").body["reload"]["status"],
        json!("applied")
    );
}

#[tokio::test]
async fn large_answers_are_cached_as_objects_behind_a_pointer() {
    let db = fixture_db().await;
    let data = TempDir::new("data");
    // Every answer is "large" here: the cache keeps a pointer to an object.
    let env = [("QUARRY_API__CACHE_INLINE_MAX_BYTES", "100")];
    let s = serve_with(&db, &[], &env, &data.0);
    let path = "/analytics?operation=customer_analysis";
    let first = get(&s, path);
    assert_eq!(first.header("x-cache"), Some("miss"));
    wait_for("the cached object", Duration::from_secs(10), || {
        std::fs::read_dir(data.0.join("results/cache"))
            .ok()?
            .next()
            .map(|_| ())
    });
    // The object is written before the pointer row: wait for the row too, or
    // the kill below can land between the two (seen once in CI).
    let owner = db.client().await;
    let mut pointers = 0i64;
    for _ in 0..100 {
        pointers = owner
            .query_one("SELECT count(*) FROM quarry.cache", &[])
            .await
            .expect("count cache rows")
            .get(0);
        if pointers > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pointers > 0, "the cache pointer row was written");
    // A new server has no in-memory copy: the hit comes through the pointer.
    s.kill();
    let s = serve_with(&db, &[], &env, &data.0);
    let again = get(&s, path);
    assert_eq!(again.header("x-cache"), Some("hit"), "{:?}", again.body);
    assert_eq!(again.body, first.body);
}

/// Two major versions of one operation served side by side: `name` calls the
/// latest, `name@1` the older one, which answers with Deprecation, Sunset and
/// Link headers; the catalog and the OpenAPI document list both; the cache
/// keeps their answers apart.
#[tokio::test]
async fn two_major_versions_are_served_side_by_side() {
    let db = fixture_db().await;
    let q = queries_with_test_packs();
    let v1 = q.0.join("v1");
    std::fs::create_dir_all(&v1).expect("mkdir");
    let yaml = std::fs::read_to_string(q.0.join("customer_analysis.yaml")).expect("read");
    let version = yaml
        .lines()
        .find(|l| l.starts_with("version: "))
        .expect("version")
        .to_string();
    assert!(version.starts_with("version: 1."), "{version}");
    // The old major keeps its SQL, renamed title, and a deprecation notice.
    std::fs::write(
        v1.join("customer_analysis.yaml"),
        yaml.replace(
            "title: Customer segmentation and ranking",
            "title: Customer segmentation (v1)",
        ) + "deprecation: {since: 2026-12-01, sunset: 2027-06-30, link: \"https://example.com/quarry/customer_analysis-v2\"}\n",
    )
    .expect("write");
    std::fs::copy(
        q.0.join("customer_analysis.sql"),
        v1.join("customer_analysis.sql"),
    )
    .expect("copy");
    std::fs::write(
        q.0.join("customer_analysis.yaml"),
        yaml.replace(&version, "version: 2.0.0"),
    )
    .expect("write");
    let data = TempDir::new("data");
    let s = serve_with(
        &db,
        &["--queries", q.0.to_str().unwrap_or_default()],
        &[],
        &data.0,
    );
    let latest = get(&s, "/analytics?operation=customer_analysis&level=segment");
    assert_eq!(latest.status, 200, "{:?}", latest.body);
    assert_eq!(latest.header("deprecation"), None);
    let old = get(&s, "/analytics?operation=customer_analysis@1&level=segment");
    assert_eq!(old.status, 200, "{:?}", old.body);
    assert_eq!(old.header("x-cache"), Some("miss"), "its own cache entry");
    // 2026-12-01T00:00:00Z and 2027-06-30 as an HTTP date.
    assert_eq!(old.header("deprecation"), Some("@1796083200"));
    assert_eq!(old.header("sunset"), Some("Wed, 30 Jun 2027 00:00:00 GMT"));
    assert!(old
        .header("link")
        .is_some_and(|l| l.contains("rel=\"deprecation\"")));
    assert_eq!(old.body["rows"], latest.body["rows"], "same SQL, same rows");
    let ops = get(&s, "/operations").body;
    let calls: Vec<&str> = ops["operations"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["call_as"].as_str()).collect())
        .unwrap_or_default();
    assert!(calls.contains(&"customer_analysis@2") && calls.contains(&"customer_analysis@1"));
    let one = get(&s, "/operations/customer_analysis@1").body;
    assert_eq!(one["title"], json!("Customer segmentation (v1)"));
    assert_eq!(one["deprecation"]["sunset"], json!("2027-06-30"));
    let doc = get(&s, "/openapi.json").body.to_string();
    assert!(
        doc.contains("customer_analysis@1"),
        "OpenAPI lists the old version"
    );
    // A job submitted to the old version runs the old version.
    let job = post(
        &s,
        "/analytics/jobs",
        r#"{"operation": "customer_analysis@1", "parameters": {"level": "segment"}}"#,
    );
    assert_eq!(job.status, 202, "{:?}", job.body);
    assert_eq!(job.header("deprecation"), Some("@1796083200"));
    assert_eq!(
        job.body["operation_version"],
        json!(version.trim_start_matches("version: ")),
        "{:?}",
        job.body
    );
}

/// A client that trickles its request headers is cut off by the header read
/// timeout instead of holding a connection for as long as it likes; a prompt
/// client on the same server is answered.
#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    use std::io::{Read, Write};
    let db = fixture_db().await;
    let data = TempDir::new("data");
    let s = serve_with(
        &db,
        &[],
        &[("QUARRY_API__HEADER_READ_TIMEOUT_SECONDS", "2")],
        &data.0,
    );
    let mut slow = std::net::TcpStream::connect(&s.addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    // One header byte every half second for up to 20 s: the server must close
    // the connection long before the headers would be complete.
    let mut writer = slow.try_clone().expect("clone");
    let trickle = std::thread::spawn(move || {
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(500));
            if writer.write_all(b"X").is_err() {
                return true; // the server closed it
            }
        }
        let _ = writer.write_all(b": y\r\n\r\n");
        false
    });
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let answered = String::from_utf8_lossy(&buf).contains("200 OK");
    assert!(!answered, "the trickled request was answered: {buf:?}");
    let cut_while_sending = trickle.join().expect("trickle thread");
    assert!(
        cut_while_sending,
        "the connection stayed open for the whole trickle"
    );
    assert_eq!(get(&s, "/health").status, 200);
}

/// A client that sends its headers and then trickles (or stops sending) the
/// body gets 408 once the body read timeout passes, instead of holding a
/// connection and a request slot (issue 13: header *and* body read timeouts).
#[tokio::test]
async fn a_client_stalling_its_body_gets_408() {
    use std::io::{Read, Write};
    let db = fixture_db().await;
    let data = TempDir::new("data");
    let s = serve_with(
        &db,
        &[],
        &[("QUARRY_API__BODY_READ_TIMEOUT_SECONDS", "1")],
        &data.0,
    );
    let mut slow = std::net::TcpStream::connect(&s.addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    slow.write_all(
        b"POST /analytics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"operation\": ",
    )
    .expect("write");
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("/problems/body-timeout"), "{text}");
    assert!(text.contains("api.body_read_timeout_seconds"), "{text}");
    assert_eq!(get(&s, "/health").status, 200);
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Answers are bounded by bytes, not only rows (issue 13, defect 4): above
/// `api.sync_answer_bytes` an answer is stored and the caller redirected (303)
/// to a signed link holding all of it; past `api.max_answer_bytes` the query
/// stops and the caller gets a problem naming the cap, while the server's
/// memory stays bounded by the cap. Before, one custom-SQL answer of 400 MB
/// went out whole and took the server from 20 MB to 1.26 GB.
#[tokio::test]
async fn answers_are_bounded_by_bytes() {
    let db = fixture_db().await;
    let admin = quarry(
        &db,
        &["keys", "create", "--name", "ops", "--scope", "admin"],
    );
    let auth = format!("Bearer {}", admin.trim());
    let data = TempDir::new("data");
    let s = serve_with(
        &db,
        &["--allow-custom-sql"],
        &[
            ("QUARRY_API__SYNC_ANSWER_BYTES", "4096"),
            ("QUARRY_API__MAX_ANSWER_BYTES", "8000000"),
        ],
        &data.0,
    );
    let post = |s: &Server, path: &str, body: &str| {
        request(
            s,
            "POST",
            path,
            Some(body),
            &[("Authorization", auth.as_str())],
        )
    };
    let sql = |q: &str| {
        format!(r#"{{"operation": "custom_complex_query", "parameters": {{"query": "{q}"}}}}"#)
    };
    let small = post(&s, "/analytics", &sql("SELECT 1 AS one"));
    assert_eq!(small.status, 200, "{}", small.raw);

    let large = post(
        &s,
        "/analytics",
        &sql("SELECT g AS n, repeat('x', 100) AS pad FROM generate_series(1, 200) g"),
    );
    assert_eq!(large.status, 303, "{}", large.raw);
    assert_eq!(large.body["stored"], serde_json::json!(true));
    assert!(
        large.body["bytes"].as_u64().unwrap_or(0) > 4096,
        "{}",
        large.raw
    );
    let location = large
        .header("location")
        .expect("a Location header")
        .to_string();
    let path = match location.split_once("://") {
        Some((_, rest)) => rest
            .find('/')
            .map(|i| rest[i..].to_string())
            .unwrap_or_default(),
        None => location.clone(),
    };
    let stored = request(&s, "GET", &path, None, &[("Authorization", auth.as_str())]);
    assert_eq!(stored.status, 200, "{}", stored.raw);
    assert_eq!(stored.body["row_count"], serde_json::json!(200));
    assert_eq!(stored.body["rows"].as_array().map(Vec::len), Some(200));
    assert_eq!(stored.body["rows"][199]["n"], serde_json::json!(200));

    // 400 rows of 1 MB: 400 MB if it went out whole.
    let huge = post(
        &s,
        "/analytics",
        &sql("SELECT repeat('x', 1000000) AS big FROM generate_series(1, 400)"),
    );
    assert_eq!(huge.status, 422, "{}", huge.raw);
    assert_eq!(
        huge.body["type"],
        serde_json::json!("/problems/answer-too-large")
    );
    let detail = huge.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("8000000")
            && detail.contains("api.max_answer_bytes")
            && detail.contains("page_size")
            && detail.contains("Accept: text/csv"),
        "{detail}"
    );
    let peak_mib = peak_rss_kib(s.child.id()) / 1024;
    assert!(
        peak_mib < 200,
        "the server peaked at {peak_mib} MiB for an answer capped at 8 MB"
    );
    assert_eq!(request(&s, "GET", "/health", None, &[]).status, 200);
}

#[tokio::test]
async fn the_web_catalog_is_served_and_the_ingest_ledger_is_listed() {
    let db = fixture_db().await;
    let key = quarry(
        &db,
        &[
            "keys", "create", "--name", "ui", "--scope", "read", "--scope", "jobs",
        ],
    );
    let auth = format!("Bearer {}", key.trim());
    let hdr = [("Authorization", auth.as_str())];
    let (s, _data) = serve(&db, &[]);

    // Pages: public (they show what /openapi.json shows), with a strict policy.
    let home = get(&s, "/");
    assert_eq!(home.status, 200);
    assert!(home
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    let csp = home.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    for op in ["customer_analysis", "revenue_analysis", "database_info"] {
        assert!(
            home.raw.contains(&format!("href=\"/ui/operations/{op}\"")),
            "the catalog links {op}"
        );
    }
    let page = get(&s, "/ui/operations/customer_analysis");
    assert_eq!(page.status, 200);
    assert!(page.raw.contains(r#"<select id="p-group_by""#));
    assert!(page.raw.contains(r#"<option value="industry" selected>"#));
    assert!(page
        .raw
        .contains(r#"id="p-min_segment_size" name="min_segment_size" type="number""#));
    let unknown = get(&s, "/ui/operations/no_such_thing");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["type"], json!("/problems/not-found"));
    let dict = get(&s, "/ui/schema");
    assert!(dict.raw.contains("canonical.organizations") && dict.raw.contains("Surrogate key"));
    assert_eq!(get(&s, "/ui/api").status, 200);

    // Assets come from the binary, cached by ETag; nothing else is reachable.
    let js = get(&s, "/ui/assets/app.js");
    assert_eq!(js.status, 200);
    let etag = js.header("etag").expect("an ETag").to_owned();
    let again = request(
        &s,
        "GET",
        "/ui/assets/app.js",
        None,
        &[("If-None-Match", &etag)],
    );
    assert_eq!(again.status, 304);
    assert_eq!(get(&s, "/ui/assets/redoc.standalone.js").status, 200);
    for path in [
        "/ui/assets/..%2F..%2FCargo.toml",
        "/ui/assets/app.jsx",
        "/ui/nothing",
    ] {
        assert_eq!(get(&s, path).status, 404, "{path}");
    }

    // The ledger and the quarantine need a key once keys exist (pages do not).
    assert_eq!(get(&s, "/ingest/files").status, 401);
    let files = request(&s, "GET", "/ingest/files", None, &hdr);
    assert_eq!(files.status, 200, "{:?}", files.body);
    let listed: Vec<i64> = files.body["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["id"].as_i64())
        .collect();
    let in_db = db
        .value("SELECT json_agg(id ORDER BY id DESC) FROM quarry.ingest_files")
        .await;
    assert_eq!(json!(listed), in_db, "every file, newest first");
    assert!(files.body.get("next").is_none(), "one page holds them all");

    // Paging by `before`: two pages of one, then the rest.
    let first = request(&s, "GET", "/ingest/files?limit=1", None, &hdr);
    let next = first.body["next"].as_str().expect("a next page").to_owned();
    assert!(next.starts_with("/ingest/files?") && next.contains("limit=1"));
    let second = request(&s, "GET", &next, None, &hdr);
    assert_eq!(second.body["files"][0]["id"], json!(listed[1]));

    let bad = request(
        &s,
        "GET",
        "/ingest/files?status=done&limit=0&colour=red",
        None,
        &hdr,
    );
    assert_eq!(bad.status, 422);
    let named: Vec<&str> = bad.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["parameter"].as_str())
        .collect();
    assert_eq!(named, vec!["colour", "status", "limit"], "{:?}", bad.body);

    let q = request(&s, "GET", "/ingest/quarantine", None, &hdr);
    assert_eq!(q.status, 200, "{:?}", q.body);
    let open = db
        .value("SELECT count(*) FROM quarry.quarantine WHERE resolved_at IS NULL")
        .await;
    assert_eq!(json!(q.body["records"].as_array().map(Vec::len)), open);
    let first_reason = q.body["records"][0]["reason_code"]
        .as_str()
        .expect("reason")
        .to_owned();
    let by_reason = request(
        &s,
        "GET",
        &format!("/ingest/quarantine?reason={first_reason}"),
        None,
        &hdr,
    );
    assert!(by_reason.body["records"]
        .as_array()
        .expect("records")
        .iter()
        .all(|r| r["reason_code"] == json!(first_reason)));

    // The reader sees the ledger only through the views, never schema quarry.
    let mut cfg: tokio_postgres::Config = db.url.parse().expect("url");
    cfg.user("quarry_reader");
    let (reader, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("reader");
    tokio::spawn(conn);
    assert!(reader
        .query("SELECT count(*) FROM quarry_ops.quarantine", &[])
        .await
        .is_ok());
    let denied = reader
        .query("SELECT raw_record FROM quarry.quarantine", &[])
        .await
        .expect_err("the reader cannot read schema quarry");
    assert_eq!(
        denied.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{denied:?}"
    );

    // A job's inline result in the format Accept asks for.
    let job = request(
        &s,
        "POST",
        "/analytics/jobs",
        Some(r#"{"operation": "simple_demo"}"#),
        &hdr,
    );
    assert_eq!(job.status, 202, "{:?}", job.body);
    let id = job.body["job_id"].as_str().expect("job id").to_owned();
    wait_job(&s, &id, &hdr);
    let result = format!("/analytics/jobs/{id}/result");
    let as_json = request(&s, "GET", &result, None, &hdr);
    let rows = as_json.body["rows"].as_array().map(Vec::len).expect("rows");
    let as_csv = request(&s, "GET", &result, None, &[hdr[0], ("Accept", "text/csv")]);
    assert!(as_csv
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/csv")));
    assert_eq!(as_csv.raw.lines().count(), rows + 1, "{}", as_csv.raw);
    let as_nd = request(
        &s,
        "GET",
        &result,
        None,
        &[hdr[0], ("Accept", "application/x-ndjson")],
    );
    assert_eq!(as_nd.raw.lines().count(), rows);
    let refused = request(&s, "GET", &result, None, &[hdr[0], ("Accept", "image/png")]);
    assert_eq!(refused.status, 406);
}

#[tokio::test]
async fn admins_review_and_decide_links_over_http() {
    let db = fixture_db().await;
    // The fixture's organizations get their links and companies from the shipped
    // rules, with the link keys their mappings declare (as an ingest records them).
    db.exec(
        "INSERT INTO quarry.source_link_keys (source_system, link_keys) VALUES
           ('crm', '{email_domain,name_similarity}'), ('erp', '{email_domain,vat_id,name_similarity}'),
           ('shop', '{email_domain}')",
    )
    .await;
    let out = quarry(&db, &["companies", "rebuild"]);
    assert!(out.contains("registered"), "{out}");
    let admin = quarry(
        &db,
        &["keys", "create", "--name", "steward", "--scope", "admin"],
    );
    let reader = quarry(
        &db,
        &["keys", "create", "--name", "analyst", "--scope", "read"],
    );
    let admin = format!("Bearer {}", admin.trim());
    let reader = format!("Bearer {}", reader.trim());
    let as_admin = [("Authorization", admin.as_str())];
    let as_reader = [("Authorization", reader.as_str())];
    let (s, _data) = serve(&db, &[]);

    // Acme Corp (crm, 1) and ACME CORP (erp, 7) share a domain: one company.
    let list = request(&s, "GET", "/admin/links?organization=7", None, &as_admin);
    assert_eq!(list.status, 200, "{:?}", list.body);
    let pair = list.body["links"]
        .as_array()
        .expect("links")
        .iter()
        .find(|l| l["left_id"] == json!(1) && l["right_id"] == json!(7))
        .cloned()
        .unwrap_or_else(|| panic!("1-7 is listed: {:?}", list.body));
    assert_eq!(pair["status"], json!("accepted"));
    assert!(pair["methods"]
        .as_array()
        .is_some_and(|m| m.contains(&json!("email_domain"))));
    let company = pair["company_id"].as_i64().expect("company");
    let view = request(
        &s,
        "GET",
        &format!("/companies/{company}"),
        None,
        &as_reader,
    );
    assert_eq!(view.status, 200, "{:?}", view.body);
    let members: Vec<i64> = view.body["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["organization_id"].as_i64())
        .collect();
    assert!(members.contains(&1) && members.contains(&7), "{members:?}");
    assert_eq!(
        view.body["value_sources"]["industry"]["source_system"],
        json!("crm")
    );

    // Deciding needs the admin scope; reading links too.
    let body = r#"{"left_id": 7, "right_id": 1, "note": "two companies"}"#;
    let refused = request(&s, "POST", "/admin/links/reject", Some(body), &as_reader);
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(
        request(&s, "GET", "/admin/links", None, &as_reader).status,
        403
    );
    let rejected = request(&s, "POST", "/admin/links/reject", Some(body), &as_admin);
    assert_eq!(rejected.status, 200, "{:?}", rejected.body);
    assert_eq!(
        rejected.body["pairs"],
        json!([{"left_id": 1, "right_id": 7}])
    );
    let of = |org: i64| {
        rejected.body["companies"]
            .as_array()
            .and_then(|c| c.iter().find(|m| m["organization_id"] == json!(org)))
            .and_then(|m| m["company_id"].as_i64())
    };
    assert_ne!(of(1), of(7), "a rejected pair is two companies");
    let decided = request(&s, "GET", "/admin/links?status=rejected", None, &as_admin);
    let row = &decided.body["links"][0];
    assert_eq!(row["decided_by"], json!("api:steward"));
    assert_eq!(
        (row["left_id"].clone(), row["right_id"].clone()),
        (json!(1), json!(7))
    );

    // Confirm joins them again; split takes 7 out for good.
    let confirmed = request(&s, "POST", "/admin/links/confirm", Some(body), &as_admin);
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
    let split = request(
        &s,
        "POST",
        "/admin/organizations/7/split",
        Some("{}"),
        &as_admin,
    );
    assert_eq!(split.status, 200, "{:?}", split.body);
    let again = request(&s, "POST", "/admin/organizations/7/split", None, &as_admin);
    assert_eq!(again.status, 409, "{:?}", again.body);

    // Mistakes say what is wrong.
    let unknown = request(
        &s,
        "POST",
        "/admin/links/confirm",
        Some(r#"{"left_id": 1, "right_id": 99999}"#),
        &as_admin,
    );
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);
    assert!(unknown.body["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("99999"));
    let same = request(
        &s,
        "POST",
        "/admin/links/confirm",
        Some(r#"{"left_id": 1, "right_id": 1}"#),
        &as_admin,
    );
    assert_eq!(same.status, 422, "{:?}", same.body);
    let extra = request(
        &s,
        "POST",
        "/admin/links/confirm",
        Some(r#"{"left_id": 1, "right_id": 7, "by": "me"}"#),
        &as_admin,
    );
    assert_eq!(extra.status, 400, "{:?}", extra.body);
    let bad = request(
        &s,
        "GET",
        "/admin/links?status=maybe&colour=red",
        None,
        &as_admin,
    );
    assert_eq!(bad.status, 422);
    assert_eq!(get(&s, "/companies/0").status, 401);
    let none = request(&s, "GET", "/companies/999999", None, &as_reader);
    assert_eq!(none.status, 404);
}
