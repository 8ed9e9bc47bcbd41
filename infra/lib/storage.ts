import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { keepPolicy, QuarryConfig } from './config';

export interface StorageProps {
  readonly config: QuarryConfig;
}

/** TTL attribute of both tables: epoch seconds (DynamoDB deletes expired items lazily). */
export const TTL_ATTRIBUTE = 'expires_at';

/**
 * Buckets and tables.
 *
 * - raw: the uploaded exports. Public access blocked, TLS 1.2+ only, SSE-S3,
 *   versioned, access-logged; objects move to Standard-IA then Glacier Instant
 *   Retrieval (still readable in milliseconds for a replay), old versions expire.
 * - results: job results and oversized cache values; every object expires.
 * - access logs: server access logs of the two buckets.
 * - cache table (`key`) and jobs table (`id`): on demand, TTL on `expires_at`,
 *   point-in-time recovery on jobs.
 */
export class Storage extends Construct {
  readonly rawBucket: s3.Bucket;
  readonly resultsBucket: s3.Bucket;
  readonly accessLogsBucket: s3.Bucket;
  readonly cacheTable: dynamodb.TableV2;
  readonly jobsTable: dynamodb.TableV2;

  constructor(scope: Construct, id: string, props: StorageProps) {
    super(scope, id);
    const { config } = props;
    const keep = keepPolicy(config);

    const secure = {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      encryption: s3.BucketEncryption.S3_MANAGED,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
    };

    this.accessLogsBucket = new s3.Bucket(this, 'AccessLogs', {
      ...secure,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      removalPolicy: keep,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(365) }],
    });

    this.rawBucket = new s3.Bucket(this, 'Raw', {
      ...secure,
      versioned: true,
      removalPolicy: keep,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 'raw/',
      lifecycleRules: [
        {
          id: 'tier-down-exports',
          transitions: [
            { storageClass: s3.StorageClass.INFREQUENT_ACCESS, transitionAfter: Duration.days(config.rawInfrequentAccessDays) },
            { storageClass: s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, transitionAfter: Duration.days(config.rawGlacierDays) },
          ],
        },
        { id: 'expire-old-versions', noncurrentVersionExpiration: Duration.days(30) },
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(7) },
      ],
    });

    this.resultsBucket = new s3.Bucket(this, 'Results', {
      ...secure,
      removalPolicy: keepPolicy(config),
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 'results/',
      lifecycleRules: [
        {
          id: 'expire-results',
          expiration: Duration.days(config.resultsExpirationDays),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
    });

    // No point-in-time recovery on the cache: it holds only recomputable answers
    // keyed by data version, all with a TTL; restoring it would serve nothing a
    // query cannot. (cdk-nag's DDB3 does not inspect TableV2; test/stack.test.ts
    // asserts PITR on the jobs table instead.)
    this.cacheTable = new dynamodb.TableV2(this, 'Cache', {
      tableName: `${config.prefix}-cache`,
      partitionKey: { name: 'key', type: dynamodb.AttributeType.STRING },
      billing: dynamodb.Billing.onDemand(),
      timeToLiveAttribute: TTL_ATTRIBUTE,
      encryption: dynamodb.TableEncryptionV2.awsManagedKey(),
      removalPolicy: RemovalPolicy.DESTROY,
    });

    this.jobsTable = new dynamodb.TableV2(this, 'Jobs', {
      tableName: `${config.prefix}-jobs`,
      partitionKey: { name: 'id', type: dynamodb.AttributeType.STRING },
      billing: dynamodb.Billing.onDemand(),
      timeToLiveAttribute: TTL_ATTRIBUTE,
      encryption: dynamodb.TableEncryptionV2.awsManagedKey(),
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // Deletion protection is switched on after the first successful deploy
      // (./protection.ts): a protected table could not be rolled back.
      removalPolicy: keep,
    });
  }
}
