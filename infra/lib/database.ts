import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct, IDependable } from 'constructs';
import { keepPolicy, QuarryConfig } from './config';
import { QuarryWorkload } from './function';
import { acknowledge } from './nag';
import { Network } from './network';

export const DATABASE_NAME = 'quarry';
export const DATABASE_PORT = 5432;

/** The three PostgreSQL roles of `engine/db/sql/roles.sql`. */
export type DbRole = 'owner' | 'writer' | 'reader';
export const ROLE_NAMES: Record<DbRole, string> = {
  owner: 'quarry_owner',
  writer: 'quarry_writer',
  reader: 'quarry_reader',
};

/**
 * Characters kept out of generated passwords (the rotation functions' defaults):
 * nothing that needs quoting in a connection string or a shell.
 */
const EXCLUDE_CHARACTERS = " %+~`#$&*()|[]{}:;<>?!'/@\"\\";

export interface DatabaseProps {
  readonly config: QuarryConfig;
  readonly network: Network;
}

/**
 * RDS PostgreSQL in the isolated database subnets: encrypted storage, automated
 * backups, deletion protection (off for dev stacks), TLS forced by the parameter
 * group, pg_trgm available (a trusted extension on RDS; the migration creates it).
 *
 * One Secrets Manager secret per database role. The owner secret is the master
 * user (`quarry_owner`, which owns every schema object; only the migrate function
 * reads it); the writer and reader secrets hold the login roles the migration
 * creates and whose passwords it sets from these secrets. Each secret rotates
 * with Secrets Manager's hosted single-user PostgreSQL rotation, whose functions
 * run in the compute subnets and reach the database and the Secrets Manager
 * endpoint through their own security group.
 */
export class Database extends Construct {
  readonly instance: rds.DatabaseInstance;
  readonly securityGroup: ec2.SecurityGroup;
  readonly secrets: Record<DbRole, secretsmanager.ISecret>;
  readonly rotationSecurityGroup: ec2.SecurityGroup;
  readonly rotations: secretsmanager.RotationSchedule[] = [];
  /** The hosted rotation functions' names (`<prefix>-rotate-db-<role>`). */
  readonly rotationFunctionNames: string[] = [];
  /** RDS Proxy for the writer and reader roles (`dbProxy`), else undefined. */
  readonly proxy?: rds.DatabaseProxy;

