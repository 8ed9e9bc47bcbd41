//! A moto server (AWS API emulator) on loopback, and SDK configuration for it.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use quarry_aws::S3Store;

pub struct Moto {
    pub child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a moto server on a free loopback port and points the SDK at it.
pub fn moto() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m moto.server (pip install 'moto[server]'; scripts/test.sh installs it)");
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto server did not start; is moto[server] installed? (scripts/test.sh installs it)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

pub async fn config(m: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&m.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await
}

pub fn s3_store(cfg: &aws_config::SdkConfig, bucket: &str) -> S3Store {
    // Path-style addressing, as S3Store picks when AWS_ENDPOINT_URL is set.
    std::env::set_var("AWS_ENDPOINT_URL_S3", "set-by-test");
    S3Store::new(cfg, bucket)
}

pub async fn make_table(cfg: &aws_config::SdkConfig, name: &str, key: &str) {
    aws_sdk_dynamodb::Client::new(cfg)
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attr"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
}

/// A new bucket on moto and a store over it.
pub async fn make_bucket(cfg: &aws_config::SdkConfig, name: &str) -> S3Store {
    let store = s3_store(cfg, name);
    store
        .client()
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .expect("bucket");
    store
}

/// An SNS topic with an SQS queue subscribed to it (raw delivery), so a test
/// can read what was published. Returns (topic ARN, queue URL).
pub async fn topic_with_queue(
    cfg: &aws_config::SdkConfig,
    topic: &str,
    queue: &str,
) -> (String, String) {
    let sns = aws_sdk_sns::Client::new(cfg);
    let sqs = aws_sdk_sqs::Client::new(cfg);
    let topic_arn = sns
        .create_topic()
        .name(topic)
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .unwrap_or_default()
        .to_string();
    let queue_url = sqs
        .create_queue()
        .queue_name(queue)
        .send()
        .await
        .expect("queue")
        .queue_url()
        .unwrap_or_default()
        .to_string();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(format!("arn:aws:sqs:us-east-1:123456789012:{queue}"))
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    (topic_arn, queue_url)
}

/// A pool for a role given by URL, without TLS (the local test server).
pub fn url_pool(url: &str, size: usize) -> deadpool_postgres::Pool {
    quarry_aws::db::pool(
        quarry_aws::db::Connector {
            login: quarry_aws::db::Login::Url(url.to_string()),
            target: Default::default(),
            tls: quarry_aws::db::Tls::Disabled,
        },
        size,
    )
    .expect("pool")
}

/// A new API key with `scopes` in the database at `owner_url`.
pub async fn api_key(
    owner_url: &str,
    name: &str,
    scopes: &[quarry_db::store::Scope],
    seed: u8,
) -> String {
    let owner = quarry_db::connect(owner_url).await.expect("owner");
    quarry_db::store::create_key(&owner, name, scopes, None, [seed; 38])
        .await
        .expect("key")
        .1
}

/// An API Gateway REST API proxy event (stage `prod`), as API Gateway sends it.
pub fn apigw_event(
    method: &str,
    path: &str,
    query: Option<serde_json::Value>,
    body: Option<&str>,
    key: Option<&str>,
) -> serde_json::Value {
    use serde_json::{json, Value};
    let mut headers = json!({ "Host": "abc123.execute-api.us-east-1.amazonaws.com", "Content-Type": "application/json" });
    if let Some(k) = key {
        headers["Authorization"] = json!(format!("Bearer {k}"));
    }
    let multi: serde_json::Map<String, Value> = headers
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, json!([v])))
        .collect();
    let mq = query.as_ref().and_then(Value::as_object).map(|q| {
        q.iter()
            .map(|(k, v)| (k.clone(), json!([v])))
            .collect::<serde_json::Map<_, _>>()
    });
    json!({
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": mq,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "stage": "prod",
            "resourcePath": path, "httpMethod": method, "path": format!("/prod{path}"),
            "requestId": uuid::Uuid::new_v4().to_string(),
            "identity": { "sourceIp": "203.0.113.7" }
        },
        "body": body,
        "isBase64Encoded": false
    })
}
