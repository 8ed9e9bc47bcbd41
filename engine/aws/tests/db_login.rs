//! Database logins as on AWS: credentials from Secrets Manager (moto), re-read
//! after a rotation, over TLS verified against a CA bundle. The machine's own
//! PostgreSQL trusts every local login and has no certificate of ours, so this
//! test starts a private cluster (initdb) that demands scram passwords over TLS
//! with a server certificate signed by a CA the test makes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use quarry_aws::db::{self, Connector, Login, SecretCredentials, Target, Tls};
use serde_json::json;

struct Cluster {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("{name} not found under /usr/lib/postgresql"))
}

/// A CA and a certificate for `localhost` signed by it, with openssl.
fn make_certs(dir: &Path, ca_name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join(format!("{ca_name}.key"));
    let ca = dir.join(format!("{ca_name}.pem"));
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={ca_name}"))
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.pem");
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    let ext = dir.join("san.ext");
    std::fs::write(&ext, "subjectAltName=DNS:localhost\n").expect("ext");
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    (ca, cert, key)
}

fn cluster() -> (Cluster, PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let dir = std::env::temp_dir().join(format!("quarry-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (ca, cert, key) = make_certs(&dir, "quarry-test-ca");
    std::fs::write(dir.join("pw"), "admin-secret\n").expect("pw");
    let data = dir.join("data");
    run(Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&dir));
    run(Command::new("chmod").arg("600").arg(&key));
    run(Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_bin("initdb"))
        .args(["-A", "scram-sha-256", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .arg(format!("--pwfile={}", dir.join("pw").display())));
    let conf = format!(
        "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\n",
        dir.display(), cert.display(), key.display()
    );
    let mut pc = std::fs::read_to_string(data.join("postgresql.conf")).expect("conf");
    pc.push_str(&conf);
    std::fs::write(data.join("postgresql.conf"), pc).expect("conf");
    // TLS or nothing.
    std::fs::write(
        data.join("pg_hba.conf"),
        "hostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n",
    )
    .expect("hba");
    let child = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_bin("postgres"))
        .arg("-D")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postgres");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the private PostgreSQL did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (Cluster { dir, port, child }, ca)
}

fn secret(user: &str, password: &str, port: u16) -> String {
    json!({"username": user, "password": password, "host": "localhost", "port": port,
        "dbname": "postgres", "engine": "postgres"})
    .to_string()
}

async fn whoami(pool: &deadpool_postgres::Pool) -> (String, bool) {
    let c = pool.get().await.expect("a connection");
    let row = c
        .query_one(
            "SELECT current_user::text, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())",
            &[],
        )
        .await
        .expect("query");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn secrets_manager_login_survives_rotation_over_verified_tls() {
    let (pg, ca) = cluster();
    let m = moto();
    let sdk = config(&m).await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let verified = || Tls::verified(&ca).expect("CA bundle");

    // The admin secret logs in over TLS; it makes the role the function uses.
    let admin = sm
        .create_secret()
        .name("quarry/db/owner")
        .secret_string(secret("postgres", "admin-secret", pg.port))
        .send()
        .await
        .expect("secret")
        .arn()
        .unwrap_or_default()
        .to_string();
    let admin = Connector {
        login: Login::Secret(Arc::new(SecretCredentials::new(&sdk, &admin))),
        target: Target::default(),
        tls: verified(),
    };
    admin
        .check()
        .await
        .expect("the owner logs in with its secret over TLS");
    let admin = db::pool(admin, 1).expect("pool");
    admin
        .get()
        .await
        .expect("admin")
        .batch_execute("CREATE ROLE quarry_writer LOGIN PASSWORD 'first'")
        .await
        .expect("role");

    let arn = sm
        .create_secret()
        .name("quarry/db/writer")
        .secret_string(secret("quarry_writer", "first", pg.port))
        .send()
        .await
        .expect("secret")
        .arn()
        .unwrap_or_default()
        .to_string();
    let creds = Arc::new(SecretCredentials::new(&sdk, &arn));
    let writer = |creds: Arc<SecretCredentials>| Connector {
        login: Login::Secret(creds),
        target: Target::default(),
        tls: verified(),
    };
    let pool = db::pool(writer(creds.clone()), 1).expect("pool");
    assert_eq!(whoami(&pool).await, ("quarry_writer".to_string(), true));

    // Rotation: the password changes in the database and in the secret. The
    // container still holds the old one; its next connection is refused with
    // 28P01, re-reads the secret and gets in.
    admin
        .get()
        .await
        .expect("admin")
        .batch_execute("ALTER ROLE quarry_writer PASSWORD 'second'")
        .await
        .expect("rotate");
    sm.put_secret_value()
        .secret_id(&arn)
        .secret_string(secret("quarry_writer", "second", pg.port))
        .send()
        .await
        .expect("new version");
    assert_eq!(creds.get().await.expect("cached").password, "first");
    let fresh_pool = db::pool(writer(creds.clone()), 1).expect("pool");
    assert_eq!(
        whoami(&fresh_pool).await,
        ("quarry_writer".to_string(), true)
    );
    assert_eq!(creds.get().await.expect("cached").password, "second");

    // A wrong password in the secret too: the error names the role.
    sm.put_secret_value()
        .secret_id(&arn)
        .secret_string(secret("quarry_writer", "wrong", pg.port))
        .send()
        .await
        .expect("bad version");
    let err = writer(Arc::new(SecretCredentials::new(&sdk, &arn)))
        .check()
        .await
        .expect_err("a wrong password fails");
    assert!(format!("{err:#}").contains("quarry_writer"), "{err:#}");

    // TLS is verified: a certificate from another CA, a host name the
    // certificate does not name, or no TLS at all are all refused.
    let other_dir = pg.dir.join("other");
    std::fs::create_dir_all(&other_dir).expect("dir");
    let (other_ca, _, _) = make_certs(&other_dir, "someone-else");
    let url = format!(
        "postgres://postgres:admin-secret@localhost:{}/postgres",
        pg.port
    );
    let by_url = |url: &str, tls: Tls| Connector {
        login: Login::Url(url.to_string()),
        target: Target::default(),
        tls,
    };
    by_url(&url, verified())
        .check()
        .await
        .expect("the right CA");
    let err = by_url(&url, Tls::verified(&other_ca).expect("other CA"))
        .check()
        .await
        .expect_err("an unknown CA is refused");
    assert!(
        format!("{err:#}").to_lowercase().contains("certificate"),
        "{err:#}"
    );
    let by_ip = format!(
        "postgres://postgres:admin-secret@127.0.0.1:{}/postgres",
        pg.port
    );
    by_url(&by_ip, verified())
        .check()
        .await
        .expect_err("a host name the certificate does not name is refused");
    by_url(&url, Tls::Disabled)
        .check()
        .await
        .expect_err("the server refuses plain TCP");
    let err = Tls::verified(&pg.dir.join("missing.pem"))
        .err()
        .expect("no bundle");
    assert!(format!("{err:#}").contains("QUARRY_DB_CA_FILE"), "{err:#}");
}