  constructor(scope: Construct, id: string, props: DatabaseProps) {
    super(scope, id);
    const { config, network } = props;
    const removalPolicy = config.dev ? RemovalPolicy.DESTROY : RemovalPolicy.SNAPSHOT;

    this.securityGroup = new ec2.SecurityGroup(this, 'Sg', {
      vpc: network.vpc,
      description: 'PostgreSQL: 5432 from the Quarry functions and the rotation functions only',
      allowAllOutbound: false,
    });

    const major = config.dbEngineVersion.split('.')[0];
    const engine = rds.DatabaseInstanceEngine.postgres({
      version: rds.PostgresEngineVersion.of(config.dbEngineVersion, major),
    });
    const parameterGroup = new rds.ParameterGroup(this, 'Parameters', {
      engine,
      description: 'Quarry: TLS only, slow statements logged',
      parameters: {
        'rds.force_ssl': '1',
        log_min_duration_statement: '1000',
      },
    });

    const ownerCredentials = rds.Credentials.fromGeneratedSecret(ROLE_NAMES.owner, {
      secretName: `${config.prefix}/db/owner`,
      excludeCharacters: EXCLUDE_CHARACTERS,
    });

    // The exported PostgreSQL logs land in log groups created here with a
    // retention (instead of CDK's LogRetention custom resource).
    const instanceIdentifier = `${config.prefix}-db`;
    const logExports = ['postgresql', 'upgrade'];
    const logGroups = logExports.map(
      (kind) =>
        new logs.LogGroup(this, `Logs${kind[0].toUpperCase()}${kind.slice(1)}`, {
          logGroupName: `/aws/rds/instance/${instanceIdentifier}/${kind}`,
          retention: config.logRetentionDays as logs.RetentionDays,
          removalPolicy: keepPolicy(config),
        }),
    );

    this.instance = new rds.DatabaseInstance(this, 'Instance', {
      instanceIdentifier,
      engine,
      instanceType: new ec2.InstanceType(config.dbInstanceClass),
      vpc: network.vpc,
      vpcSubnets: network.databaseSubnets,
      securityGroups: [this.securityGroup],
      port: DATABASE_PORT,
      databaseName: DATABASE_NAME,
      credentials: ownerCredentials,
      parameterGroup,
      storageEncrypted: true,
      storageType: rds.StorageType.GP3,
      allocatedStorage: config.dbAllocatedStorageGiB,
      maxAllocatedStorage: config.dbMaxAllocatedStorageGiB,
      multiAz: config.dbMultiAz,
      publiclyAccessible: false,
      // Per-role passwords in Secrets Manager, rotated; IAM database
      // authentication stays off (it would be a second, unused way in).
      iamAuthentication: false,
      backupRetention: Duration.days(config.dbBackupRetentionDays),
      deleteAutomatedBackups: config.dev,
      // Switched on by the deploy after the migrations (./protection.ts), so a
      // failed first deploy can still remove the instance and be retried.
      deletionProtection: false,
      removalPolicy,
      enablePerformanceInsights: config.dbPerformanceInsights,
      ...(config.dbPerformanceInsights ? { performanceInsightRetention: rds.PerformanceInsightRetention.DEFAULT } : {}),
      autoMinorVersionUpgrade: true,
      copyTagsToSnapshot: true,
      cloudwatchLogsExports: logExports,
    });
    for (const group of logGroups) this.instance.node.addDependency(group);
    // No DeletionProtection in the template: CloudFormation leaves the value the
    // protection custom resource sets alone on later updates.
    (this.instance.node.defaultChild as rds.CfnDBInstance).addPropertyDeletionOverride('DeletionProtection');

    this.rotationSecurityGroup = network.functionSecurityGroup(
      this,
      'RotationSg',
      'secret rotation functions',
    );
    this.allowFrom(this.rotationSecurityGroup);

    const writer = new rds.DatabaseSecret(this, 'WriterSecret', {
      username: ROLE_NAMES.writer,
      secretName: `${config.prefix}/db/writer`,
      dbname: DATABASE_NAME,
      excludeCharacters: EXCLUDE_CHARACTERS,
    }).attach(this.instance);
    const reader = new rds.DatabaseSecret(this, 'ReaderSecret', {
      username: ROLE_NAMES.reader,
      secretName: `${config.prefix}/db/reader`,
      dbname: DATABASE_NAME,
      excludeCharacters: EXCLUDE_CHARACTERS,
    }).attach(this.instance);
    this.secrets = { owner: this.instance.secret!, writer, reader };

    for (const role of ['owner', 'writer', 'reader'] as DbRole[]) {
      this.rotationFunctionNames.push(`${config.prefix}-rotate-db-${role}`);
      this.rotations.push(
        new secretsmanager.RotationSchedule(this, `Rotation${role[0].toUpperCase()}${role.slice(1)}`, {
          secret: this.secrets[role],
          automaticallyAfter: Duration.days(config.secretRotationDays),
          hostedRotation: secretsmanager.HostedRotation.postgreSqlSingleUser({
            functionName: `${config.prefix}-rotate-db-${role}`,
            vpc: network.vpc,
            vpcSubnets: network.computeSubnets,
            securityGroups: [this.rotationSecurityGroup],
            excludeCharacters: EXCLUDE_CHARACTERS,
          }),
        }),
      );
    }

    if (config.dbProxy) {
      // Pooled connections for the writer and reader functions: many Lambda
      // containers share the proxy's connections to the instance, and a
      // failover or a rotated password is absorbed by the proxy. TLS is required
      // on both sides; the owner (migrations) keeps connecting directly.
      const proxySg = new ec2.SecurityGroup(this, 'ProxySg', {
        vpc: network.vpc,
        description: 'RDS Proxy: 5432 from the Quarry functions, 5432 to PostgreSQL',
        allowAllOutbound: false,
      });
      this.allowFrom(proxySg);
      this.proxy = new rds.DatabaseProxy(this, 'Proxy', {
        dbProxyName: `${config.prefix}-db-proxy`,
        proxyTarget: rds.ProxyTarget.fromInstance(this.instance),
        secrets: [writer, reader],
        vpc: network.vpc,
        vpcSubnets: network.databaseSubnets,
        securityGroups: [proxySg],
        requireTLS: true,
        iamAuth: false,
        // A function waits at most this long for a pooled connection, well under
        // the API's 25 s budget.
        borrowTimeout: Duration.seconds(10),
        maxConnectionsPercent: 90,
        idleClientTimeout: Duration.minutes(30),
      });
    }

    acknowledge(
      this.instance,
      'AwsSolutions-RDS11',
      'The standard port is kept (the functions are configured with 5432); the instance is in subnets with no route out, and its security group admits only the Quarry and rotation functions.',
    );
    if (!config.dbMultiAz) {
      acknowledge(
        this.instance,
        'AwsSolutions-RDS3',
        'Single-AZ by default to keep the default stack cheap (automated backups give point-in-time restore); production sets -c dbMultiAz=true.',
      );
    }
    acknowledge(
      this.instance,
      'AwsSolutions-RDS10',
      config.dev
        ? 'Dev stack (-c dev=true): deletion protection is off on purpose so the stack can be destroyed.'
        : 'Deletion protection is switched on by the deploy once the migrations succeeded (Custom::QuarryDeletionProtection in lib/protection.ts), not in the template, so a failed first deploy can roll back and be retried.',
    );
  }

