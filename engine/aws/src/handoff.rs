//! Files too large to load within one Lambda invocation (15 minutes) are handed
//! to an ECS Fargate task running the same `quarry-ingest` bootstrap in task
//! mode (`QUARRY_INGEST_OBJECT=s3://bucket/key`), which loads the one object with
//! no deadline and exits. The ingest ledger still decides: a task started twice
//! for the same file (a redelivered event) finds it loaded or in progress.
//!
//! A task that stops without reporting (killed for memory, never started, a
//! crash) is seen through EventBridge's "ECS Task State Change" event, which the
//! stack sends to `quarry-ingest`: [`stopped_task`] reads it and the function
//! raises the alarm, naming the object and how to load it again.

use anyhow::{bail, Context};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, KeyValuePair, LaunchType,
    NetworkConfiguration, TaskOverride,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The environment variable that puts `quarry-ingest` in task mode.
pub const OBJECT_ENV: &str = "QUARRY_INGEST_OBJECT";
/// `startedBy` of every ingest task (how the stack's EventBridge rule and an
/// operator's `aws ecs list-tasks --started-by` find them).
pub const STARTED_BY: &str = "quarry-ingest";
/// Files larger than this are handed off unless `QUARRY_INGEST_TASK_OVER_BYTES`
/// says otherwise. The ingest benchmark loads about 6 MB/s on a 2-core machine
/// (723 MB in 110-131 s), so 1 GiB takes about 3 minutes there; a 1 GB Lambda
/// has part of one core, so this leaves it several times that margin within its
/// 15 minutes. Not measured on Lambda.
pub const DEFAULT_OVER_BYTES: u64 = 1 << 30;

/// Task-mode exit codes: loaded or already loaded; failed and already reported
/// (ledger marked, alarm published); loaded elsewhere right now; bad input.
pub const EXIT_LOADED: i32 = 0;
pub const EXIT_FAILED_REPORTED: i32 = 3;
pub const EXIT_IN_PROGRESS: i32 = 4;
pub const EXIT_BAD_OBJECT: i32 = 2;

/// Where and how ingest tasks run (`QUARRY_INGEST_TASK_*`, set by the stack).
pub struct IngestTask {
    client: aws_sdk_ecs::Client,
    pub cluster: String,
    pub task_definition: String,
    pub container: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// Objects larger than this go to a task.
    pub over_bytes: u64,
}

impl IngestTask {
    /// From `QUARRY_INGEST_TASK_CLUSTER`, `_DEFINITION`, `_CONTAINER`,
    /// `_SUBNETS`, `_SECURITY_GROUPS` (comma-separated) and `_OVER_BYTES`; `None`
    /// when no cluster is set (the stack without `ingestTask`).
    pub fn from_env(sdk: &aws_config::SdkConfig) -> anyhow::Result<Option<IngestTask>> {
        let var = |n: &str| std::env::var(format!("QUARRY_INGEST_TASK_{n}")).unwrap_or_default();
        let cluster = var("CLUSTER");
        if cluster.is_empty() {
            return Ok(None);
        }
        let list = |n: &str| -> Vec<String> {
            var(n)
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        let over = var("OVER_BYTES");
        let over_bytes = if over.trim().is_empty() {
            DEFAULT_OVER_BYTES
        } else {
            over.trim().parse().with_context(|| {
                format!("QUARRY_INGEST_TASK_OVER_BYTES must be a number of bytes, not `{over}`")
            })?
        };
        let task = IngestTask {
            client: aws_sdk_ecs::Client::new(sdk),
            cluster,
            task_definition: var("DEFINITION"),
            container: var("CONTAINER"),
            subnets: list("SUBNETS"),
            security_groups: list("SECURITY_GROUPS"),
            over_bytes,
        };
        for (name, value) in [
            ("DEFINITION", &task.task_definition),
            ("CONTAINER", &task.container),
        ] {
            if value.is_empty() {
                bail!("QUARRY_INGEST_TASK_CLUSTER is set but QUARRY_INGEST_TASK_{name} is not");
            }
        }
        if task.subnets.is_empty() {
            bail!("QUARRY_INGEST_TASK_CLUSTER is set but QUARRY_INGEST_TASK_SUBNETS is empty");
        }
        Ok(Some(task))
    }

    /// Starts the task for one object; returns its ARN. The client token makes a
    /// retried call for the same object and size start one task, not two.
    pub async fn start(&self, bucket: &str, key: &str, size: u64) -> anyhow::Result<String> {
        let object = format!("s3://{bucket}/{key}");
        let token = hex::encode(Sha256::digest(format!("{object}\n{size}")));
        let network = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.subnets.clone()))
            .set_security_groups(Some(self.security_groups.clone()))
            .assign_public_ip(AssignPublicIp::Disabled)
            .build()
            .context("the ingest task's network configuration")?;
        let out = self
            .client
            .run_task()
            .cluster(&self.cluster)
            .task_definition(&self.task_definition)
            .launch_type(LaunchType::Fargate)
            .count(1)
            .started_by(STARTED_BY)
            .client_token(&token[..32])
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(network)
                    .build(),
            )
            .overrides(
                TaskOverride::builder()
                    .container_overrides(
                        ContainerOverride::builder()
                            .name(&self.container)
                            .environment(
                                KeyValuePair::builder()
                                    .name(OBJECT_ENV)
                                    .value(&object)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "starting the ingest task for {object}: {}",
                    aws_sdk_ecs::error::DisplayErrorContext(&e)
                )
            })?;
        if let Some(f) = out.failures().first() {
            bail!(
                "ECS did not start the ingest task for {object}: {} {}",
                f.reason().unwrap_or("no reason given"),
                f.detail().unwrap_or("")
            );
        }
        out.tasks()
            .first()
            .and_then(|t| t.task_arn())
            .map(String::from)
            .with_context(|| format!("ECS started no task for {object} and reported no failure"))
    }
}

