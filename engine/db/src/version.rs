//! The data version, kept in memory: read once, then followed through
//! `LISTEN quarry_data_version` (a trigger notifies at every committed move).
//! While the listening connection is down the value is `None` and callers read
//! the version from the database instead, so a stale value is never trusted.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

/// Follows the data version of the database at `url` (any role that can read
/// `canonical.data_version`). The receiver holds `None` while disconnected.
pub fn follow(url: String) -> watch::Receiver<Option<i64>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            match listen_once(&url, &tx).await {
                Ok(()) => return, // every receiver is gone
                Err(e) => {
                    let _ = tx.send(None);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "data version listener disconnected");
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    });
    rx
}

async fn listen_once(url: &str, tx: &watch::Sender<Option<i64>>) -> anyhow::Result<()> {
    let mut cfg: tokio_postgres::Config = url.parse()?;
    // A dead peer must be noticed within seconds, not the OS default of hours.
    cfg.keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3);
    let (client, mut conn) = cfg.connect(tokio_postgres::NoTls).await?;
    let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(AsyncMessage::Notification(n)) => {
                    if ntx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute("LISTEN quarry_data_version").await?;
    // Read after LISTEN: a move between the two is then seen either way.
    let v: i64 = client
        .query_one("SELECT version FROM canonical.data_version", &[])
        .await?
        .get(0);
    let _ = tx.send(Some(v));
    tracing::debug!(version = v, "following the data version");
    loop {
        tokio::select! {
            payload = nrx.recv() => match payload {
                Some(p) => {
                    if let Ok(n) = p.parse::<i64>() {
                        tx.send_if_modified(|cur| {
                            // Versions only grow; a late notification never moves it back.
                            if cur.is_none_or(|c| n > c) { *cur = Some(n); true } else { false }
                        });
                    }
                }
                None => break,
            },
            _ = tx.closed() => { driver.abort(); return Ok(()); }
        }
    }
    match driver.await {
        Ok(Err(e)) => Err(e.into()),
        _ => Err(anyhow::anyhow!("the listening connection closed")),
    }
}