  /** Lets a function's security group reach PostgreSQL (ingress here, egress there). */
  allowFrom(sg: ec2.ISecurityGroup): void {
    this.instance.connections.allowDefaultPortFrom(sg, 'PostgreSQL from a Quarry function');
  }

  /**
   * Lets a function reach PostgreSQL and read the secrets of `roles` (GetSecretValue
   * on those secret ARNs only), and sets QUARRY_DB_SECRET_<ROLE>_ARN for each.
   * With the proxy, functions without the owner role reach the proxy instead
   * (QUARRY_DB_HOST is its endpoint) and have no rule to the instance itself.
   */
  connect(fn: QuarryWorkload, roles: DbRole[]): void {
    if (this.proxy && !roles.includes('owner')) {
      // Through the proxy (its endpoint overrides the host in the secrets).
      this.proxy.connections.allowFrom(fn.securityGroup, ec2.Port.tcp(DATABASE_PORT), 'PostgreSQL (RDS Proxy) from a Quarry function');
      fn.addEnvironment('QUARRY_DB_HOST', this.proxy.endpoint);
      // A session SET would pin each client to one database connection.
      fn.addEnvironment('QUARRY_API__SESSION_SETTINGS', 'false');
    } else {
      this.allowFrom(fn.securityGroup);
    }
    for (const role of roles) {
      const title = role[0].toUpperCase() + role.slice(1);
      fn.allow(`Read${title}DbSecret`, ['secretsmanager:GetSecretValue'], [this.secrets[role].secretArn]);
      fn.addEnvironment(`QUARRY_DB_SECRET_${role.toUpperCase()}_ARN`, this.secrets[role].secretArn);
    }
  }

  /**
   * The writer and reader rotations must wait for the migration that creates
   * those roles with the secrets' passwords, else the first rotation (which
   * runs as soon as the schedule exists) cannot log in.
   */
  rotationsAfter(dependency: IDependable): void {
    for (const rotation of this.rotations) rotation.node.addDependency(dependency);
  }
}