/// `s3://bucket/key` into its parts.
pub fn parse_object(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (bucket.to_string(), key.to_string()))
}

/// An ingest task that stopped, from EventBridge's "ECS Task State Change".
#[derive(Debug, Clone, PartialEq)]
pub struct StoppedTask {
    pub task_arn: String,
    /// The object it was loading (`QUARRY_INGEST_OBJECT` of its override).
    pub object: Option<String>,
    /// The container's exit code; none when it never ran.
    pub exit_code: Option<i64>,
    pub reason: String,
}

impl StoppedTask {
    /// Whether the task ended without saying so itself: the alarm is ours to raise.
    pub fn unreported(&self) -> bool {
        !matches!(
            self.exit_code,
            Some(c) if c == EXIT_LOADED as i64 || c == EXIT_FAILED_REPORTED as i64 || c == EXIT_IN_PROGRESS as i64
        )
    }
}

/// `Some` for a "ECS Task State Change" event of a task that has stopped (other
/// states and events: `None`).
pub fn stopped_task(event: &Value) -> Option<StoppedTask> {
    if event.get("detail-type").and_then(Value::as_str) != Some("ECS Task State Change") {
        return None;
    }
    let d = event.get("detail")?;
    if d.get("lastStatus").and_then(Value::as_str) != Some("STOPPED") {
        return None;
    }
    let object = d
        .pointer("/overrides/containerOverrides")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("environment").and_then(Value::as_array))
        .flatten()
        .find(|kv| kv.get("name").and_then(Value::as_str) == Some(OBJECT_ENV))
        .and_then(|kv| kv.get("value").and_then(Value::as_str))
        .map(String::from);
    let exit_code = d
        .get("containers")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .and_then(|c| c.get("exitCode"))
        .and_then(Value::as_i64);
    let reason = d
        .get("stoppedReason")
        .and_then(Value::as_str)
        .unwrap_or("no reason given")
        .to_string();
    Some(StoppedTask {
        task_arn: d
            .get("taskArn")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        object,
        exit_code,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aws_documented_task_event_of_a_running_task_is_not_a_stop() {
        // AWS's own example (tests/fixtures/events/SOURCES.md): the container
        // says STOPPED, the task is still RUNNING; only a stopped task counts.
        let event: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/events/ecs-task-state-change.json"
        ))
        .expect("fixture");
        assert_eq!(stopped_task(&event), None);
        // The same event once the task stops (only lastStatus set here): not an
        // ingest task (no object in its overrides) and it exited 0, so no alarm.
        let mut stopped = event.clone();
        stopped["detail"]["lastStatus"] = json!("STOPPED");
        let t = stopped_task(&stopped).expect("a stopped task");
        assert_eq!(t.object, None);
        assert_eq!(t.exit_code, Some(0));
        assert_eq!(
            t.task_arn,
            "arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6f1cebef"
        );
        assert!(!t.unreported());
    }

    #[test]
    fn objects_are_s3_uris_with_a_bucket_and_a_key() {
        assert_eq!(
            parse_object("s3://raw/crm-data/a b.json"),
            Some(("raw".into(), "crm-data/a b.json".into()))
        );
        assert_eq!(parse_object("s3://raw/"), None);
        assert_eq!(parse_object("raw/crm-data/a.json"), None);
    }

    #[test]
    fn a_stopped_task_event_names_its_object_and_whether_it_reported_itself() {
        // The documented shape of EventBridge's ECS Task State Change (trimmed).
        let event = |exit: Value| {
            json!({
                "version": "0", "id": "3317b2af-7005-947d-b652-f55e762e571a",
                "detail-type": "ECS Task State Change", "source": "aws.ecs",
                "detail": {
                    "clusterArn": "arn:aws:ecs:us-east-1:111122223333:cluster/quarry-ingest",
                    "taskArn": "arn:aws:ecs:us-east-1:111122223333:task/quarry-ingest/abc",
                    "lastStatus": "STOPPED", "desiredStatus": "STOPPED",
                    "stoppedReason": "OutOfMemoryError: Container killed due to memory usage",
                    "containers": [{"name": "ingest", "exitCode": exit, "lastStatus": "STOPPED"}],
                    "overrides": {"containerOverrides": [{"name": "ingest",
                        "environment": [{"name": OBJECT_ENV, "value": "s3://raw/erp-data/big.json"}]}]}
                }
            })
        };
        let killed = stopped_task(&event(json!(137))).expect("a stopped task");
        assert_eq!(killed.object.as_deref(), Some("s3://raw/erp-data/big.json"));
        assert_eq!(killed.exit_code, Some(137));
        assert!(killed.unreported());
        assert!(!stopped_task(&event(json!(0)))
            .expect("stopped")
            .unreported());
        assert!(!stopped_task(&event(json!(3)))
            .expect("stopped")
            .unreported());
        let never_ran = stopped_task(&event(Value::Null)).expect("stopped");
        assert!(never_ran.unreported());
        let mut running = event(json!(0));
        running["detail"]["lastStatus"] = json!("RUNNING");
        assert_eq!(stopped_task(&running), None);
    }
}
