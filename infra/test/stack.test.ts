import { Match } from 'aws-cdk-lib/assertions';
import { ROLE_NAMES } from '../lib/database';
import { QuarryFunction } from '../lib/function';
import { LAMBDA_SERVICE_ERRORS, PERMANENT_ERROR, TRANSIENT_ERROR } from '../lib/jobs';
import {
  Statement,
  Synthesized,
  actionsOf,
  idOf,
  resourcesOf,
  resourcesOfStatement,
  statementsOf,
  synthesize,
} from './support/stack';

const prod: Synthesized = synthesize();
const { template, stack } = prod;
const json = (v: unknown): string => JSON.stringify(v);
const getAtt = (id: string, attr = 'Arn') => ({ 'Fn::GetAtt': [id, attr] });

describe('network', () => {
  test('no internet gateway and no NAT: every subnet is isolated', () => {
    template.resourceCountIs('AWS::EC2::InternetGateway', 0);
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::Route', 0);
    template.resourceCountIs('AWS::EC2::Subnet', 4);
    template.allResourcesProperties('AWS::EC2::Subnet', { MapPublicIpOnLaunch: false });
  });

  test('gateway endpoints for S3 and DynamoDB, interface endpoints for Secrets Manager, SNS and Step Functions', () => {
    const endpoints = resourcesOf(template, 'AWS::EC2::VPCEndpoint').map(([, r]) => r.Properties);
    const service = (p: any): string => json(p.ServiceName);
    const gateways = endpoints.filter((p) => p.VpcEndpointType === 'Gateway').map(service);
    const interfaces = endpoints.filter((p) => p.VpcEndpointType === 'Interface');
    expect(gateways.some((s) => s.includes('.s3'))).toBe(true);
    expect(gateways.some((s) => s.includes('.dynamodb'))).toBe(true);
    expect(interfaces).toHaveLength(3);
    for (const name of ['secretsmanager', 'sns', 'states']) {
      expect(interfaces.some((p) => service(p).includes(`.${name}`))).toBe(true);
    }
    for (const p of interfaces) expect(p.PrivateDnsEnabled).toBe(true);
  });

  test('gateway endpoint policies name only this stack\'s buckets and tables, for this account', () => {
    const gatewayPolicies = resourcesOf(template, 'AWS::EC2::VPCEndpoint')
      .filter(([, r]) => r.Properties.VpcEndpointType === 'Gateway')
      .map(([, r]) => r.Properties.PolicyDocument);
    expect(gatewayPolicies).toHaveLength(2);
    for (const doc of gatewayPolicies) {
      for (const s of doc.Statement as Statement[]) {
        expect(json(s.Resource)).not.toBe('"*"');
        expect(s.Condition).toEqual({ StringEquals: { 'aws:PrincipalAccount': '123456789012' } });
        for (const a of actionsOf(s)) expect(a).not.toContain('*');
      }
    }
    const s3 = json(gatewayPolicies);
    expect(s3).toContain(idOf(stack, prod.stack.storage.rawBucket));
    expect(s3).toContain(idOf(stack, prod.stack.storage.resultsBucket));
    expect(s3).toContain(idOf(stack, prod.stack.storage.jobsTable));
  });

  test('VPC flow logs go to CloudWatch Logs', () => {
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'ALL', LogDestinationType: 'cloud-watch-logs' });
  });

  test('no security group admits traffic from anywhere; endpoints admit HTTPS from the function groups only', () => {
    for (const [, sg] of resourcesOf(template, 'AWS::EC2::SecurityGroup')) {
      for (const rule of sg.Properties.SecurityGroupIngress ?? []) {
        expect(rule.CidrIp).not.toBe('0.0.0.0/0');
        expect(rule.CidrIpv6).not.toBe('::/0');
      }
    }
    for (const [, rule] of resourcesOf(template, 'AWS::EC2::SecurityGroupIngress')) {
      expect(rule.Properties.CidrIp).toBeUndefined();
      expect(rule.Properties.SourceSecurityGroupId).toBeDefined();
    }
    const endpointSg = idOf(stack, prod.stack.network.endpointSecurityGroup);
    const endpointIngress = resourcesOf(template, 'AWS::EC2::SecurityGroupIngress').filter(
      ([, r]) => json(r.Properties.GroupId) === json(getAtt(endpointSg, 'GroupId')),
    );
    // api, ingest, jobs, migrate, and the rotation functions
    expect(endpointIngress).toHaveLength(5);
    for (const [, r] of endpointIngress) {
      expect(r.Properties.FromPort).toBe(443);
      expect(r.Properties.ToPort).toBe(443);
    }
  });
});

describe('database', () => {
  test('PostgreSQL: encrypted, private, backed up, in the database subnets', () => {
    template.hasResourceProperties('AWS::RDS::DBInstance', {
      Engine: 'postgres',
      EngineVersion: '17.9',
      StorageEncrypted: true,
      PubliclyAccessible: false,
      BackupRetentionPeriod: 7,
      MasterUsername: ROLE_NAMES.owner,
      DBName: 'quarry',
      Port: '5432',
      EnableCloudwatchLogsExports: ['postgresql', 'upgrade'],
    });
    template.hasResource('AWS::RDS::DBInstance', { DeletionPolicy: 'Snapshot', UpdateReplacePolicy: 'Snapshot' });
    // Protection is the deploy's to switch on (below), never the template's.
    const instance = resourcesOf(template, 'AWS::RDS::DBInstance')[0][1];
    expect(instance.Properties.DeletionProtection).toBeUndefined();
    const subnetGroup = resourcesOf(template, 'AWS::RDS::DBSubnetGroup')[0][1];
    expect(json(subnetGroup.Properties.SubnetIds)).toContain('databaseSubnet');
  });

  test('parameter group forces TLS', () => {
    template.hasResourceProperties('AWS::RDS::DBParameterGroup', {
      Family: 'postgres17',
      Parameters: Match.objectLike({ 'rds.force_ssl': '1' }),
    });
  });

  test('only the four functions and the rotation functions reach 5432', () => {
    const dbSg = idOf(stack, prod.stack.database.securityGroup);
    const ingress = resourcesOf(template, 'AWS::EC2::SecurityGroupIngress').filter(
      ([, r]) => json(r.Properties.GroupId) === json(getAtt(dbSg, 'GroupId')),
    );
    const sources = ingress.map(([, r]) => r.Properties.SourceSecurityGroupId['Fn::GetAtt'][0]).sort();
    const expected = [
      prod.stack.api.fn.securityGroup,
      prod.stack.ingest.fn.securityGroup,
      prod.stack.jobs.fn.securityGroup,
      prod.stack.migrations.fn.securityGroup,
      prod.stack.database.rotationSecurityGroup,
    ]
      .map((sg) => idOf(stack, sg))
      .sort();
    expect(sources).toEqual(expected);
    const dbGroup = resourcesOf(template, 'AWS::EC2::SecurityGroup').find(([id]) => id === dbSg)![1];
    // allowAllOutbound: false leaves CDK's placeholder rule that matches no traffic
    expect(dbGroup.Properties.SecurityGroupEgress).toEqual([
      expect.objectContaining({ CidrIp: '255.255.255.255/32', IpProtocol: 'icmp' }),
    ]);
  });

  test('one secret per role, each rotated by the hosted single-user PostgreSQL rotation inside the VPC', () => {
    template.resourceCountIs('AWS::SecretsManager::Secret', 3);
    for (const role of Object.values(ROLE_NAMES)) {
      template.hasResourceProperties('AWS::SecretsManager::Secret', {
        GenerateSecretString: Match.objectLike({ SecretStringTemplate: Match.stringLikeRegexp(`"username":"${role}"`) }),
      });
    }
    template.resourceCountIs('AWS::SecretsManager::RotationSchedule', 3);
    template.allResourcesProperties('AWS::SecretsManager::RotationSchedule', {
      HostedRotationLambda: Match.objectLike({
        RotationType: 'PostgreSQLSingleUser',
        VpcSecurityGroupIds: Match.anyValue(),
        VpcSubnetIds: Match.anyValue(),
      }),
      RotationRules: { ScheduleExpression: 'rate(30 days)' },
    });
  });

  test('rotations wait for the migration that creates the roles', () => {
    const migrations = idOf(stack, prod.stack.migrations.resource);
    for (const [, schedule] of resourcesOf(template, 'AWS::SecretsManager::RotationSchedule')) {
      expect(schedule.DependsOn).toEqual(expect.arrayContaining([migrations]));
    }
  });

  test('migrations run on deploy through the Provider framework, again whenever the bundle changes', () => {
    template.hasResourceProperties('Custom::QuarryMigrations', {
      ServiceToken: Match.anyValue(),
      Database: 'quarry',
      BundleSha256: Match.stringLikeRegexp('^[0-9a-f]{64}$'),
    });
    const migrations = resourcesOf(template, 'Custom::QuarryMigrations')[0][1];
    expect(migrations.DependsOn).toEqual(expect.arrayContaining([idOf(stack, prod.stack.database.instance)]));
  });

  test('migrations wait for every network rule on their way to the database and the endpoints', () => {
    const migrations = resourcesOf(template, 'Custom::QuarryMigrations')[0][1];
    const fnSg = json(getAtt(idOf(stack, prod.stack.migrations.fn.securityGroup), 'GroupId'));
    const dbSg = json(getAtt(idOf(stack, prod.stack.database.securityGroup), 'GroupId'));
    const rules = [
      ...resourcesOf(template, 'AWS::EC2::SecurityGroupIngress'),
      ...resourcesOf(template, 'AWS::EC2::SecurityGroupEgress'),
    ].filter(([, r]) => {
      const p = r.Properties;
      const ends = [p.GroupId, p.SourceSecurityGroupId, p.DestinationSecurityGroupId].map(json);
      return ends.includes(fnSg);
    });
    // 5432 into the database, HTTPS into the endpoints, and the function's egress to both.
    expect(rules.length).toBeGreaterThanOrEqual(3);
    const port = json(getAtt(idOf(stack, prod.stack.database.instance), 'Endpoint.Port'));
    expect(rules.some(([, r]) => json(r.Properties.GroupId) === dbSg && json(r.Properties.FromPort) === port)).toBe(true);
    for (const [id] of rules) expect(migrations.DependsOn).toContain(id);
    // The function's own inline egress (HTTPS) is part of its group, which it waits for too.
    expect(migrations.DependsOn).toContain(idOf(stack, prod.stack.migrations.fn.securityGroup));
  });

  test('functions that use the database are created and updated only after the migrations', () => {
    const migrations = idOf(stack, prod.stack.migrations.resource);
    for (const fn of [prod.stack.api.fn, prod.stack.ingest.fn, prod.stack.jobs.fn]) {
      const resource = template.toJSON().Resources[idOf(stack, fn.function)];
      expect(resource.DependsOn).toEqual(expect.arrayContaining([migrations]));
    }
  });

  test('migrations keep trying to reach the database for minutes, within the function timeout', () => {
    const fn = template.toJSON().Resources[idOf(stack, prod.stack.migrations.fn.function)];
    const budget = Number(fn.Properties.Environment.Variables.QUARRY_MIGRATE_CONNECT_SECONDS);
    expect(budget).toBeGreaterThanOrEqual(300);
    expect(budget).toBeLessThan(fn.Properties.Timeout);
  });

  test('deletion protection is switched on by the deploy after the migrations, off again only when the stack goes', () => {
    const protections = resourcesOf(template, 'Custom::QuarryDeletionProtection');
    expect(protections).toHaveLength(2);
    // The calls are JSON strings with the resources' names joined in.
    const call = (r: any, when: string): string => json(r.Properties[when]).replace(/\\"/g, '"');
    const db = protections.find(([, r]) => call(r, 'Create').includes('"action":"ModifyDBInstance"'))![1];
    expect(call(db, 'Create')).toContain('"DeletionProtection":true');
    expect(call(db, 'Update')).toContain('"DeletionProtection":true');
    expect(call(db, 'Delete')).toContain('"DeletionProtection":false');
    expect(db.DependsOn).toEqual(expect.arrayContaining([idOf(stack, prod.stack.migrations.resource)]));
    const table = protections.find(([, r]) => call(r, 'Create').includes('"action":"UpdateTable"'))![1];
    expect(call(table, 'Create')).toContain('"DeletionProtectionEnabled":true');
    expect(call(table, 'Delete')).toContain('"DeletionProtectionEnabled":false');
    // Each call may touch only its own resource.
    const policies = resourcesOf(template, 'AWS::IAM::Policy').filter(([id]) => id.startsWith('DeletionProtection'));
    const statements: Statement[] = policies.flatMap(([, p]) => p.Properties.PolicyDocument.Statement);
    expect(statements.flatMap(actionsOf).sort()).toEqual(['dynamodb:UpdateTable', 'rds:ModifyDBInstance']);
    for (const st of statements) expect(json(st.Resource)).not.toBe('"*"');
  });

  test('no RDS Proxy unless dbProxy is set', () => {
    template.resourceCountIs('AWS::RDS::DBProxy', 0);
    for (const fn of [prod.stack.api.fn, prod.stack.ingest.fn, prod.stack.jobs.fn]) {
      const env = resourcesOf(template, 'AWS::Lambda::Function').find(([id]) => id === idOf(stack, fn.function))![1]
        .Properties.Environment.Variables;
      expect(env.QUARRY_DB_HOST).toEqual(getAtt(idOf(stack, prod.stack.database.instance), 'Endpoint.Address'));
      expect(env.QUARRY_API__SESSION_SETTINGS).toBeUndefined();
    }
  });

  test('dbProxy: the writer and reader functions reach PostgreSQL only through a TLS-only proxy; the migrations go direct', () => {
    const withProxy = synthesize({ dbProxy: 'true' });
    const t = withProxy.template;
    const s = withProxy.stack;
    const proxy = s.database.proxy!;
    expect(proxy).toBeDefined();
    const [proxyId, p] = resourcesOf(t, 'AWS::RDS::DBProxy')[0];
    expect(p.Properties).toMatchObject({ EngineFamily: 'POSTGRESQL', RequireTLS: true, DBProxyName: 'quarry-db-proxy' });
    // The proxy logs in with the writer and reader secrets, never the owner's.
    const secrets = json(p.Properties.Auth.map((a: { SecretArn: unknown }) => a.SecretArn));
    expect(secrets).toContain('WriterSecret');
    expect(secrets).toContain('ReaderSecret');
    expect(secrets).not.toContain('InstanceSecret');
    expect(p.Properties.Auth.every((a: { IAMAuth: string }) => a.IAMAuth === 'DISABLED')).toBe(true);

    const envOf = (fn: QuarryFunction) =>
      resourcesOf(t, 'AWS::Lambda::Function').find(([id]) => id === idOf(s, fn.function))![1].Properties.Environment.Variables;
    for (const fn of [s.api.fn, s.ingest.fn, s.jobs.fn]) {
      expect(envOf(fn).QUARRY_DB_HOST).toEqual(getAtt(proxyId, 'Endpoint'));
      // A session SET would pin each client's connection in the proxy.
      expect(envOf(fn).QUARRY_API__SESSION_SETTINGS).toBe('false');
    }
    expect(envOf(s.migrations.fn).QUARRY_DB_HOST).toEqual(getAtt(idOf(s, s.database.instance), 'Endpoint.Address'));

    // 5432 on the instance: the proxy, the migrations and the rotations only.
    const ingressTo = (sg: string) =>
      resourcesOf(t, 'AWS::EC2::SecurityGroupIngress')
        .filter(([, r]) => json(r.Properties.GroupId) === json(getAtt(sg, 'GroupId')))
        .map(([, r]) => r.Properties.SourceSecurityGroupId['Fn::GetAtt'][0])
        .sort();
    const proxySg = idOf(s, proxy.connections.securityGroups[0]);
    expect(ingressTo(idOf(s, s.database.securityGroup))).toEqual(
      [proxy.connections.securityGroups[0], s.migrations.fn.securityGroup, s.database.rotationSecurityGroup].map((g) => idOf(s, g)).sort(),
    );
    expect(ingressTo(proxySg)).toEqual([s.api.fn.securityGroup, s.ingest.fn.securityGroup, s.jobs.fn.securityGroup].map((g) => idOf(s, g)).sort());
  });

  test('a failed first deploy leaves nothing behind: stateful resources are kept except when their creation rolls back', () => {
    const named = [
      ...resourcesOf(template, 'AWS::Logs::LogGroup'),
      ...resourcesOf(template, 'AWS::DynamoDB::GlobalTable'),
      ...resourcesOf(template, 'AWS::S3::Bucket'),
    ];
    for (const [id, r] of named) {
      if (r.DeletionPolicy === 'Delete') continue; // the cache table: recomputable answers only
      expect([id, r.DeletionPolicy]).toEqual([id, 'RetainExceptOnCreate']);
      expect([id, r.UpdateReplacePolicy]).toEqual([id, 'Retain']);
    }
  });
});

describe('storage', () => {
  const buckets = resourcesOf(template, 'AWS::S3::Bucket');

  test('every bucket blocks public access, encrypts, and refuses plain HTTP and old TLS', () => {
    expect(buckets).toHaveLength(3);
    for (const [id, b] of buckets) {
      expect(b.Properties.PublicAccessBlockConfiguration).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      expect(b.Properties.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault).toEqual({
        SSEAlgorithm: 'AES256',
      });
      const policy = resourcesOf(template, 'AWS::S3::BucketPolicy').find(([, p]) => json(p.Properties.Bucket) === json({ Ref: id }));
      const statements = json(policy![1].Properties.PolicyDocument.Statement);
      expect(statements).toContain('"aws:SecureTransport":"false"');
      expect(statements).toContain('"s3:TlsVersion":1.2');
    }
  });

  test('raw bucket: versioned, access-logged, tiered down, old versions expire', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      VersioningConfiguration: { Status: 'Enabled' },
      LoggingConfiguration: Match.objectLike({ LogFilePrefix: 'raw/' }),
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({
            Transitions: [
              { StorageClass: 'STANDARD_IA', TransitionInDays: 30 },
              { StorageClass: 'GLACIER_IR', TransitionInDays: 180 },
            ],
          }),
          Match.objectLike({ NoncurrentVersionExpiration: { NoncurrentDays: 30 } }),
        ]),
      },
    });
  });

  test('results bucket: every object expires', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LoggingConfiguration: Match.objectLike({ LogFilePrefix: 'results/' }),
      LifecycleConfiguration: { Rules: [Match.objectLike({ ExpirationInDays: 7, Status: 'Enabled' })] },
    });
  });

  test('cache and jobs tables: on demand, TTL on expires_at, encrypted; PITR on jobs', () => {
    template.hasResourceProperties('AWS::DynamoDB::GlobalTable', {
      TableName: 'quarry-cache',
      KeySchema: [{ AttributeName: 'key', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'key', AttributeType: 'S' }],
      BillingMode: 'PAY_PER_REQUEST',
      TimeToLiveSpecification: { AttributeName: 'expires_at', Enabled: true },
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS' },
    });
    template.hasResourceProperties('AWS::DynamoDB::GlobalTable', {
      TableName: 'quarry-jobs',
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      BillingMode: 'PAY_PER_REQUEST',
      TimeToLiveSpecification: { AttributeName: 'expires_at', Enabled: true },
      Replicas: [
        Match.objectLike({
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        }),
      ],
    });
  });
});

describe('functions', () => {
  const fns: Record<string, QuarryFunction> = {
    api: prod.stack.api.fn,
    ingest: prod.stack.ingest.fn,
    jobs: prod.stack.jobs.fn,
    migrate: prod.stack.migrations.fn,
  };

  test.each(Object.keys(fns))('quarry-%s: provided.al2023 on arm64 from its zip, in the compute subnets, traced', (name) => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      FunctionName: `quarry-${name}`,
      Runtime: 'provided.al2023',
      Architectures: ['arm64'],
      Handler: 'bootstrap',
      PackageType: Match.absent(),
      TracingConfig: { Mode: 'Active' },
      VpcConfig: Match.objectLike({ SecurityGroupIds: [getAtt(idOf(stack, fns[name].securityGroup), 'GroupId')] }),
      LoggingConfig: Match.objectLike({ LogGroup: { Ref: idOf(stack, fns[name].logGroup) } }),
    });
  });

  test('no Docker image functions, no function outside the known set', () => {
    for (const [, f] of resourcesOf(template, 'AWS::Lambda::Function')) {
      expect(f.Properties.PackageType).not.toBe('Image');
      expect(f.Properties.Code.ImageUri).toBeUndefined();
    }
  });

  const secretEnv = (name: string): string[] => {
    const f = resourcesOf(template, 'AWS::Lambda::Function').find(([, r]) => r.Properties.FunctionName === `quarry-${name}`)!;
    return Object.keys(f[1].Properties.Environment.Variables)
      .filter((k) => k.startsWith('QUARRY_DB_SECRET_'))
      .sort();
  };

  test('each function is told (and may read) only the secrets of its roles', () => {
    expect(secretEnv('api')).toEqual(['QUARRY_DB_SECRET_READER_ARN']);
    expect(secretEnv('ingest')).toEqual(['QUARRY_DB_SECRET_WRITER_ARN']);
    expect(secretEnv('jobs')).toEqual(['QUARRY_DB_SECRET_READER_ARN']);
    expect(secretEnv('migrate')).toEqual([
      'QUARRY_DB_SECRET_OWNER_ARN',
      'QUARRY_DB_SECRET_READER_ARN',
      'QUARRY_DB_SECRET_WRITER_ARN',
    ]);
    const secretsRead = (name: string): string[] =>
      statementsOf(template, stack, fns[name].role)
        .filter((s) => actionsOf(s).includes('secretsmanager:GetSecretValue'))
        .flatMap((s) => resourcesOfStatement(s).map((r) => json(r)))
        .sort();
    const secret = (role: 'owner' | 'writer' | 'reader'): string => json(stack.resolve(prod.stack.database.secrets[role].secretArn));
    expect(secretsRead('api')).toEqual([secret('reader')]);
    expect(secretsRead('ingest')).toEqual([secret('writer')]);
    expect(secretsRead('jobs')).toEqual([secret('reader')]);
    expect(secretsRead('migrate')).toEqual([secret('owner'), secret('reader'), secret('writer')].sort());
  });

  test('the common environment names the stack\'s resources; only quarry-api knows the state machine', () => {
    for (const name of Object.keys(fns)) {
      const f = resourcesOf(template, 'AWS::Lambda::Function').find(([, r]) => r.Properties.FunctionName === `quarry-${name}`)!;
      const env = f[1].Properties.Environment.Variables;
      for (const key of [
        'QUARRY_DB_HOST',
        'QUARRY_DB_PORT',
        'QUARRY_DB_NAME',
        'QUARRY_RAW_BUCKET',
        'QUARRY_RESULTS_BUCKET',
        'QUARRY_CACHE_TABLE',
        'QUARRY_JOBS_TABLE',
        'QUARRY_JOBS_TOPIC_ARN',
        'QUARRY_ALARM_TOPIC_ARN',
        'RUST_LOG',
      ]) {
        expect(env).toHaveProperty(key);
      }
      expect(env.QUARRY_DB_NAME).toBe('quarry');
      expect('QUARRY_STATE_MACHINE_ARN' in env).toBe(name === 'api');
    }
  });

  test('no policy in the stack grants a wildcard action', () => {
    for (const [, policy] of resourcesOf(template, 'AWS::IAM::Policy')) {
      for (const s of policy.Properties.PolicyDocument.Statement as Statement[]) {
        for (const a of actionsOf(s)) expect(a).not.toMatch(/\*/);
      }
    }
  });

  test('Resource "*" only for actions without resource-level permissions', () => {
    const allowedOnStar = new Set([
      'ec2:CreateNetworkInterface',
      'ec2:DescribeNetworkInterfaces',
      'ec2:DescribeSubnets',
      'ec2:DeleteNetworkInterface',
      'ec2:AssignPrivateIpAddresses',
      'ec2:UnassignPrivateIpAddresses',
      'xray:PutTraceSegments',
      'xray:PutTelemetryRecords',
      'xray:GetSamplingRules',
      'xray:GetSamplingTargets',
      'logs:CreateLogDelivery',
      'logs:GetLogDelivery',
      'logs:UpdateLogDelivery',
      'logs:DeleteLogDelivery',
      'logs:ListLogDeliveries',
      'logs:PutResourcePolicy',
      'logs:DescribeResourcePolicies',
      'logs:DescribeLogGroups',
    ]);
    for (const [, policy] of resourcesOf(template, 'AWS::IAM::Policy')) {
      for (const s of policy.Properties.PolicyDocument.Statement as Statement[]) {
        if (resourcesOfStatement(s).includes('*')) {
          for (const a of actionsOf(s)) expect(allowedOnStar).toContain(a);
        }
      }
    }
  });

  /** Logical ids of stack resources a function's policy mentions. */
  const mentioned = (fn: QuarryFunction): string => json(statementsOf(template, stack, fn.role));
  const id = (c: Parameters<typeof idOf>[1]): string => idOf(stack, c);
  const s = prod.stack.storage;
  const n = prod.stack.notifications;

  test('quarry-ingest: raw bucket source prefixes (read), writer secret, alarm topic; nothing else', () => {
    const p = mentioned(fns.ingest);
    for (const prefix of ['crm-data/*', 'erp-data/*', 'shop-data/*', 'stripe-data/*']) expect(p).toContain(prefix);
    expect(p).toContain(id(n.alarmTopic));
    for (const other of [s.resultsBucket, s.cacheTable, s.jobsTable, n.jobsTopic]) expect(p).not.toContain(id(other));
    const s3 = statementsOf(template, stack, fns.ingest.role).filter((st) => actionsOf(st).some((a) => a.startsWith('s3:')));
    expect(s3.flatMap(actionsOf).sort()).toEqual(['s3:GetObject', 's3:GetObjectVersion']);
  });

  test('quarry-api: cache and jobs tables, result objects, StartExecution on its state machine only', () => {
    const p = mentioned(fns.api);
    for (const own of [s.cacheTable, s.jobsTable, s.resultsBucket, n.alarmTopic, prod.stack.jobs.stateMachine]) {
      expect(p).toContain(id(own));
    }
    for (const other of [s.rawBucket, n.jobsTopic]) expect(p).not.toContain(id(other));
    const start = statementsOf(template, stack, fns.api.role).find((st) => actionsOf(st).includes('states:StartExecution'))!;
    expect(start.Resource).toEqual({ Ref: id(prod.stack.jobs.stateMachine) });
  });

  test('quarry-jobs: jobs table, result objects, reader secret, the jobs topic (ended executions); not the raw bucket or the cache', () => {
    const p = mentioned(fns.jobs);
    for (const own of [s.jobsTable, s.resultsBucket]) expect(p).toContain(id(own));
    expect(p).toContain(id(n.jobsTopic));
    for (const other of [s.rawBucket, s.cacheTable]) expect(p).not.toContain(id(other));
  });

  test('quarry-migrate: its secrets and nothing of the data plane', () => {
    const p = mentioned(fns.migrate);
    for (const other of [s.rawBucket, s.resultsBucket, s.cacheTable, s.jobsTable, n.jobsTopic, n.alarmTopic]) {
      expect(p).not.toContain(id(other));
    }
  });

  test('each function writes only its own log group; no AWS managed policy on our roles', () => {
    for (const fn of Object.values(fns)) {
      const logs = statementsOf(template, stack, fn.role).filter((st) => actionsOf(st).includes('logs:PutLogEvents'));
      expect(logs).toEqual([expect.objectContaining({ Resource: getAtt(id(fn.logGroup)) })]);
      const role = resourcesOf(template, 'AWS::IAM::Role').find(([rid]) => rid === id(fn.role))![1];
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    }
  });
});

describe('ingest task (files too large for one invocation)', () => {
  test('not in the default stack: no cluster, no ECS or ECR endpoints, no hand-off settings', () => {
    template.resourceCountIs('AWS::ECS::Cluster', 0);
    template.resourceCountIs('AWS::ECS::TaskDefinition', 0);
    expect(json(template.findResources('AWS::EC2::VPCEndpoint'))).not.toMatch(/\.ecs|\.ecr|\.logs/);
    const env = resourcesOf(template, 'AWS::Lambda::Function').find(([id]) => id === idOf(stack, prod.stack.ingest.fn.function))![1]
      .Properties.Environment.Variables;
    expect(Object.keys(env).filter((k) => k.startsWith('QUARRY_INGEST_TASK_'))).toEqual([]);
  });

  const withTask = synthesize({ ingestTask: 'true', ingestTaskOverBytes: '500000000' });
  const t = withTask.template;
  const s = withTask.stack;
  const task = s.ingest.task!;
  const id = (c: any) => idOf(s, c);

  test('a Fargate ARM64 task: read-only root filesystem, logs kept, the writer secret and nothing else', () => {
    expect(task).toBeDefined();
    const [, def] = resourcesOf(t, 'AWS::ECS::TaskDefinition')[0];
    expect(def.Properties).toMatchObject({
      Family: 'quarry-ingest',
      Cpu: '1024',
      Memory: '2048',
      NetworkMode: 'awsvpc',
      RequiresCompatibilities: ['FARGATE'],
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
    });
    const [container] = def.Properties.ContainerDefinitions;
    expect(container).toMatchObject({ Name: 'ingest', Essential: true, ReadonlyRootFilesystem: true });
    expect(container.LogConfiguration.LogDriver).toBe('awslogs');
    expect(json(container.LogConfiguration.Options)).toContain(id(task.logGroup));
    const names = container.Environment.map((e: { Name: string }) => e.Name);
    expect(names).toContain('QUARRY_DB_SECRET_WRITER_ARN');
    expect(names.filter((n: string) => /SECRET_(OWNER|READER)/.test(n))).toEqual([]);
    expect(names.filter((n: string) => n.startsWith('QUARRY_INGEST_TASK_'))).toEqual([]);
    t.hasResourceProperties('AWS::Logs::LogGroup', {
      LogGroupName: '/aws/ecs/containerinsights/quarry-ingest/performance',
      RetentionInDays: 30,
    });
    t.hasResourceProperties('AWS::ECS::Cluster', {
      ClusterName: 'quarry-ingest',
      ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }],
    });
  });

  test('quarry-ingest knows where to start it and may start only it, passing only its roles', () => {
    const env = resourcesOf(t, 'AWS::Lambda::Function').find(([i]) => i === id(s.ingest.fn.function))![1].Properties.Environment.Variables;
    expect(env.QUARRY_INGEST_TASK_CLUSTER).toEqual(getAtt(id(task.cluster)));
    expect(env.QUARRY_INGEST_TASK_DEFINITION).toEqual({ Ref: id(task.taskDefinition) });
    expect(env.QUARRY_INGEST_TASK_CONTAINER).toBe('ingest');
    expect(env.QUARRY_INGEST_TASK_SECURITY_GROUPS).toEqual(getAtt(id(task.securityGroup), 'GroupId'));
    expect(json(env.QUARRY_INGEST_TASK_SUBNETS)).toContain('computeSubnet');
    expect(env.QUARRY_INGEST_TASK_OVER_BYTES).toBe('500000000');
    const statements = statementsOf(t, s, s.ingest.fn.role);
    const run = statements.find((st) => st.Sid === 'RunIngestTask')!;
    expect(run.Resource).toEqual({ Ref: id(task.taskDefinition) });
    expect(run.Condition).toEqual({ ArnEquals: { 'ecs:cluster': getAtt(id(task.cluster)) } });
    const pass = statements.find((st) => st.Sid === 'PassIngestTaskRoles')!;
    expect(pass.Condition).toEqual({ StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } });
    expect(resourcesOfStatement(pass).map(json).sort()).toEqual(
      [getAtt(id(task.taskDefinition.taskRole)), getAtt(id(task.taskDefinition.executionRole!))].map(json).sort(),
    );
  });

  test('a stopped ingest task comes back to quarry-ingest, with retries and the failure queue behind', () => {
    t.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ecs'],
        'detail-type': ['ECS Task State Change'],
        detail: { clusterArn: [getAtt(id(task.cluster))], lastStatus: ['STOPPED'], startedBy: ['quarry-ingest'] },
      },
      Targets: [
        Match.objectLike({
          Arn: getAtt(id(s.ingest.fn.function)),
          RetryPolicy: { MaximumRetryAttempts: 4, MaximumEventAgeInSeconds: 21600 },
          DeadLetterConfig: { Arn: getAtt(id(s.ingest.failureQueue)) },
        }),
      ],
    });
  });

  test('the task reaches ECR, Logs and PostgreSQL from the isolated subnets; the function reaches ECS', () => {
    const services = json(resourcesOf(t, 'AWS::EC2::VPCEndpoint').map(([, r]) => r.Properties.ServiceName));
    for (const svc of ['.ecs', '.ecr.api', '.ecr.dkr', '.logs']) expect(services).toContain(svc);
    expect(json(t.findResources('AWS::EC2::VPCEndpoint'))).toContain('starport-layer-bucket');
    const ingressToDb = resourcesOf(t, 'AWS::EC2::SecurityGroupIngress')
      .filter(([, r]) => json(r.Properties.GroupId) === json(getAtt(id(s.database.securityGroup), 'GroupId')))
      .map(([, r]) => r.Properties.SourceSecurityGroupId['Fn::GetAtt'][0]);
    expect(ingressToDb).toContain(id(task.securityGroup));
  });
});

describe('ingest', () => {
  test('ObjectCreated notifications for each source prefix go to quarry-ingest', () => {
    const config = resourcesOf(template, 'Custom::S3BucketNotifications')[0][1].Properties.NotificationConfiguration;
    const prefixes = config.LambdaFunctionConfigurations.map((c: any) => {
      expect(c.Events).toEqual(['s3:ObjectCreated:*']);
      expect(c.LambdaFunctionArn).toEqual(getAtt(idOf(stack, prod.stack.ingest.fn.function)));
      return c.Filter.Key.FilterRules[0].Value;
    });
    expect(prefixes.sort()).toEqual(['crm-data/', 'erp-data/', 'shop-data/', 'stripe-data/']);
  });

  test('reserved concurrency, two retries, failures to an encrypted, TLS-only queue', () => {
    template.hasResourceProperties('AWS::Lambda::Function', { FunctionName: 'quarry-ingest', ReservedConcurrentExecutions: 5 });
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      MaximumRetryAttempts: 2,
      MaximumEventAgeInSeconds: 21600,
      DestinationConfig: { OnFailure: { Destination: getAtt(idOf(stack, prod.stack.ingest.failureQueue)) } },
    });
    template.hasResourceProperties('AWS::SQS::Queue', { SqsManagedSseEnabled: true, MessageRetentionPeriod: 1209600 });
    const queuePolicy = json(resourcesOf(template, 'AWS::SQS::QueuePolicy')[0][1].Properties.PolicyDocument);
    expect(queuePolicy).toContain('"aws:SecureTransport":"false"');
  });
});

describe('jobs state machine', () => {
  const machine = resourcesOf(template, 'AWS::StepFunctions::StateMachine')[0][1];
  // The definition with the CloudFormation references left as placeholders.
  const definition = JSON.parse(
    (machine.Properties.DefinitionString['Fn::Join'][1] as unknown[]).map((p) => (typeof p === 'string' ? p : 'REF')).join(''),
  );

  test('Standard, logging ALL with execution data, X-Ray tracing', () => {
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineName: 'quarry-analytics-job',
      StateMachineType: 'STANDARD',
      LoggingConfiguration: Match.objectLike({ Level: 'ALL', IncludeExecutionData: true }),
      TracingConfiguration: { Enabled: true },
    });
  });

  test('initialise -> execute -> store result -> complete -> notify; failures -> fail -> notify -> Fail', () => {
    const S = definition.States;
    expect(definition.StartAt).toBe('Initialise');
    expect(S.Initialise.Next).toBe('Execute');
    expect(S.Execute.Next).toBe('StoreResult');
    expect(S.StoreResult.Next).toBe('Complete');
    expect(S.Complete.Next).toBe('NotifySuccess');
    expect(S.NotifySuccess.End).toBe(true);
    expect(S.MarkFailed.Next).toBe('NotifyFailure');
    expect(S.NotifyFailure.Next).toBe('JobFailed');
    expect(S.JobFailed.Type).toBe('Fail');
    for (const name of ['Initialise', 'Execute', 'StoreResult', 'Complete']) {
      expect(S[name].Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'MarkFailed' }]);
    }
    expect(S.MarkFailed.Catch[0].Next).toBe('NotifyFailure');
    const steps = ['Initialise', 'Execute', 'StoreResult', 'Complete', 'MarkFailed'].map((n) => S[n].Parameters.step);
    expect(steps).toEqual(['initialise', 'execute', 'store_result', 'complete', 'fail']);
  });

  test('Quarry.Transient is retried with backoff and full jitter; permanent errors never', () => {
    for (const name of ['Initialise', 'Execute', 'StoreResult', 'Complete', 'MarkFailed']) {
      const retry = definition.States[name].Retry as Array<Record<string, unknown>>;
      expect(retry[0]).toEqual({
        ErrorEquals: [TRANSIENT_ERROR],
        IntervalSeconds: 2,
        MaxAttempts: 4,
        BackoffRate: 2,
        MaxDelaySeconds: 60,
        JitterStrategy: 'FULL',
      });
      expect(retry[1]).toMatchObject({ ErrorEquals: LAMBDA_SERVICE_ERRORS, JitterStrategy: 'FULL' });
      const retried = retry.flatMap((r) => r.ErrorEquals as string[]);
      for (const never of [PERMANENT_ERROR, 'States.ALL', 'States.TaskFailed', 'States.Timeout']) {
        expect(retried).not.toContain(never);
      }
    }
  });

  test('notifications publish to the jobs topic', () => {
    expect(definition.States.NotifySuccess.Resource).toContain(':states:::sns:publish');
    expect(definition.States.NotifySuccess.Parameters.Message).toMatchObject({ specversion: '1.0', type: 'quarry.job.succeeded', source: 'quarry/jobs' });
    expect(definition.States.NotifyFailure.Parameters.Message).toMatchObject({ specversion: '1.0', type: 'quarry.job.failed', source: 'quarry/jobs' });
    expect(json(machine.Properties.DefinitionString)).toContain(idOf(stack, prod.stack.notifications.jobsTopic));
  });

  test('a publish that fails for a moment is tried again', () => {
    for (const name of ['NotifySuccess', 'NotifyFailure']) {
      const retry = definition.States[name].Retry as Array<Record<string, any>>;
      expect(retry).toHaveLength(1);
      expect(retry[0].ErrorEquals).toEqual(['States.ALL']);
      expect(retry[0].MaxAttempts).toBeGreaterThanOrEqual(3);
    }
  });

  test('an execution that ends without its own last steps reaches quarry-jobs, which marks the job failed', () => {
    const jobsFn = idOf(stack, prod.stack.jobs.fn.function);
    const sm = idOf(stack, prod.stack.jobs.stateMachine);
    const [[, rule]] = resourcesOf(template, 'AWS::Events::Rule');
    expect(rule.Properties.EventPattern).toEqual({
      source: ['aws.states'],
      'detail-type': ['Step Functions Execution Status Change'],
      detail: { stateMachineArn: [{ Ref: sm }], status: ['FAILED', 'TIMED_OUT', 'ABORTED'] },
    });
    const [target] = rule.Properties.Targets;
    expect(target.Arn).toEqual(getAtt(jobsFn));
    expect(target.RetryPolicy.MaximumRetryAttempts).toBeGreaterThan(0);
    expect(target.DeadLetterConfig.Arn).toEqual(getAtt(idOf(stack, prod.stack.jobs.endedDeadLetters)));
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: getAtt(jobsFn),
      Principal: 'events.amazonaws.com',
      SourceArn: getAtt(idOf(stack, prod.stack.jobs.endedRule)),
    });
    // It publishes the job's failure event itself (the notify states never ran).
    const publishes = statementsOf(template, stack, prod.stack.jobs.fn.role).filter((st) => actionsOf(st).includes('sns:Publish'));
    expect(json(publishes)).toContain(idOf(stack, prod.stack.notifications.jobsTopic));
  });
});

describe('api', () => {
  test('a synchronous query ends before API Gateway\'s 29 s, so the caller gets Quarry\'s own answer', () => {
    const fn = template.toJSON().Resources[idOf(stack, prod.stack.api.fn.function)];
    const budget = Number(fn.Properties.Environment.Variables.QUARRY_API__SYNC_TIMEOUT_SECONDS);
    // The engine adds a 2 s guard to the query's own timeout.
    expect(budget + 2).toBeLessThan(29);
    expect(fn.Properties.Timeout).toBeLessThanOrEqual(29);
  });

  const methods = resourcesOf(template, 'AWS::ApiGateway::Method').map(([, m]) => m.Properties);
  const pathOf = (resourceRef: any): string => {
    if (resourceRef['Fn::GetAtt']) return '';
    const [rid] = [resourceRef.Ref];
    const r = resourcesOf(template, 'AWS::ApiGateway::Resource').find(([k]) => k === rid)![1].Properties;
    return `${pathOf(r.ParentId)}/${r.PathPart}`;
  };
  const routes = methods.filter((m) => m.HttpMethod !== 'OPTIONS').map((m) => `${m.HttpMethod} ${pathOf(m.ResourceId) || '/'}`);

  test('the REST API issue\'s routes, and no greedy proxy', () => {
    expect(routes.sort()).toEqual(
      [
        'GET /health',
        'GET /openapi.json',
        'GET /operations',
        'GET /operations/{name}',
        'GET /analytics',
        'POST /analytics',
        'GET /analytics/{name}',
        'POST /analytics/{name}',
        'POST /analytics/jobs',
        'GET /analytics/jobs/{id}',
        'GET /analytics/jobs/{id}/result',
        'GET /ingest/files',
        'GET /ingest/quarantine',
        'GET /admin/links',
        'POST /admin/links/confirm',
        'POST /admin/links/reject',
        'POST /admin/organizations/{id}/split',
        'GET /companies/{id}',
        'GET /',
        'GET /ui',
        'GET /ui/ingest',
        'GET /ui/schema',
        'GET /ui/api',
        'GET /ui/operations/{name}',
        'GET /ui/assets/{file}',
      ].sort(),
    );
    expect(json(resourcesOf(template, 'AWS::ApiGateway::Resource'))).not.toContain('{proxy+}');
  });

  test('API keys required everywhere but health, openapi.json, the catalog pages and CORS preflights', () => {
    for (const m of methods) {
      const route = `${m.HttpMethod} ${pathOf(m.ResourceId) || '/'}`;
      const page = route === 'GET /' || route === 'GET /ui' || route.startsWith('GET /ui/');
      const open = m.HttpMethod === 'OPTIONS' || route === 'GET /health' || route === 'GET /openapi.json' || page;
      expect([route, m.ApiKeyRequired === true]).toEqual([route, !open]);
    }
  });

  test('POST bodies validated against models; GET /analytics requires its operation', () => {
    const posts = methods.filter((m) => m.HttpMethod === 'POST');
    expect(posts).toHaveLength(6);
    for (const m of posts) {
      expect(m.RequestModels['application/json']).toBeDefined();
      expect(m.RequestValidatorId).toBeDefined();
    }
    template.hasResourceProperties('AWS::ApiGateway::RequestValidator', { ValidateRequestBody: true, ValidateRequestParameters: true });
    template.hasResourceProperties('AWS::ApiGateway::Model', {
      ContentType: 'application/json',
      Schema: Match.objectLike({
        type: 'object',
        required: ['operation'],
        additionalProperties: false,
        properties: { operation: { type: 'string', pattern: '^[a-z][a-z0-9_]{0,63}(@[0-9]{1,6})?$' }, parameters: { type: 'object' } },
      }),
    });
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'GET',
      RequestParameters: { 'method.request.querystring.operation': true },
      RequestValidatorId: Match.anyValue(),
    });
  });

  test('the gateway compresses answers (the function does not on Lambda)', () => {
    template.hasResourceProperties('AWS::ApiGateway::RestApi', { MinimumCompressionSize: 1024 });
  });

  test('Lambda proxy to quarry-api, one invoke permission scoped to this API', () => {
    for (const m of methods.filter((x) => x.HttpMethod !== 'OPTIONS')) {
      expect(m.Integration.Type).toBe('AWS_PROXY');
      expect(json(m.Integration.Uri)).toContain(idOf(stack, prod.stack.api.fn.function));
    }
    const permissions = resourcesOf(template, 'AWS::Lambda::Permission').filter(
      ([, p]) => p.Properties.Principal === 'apigateway.amazonaws.com',
    );
    expect(permissions).toHaveLength(1);
    expect(json(permissions[0][1].Properties.SourceArn)).toContain(idOf(stack, prod.stack.api.restApi));
  });

  test('stage prod: access logs, execution logs, tracing, throttling', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      StageName: 'prod',
      TracingEnabled: true,
      MethodSettings: [
        Match.objectLike({ LoggingLevel: 'ERROR', DataTraceEnabled: false, ThrottlingRateLimit: 100, ThrottlingBurstLimit: 200 }),
      ],
    });
    const stage = resourcesOf(template, 'AWS::ApiGateway::Stage')[0][1];
    expect(json(stage.Properties.AccessLogSetting.DestinationArn)).toContain(idOf(stack, prod.stack.api.accessLogs));
    expect(stage.Properties.AccessLogSetting.Format).toContain('$context.requestId');
  });

  test('a usage plan with per-key throttle and quota, and no key shared by every caller', () => {
    template.hasResourceProperties('AWS::ApiGateway::UsagePlan', {
      Throttle: { RateLimit: 20, BurstLimit: 40 },
      Quota: { Limit: 100000, Period: 'MONTH' },
    });
    // Callers' keys are made after the deploy (scripts/add-caller.sh), one per caller.
    template.resourceCountIs('AWS::ApiGateway::ApiKey', 0);
    const outputs = template.toJSON().Outputs;
    for (const o of ['UsagePlanId', 'RestApiId', 'AdminFunctionName', 'ApiUrl']) expect(outputs[o]).toBeDefined();
    expect(outputs.AdminFunctionName.Value).toBe('quarry-migrate');
  });

  test('CORS: preflight on every resource, CORS headers on the gateway\'s 4XX/5XX answers', () => {
    const options = methods.filter((m) => m.HttpMethod === 'OPTIONS');
    expect(options.length).toBe(resourcesOf(template, 'AWS::ApiGateway::Resource').length + 1);
    for (const type of ['DEFAULT_4XX', 'DEFAULT_5XX']) {
      template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
        ResponseType: type,
        ResponseParameters: Match.objectLike({
          'gatewayresponse.header.Access-Control-Allow-Origin': "'*'",
          'gatewayresponse.header.Content-Type': "'application/problem+json'",
        }),
      });
    }
  });

  test('WAF web ACL on the stage with a rate limit and AWS managed rules', () => {
    template.hasResourceProperties('AWS::WAFv2::WebACL', {
      Scope: 'REGIONAL',
      Rules: Match.arrayWith([
        Match.objectLike({ Statement: { RateBasedStatement: { Limit: 1000, AggregateKeyType: 'IP' } } }),
        Match.objectLike({ Name: 'AWSManagedRulesCommonRuleSet' }),
        Match.objectLike({ Name: 'AWSManagedRulesKnownBadInputsRuleSet' }),
      ]),
    });
    template.resourceCountIs('AWS::WAFv2::WebACLAssociation', 1);
  });
});

describe('notifications and monitoring', () => {
  test('both topics encrypted with a rotating customer key and TLS-only', () => {
    const key = idOf(stack, prod.stack.notifications.key);
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    for (const name of ['quarry-jobs', 'quarry-alarms']) {
      template.hasResourceProperties('AWS::SNS::Topic', { TopicName: name, KmsMasterKeyId: getAtt(key) });
    }
    for (const [, p] of resourcesOf(template, 'AWS::SNS::TopicPolicy')) {
      expect(json(p.Properties.PolicyDocument)).toContain('"aws:SecureTransport":"false"');
    }
  });

  test('no e-mail subscription unless alarmEmail is given', () => {
    template.resourceCountIs('AWS::SNS::Subscription', 0);
    const withEmail = synthesize({ alarmEmail: 'ops@example.com', jobsEmail: 'analysts@example.com' }).template;
    withEmail.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
    withEmail.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'analysts@example.com' });
  });

  test('alarms for every function, the jobs, the failure queue, the database and the API, all to the alarm topic', () => {
    const alarms = resourcesOf(template, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    const names = alarms.map((a) => a.AlarmName).sort();
    expect(names).toEqual(
      [
        ...['api', 'ingest', 'jobs', 'migrate'].flatMap((f) => [`quarry-${f}-errors`, `quarry-${f}-near-timeout`]),
        ...['api', 'jobs', 'migrate'].map((f) => `quarry-${f}-throttles`),
        'quarry-ingest-saturated',
        ...['ingest', 'jobs'].map((f) => `quarry-${f}-async-events-dropped`),
        'quarry-jobs-system-failures',
        'quarry-jobs-timed-out',
        'quarry-ingest-failures',
        'quarry-db-cpu',
        'quarry-db-cpu-credits',
        'quarry-db-freeable-memory',
        'quarry-db-free-storage',
        'quarry-db-connections',
        'quarry-api-5xx',
        'quarry-api-latency-p95',
      ].sort(),
    );
    const topic = { Ref: idOf(stack, prod.stack.notifications.alarmTopic) };
    for (const a of alarms) {
      expect(a.AlarmActions).toEqual([topic]);
      expect(a.OKActions).toEqual([topic]);
    }
    const byName = Object.fromEntries(alarms.map((a) => [a.AlarmName, a]));
    expect(byName['quarry-ingest-failures']).toMatchObject({ MetricName: 'ApproximateNumberOfMessagesVisible', Threshold: 1 });
    // Callers' own errors (their SQL, their parameters) fail jobs without waking anyone.
    expect(byName['quarry-jobs-system-failures']).toMatchObject({
      Namespace: 'Quarry',
      MetricName: 'quarry_job_system_failures_total',
      Dimensions: [{ Name: 'function', Value: 'quarry-jobs' }],
    });
    // Ingest throttles at its reservation by design: the alarm is the reservation full for 15 minutes.
    expect(byName['quarry-ingest-saturated']).toMatchObject({ MetricName: 'ConcurrentExecutions', Threshold: 5, EvaluationPeriods: 3 });
    expect(byName['quarry-api-near-timeout']).toMatchObject({ MetricName: 'Duration', ExtendedStatistic: 'p99', Threshold: 23200 });
    expect(byName['quarry-db-free-storage']).toMatchObject({ ComparisonOperator: 'LessThanThreshold' });
    expect(byName['quarry-api-5xx']).toMatchObject({ Namespace: 'AWS/ApiGateway', MetricName: '5XXError' });
  });

  test('CloudWatch alarms of this stack (and only those) may use the key and publish to the alarm topic', () => {
    const conditions = {
      StringEquals: { 'aws:SourceAccount': '123456789012' },
      ArnLike: { 'aws:SourceArn': 'arn:aws:cloudwatch:us-east-1:123456789012:alarm:quarry-*' },
    };
    const key = resourcesOf(template, 'AWS::KMS::Key')[0][1];
    expect(key.Properties.KeyPolicy.Statement).toContainEqual(
      expect.objectContaining({ Principal: { Service: 'cloudwatch.amazonaws.com' }, Condition: conditions }),
    );
    const alarmTopic = idOf(stack, prod.stack.notifications.alarmTopic);
    const policy = resourcesOf(template, 'AWS::SNS::TopicPolicy').find(([, p]) => json(p.Properties.Topics) === json([{ Ref: alarmTopic }]))!;
    expect(policy[1].Properties.PolicyDocument.Statement).toContainEqual(
      expect.objectContaining({
        Effect: 'Allow',
        Principal: { Service: 'cloudwatch.amazonaws.com' },
        Action: 'sns:Publish',
        Condition: conditions,
      }),
    );
  });

  test('a dashboard', () => {
    template.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'quarry-pipeline' });
  });
});

describe('dev stack (-c dev=true)', () => {
  const dev = synthesize({ dev: true }).template;

  test('deletion protection off and resources destroyed with the stack', () => {
    dev.resourceCountIs('Custom::QuarryDeletionProtection', 0);
    dev.hasResource('AWS::RDS::DBInstance', { DeletionPolicy: 'Delete' });
    dev.hasResource('AWS::DynamoDB::GlobalTable', { DeletionPolicy: 'Delete', Properties: Match.objectLike({ TableName: 'quarry-jobs' }) });
    for (const [, b] of resourcesOf(dev, 'AWS::S3::Bucket')) expect(b.DeletionPolicy).toBe('Delete');
  });

  test('the default stack keeps its data', () => {
    for (const [, b] of resourcesOf(template, 'AWS::S3::Bucket')) expect(b.DeletionPolicy).toBe('RetainExceptOnCreate');
    template.hasResource('AWS::DynamoDB::GlobalTable', {
      DeletionPolicy: 'RetainExceptOnCreate',
      Properties: Match.objectLike({ TableName: 'quarry-jobs' }),
    });
  });
});

describe('logs', () => {
  const groups = resourcesOf(template, 'AWS::Logs::LogGroup');
  const retained = (name: unknown): boolean =>
    groups.some(([, g]) => json(g.Properties.LogGroupName) === json(name) && g.Properties.RetentionInDays === 30);

  test('every function of the template logs to a group with the stack\'s retention, CDK\'s helpers included', () => {
    const functions = resourcesOf(template, 'AWS::Lambda::Function');
    expect(functions.length).toBeGreaterThan(5);
    for (const [id, f] of functions) {
      const own = f.Properties.LoggingConfig?.LogGroup;
      if (own) {
        const [, g] = groups.find(([gid]) => json({ Ref: gid }) === json(own))!;
        expect([id, g.Properties.RetentionInDays]).toEqual([id, 30]);
      } else {
        expect([id, retained({ 'Fn::Join': ['', ['/aws/lambda/', { Ref: id }]] })]).toEqual([id, true]);
      }
    }
  });

  test('the rotation functions and API Gateway\'s execution logs get groups before they first write', () => {
    for (const role of ['owner', 'writer', 'reader']) expect(retained(`/aws/lambda/quarry-rotate-db-${role}`)).toBe(true);
    for (const [, schedule] of resourcesOf(template, 'AWS::SecretsManager::RotationSchedule')) {
      const rotationGroups = groups.filter(([, g]) => `${json(g.Properties.LogGroupName)}`.includes('rotate-db-')).map(([gid]) => gid);
      expect(schedule.DependsOn).toEqual(expect.arrayContaining(rotationGroups));
    }
    const execution = idOf(stack, prod.stack.api.executionLogs);
    expect(json(template.toJSON().Resources[execution].Properties.LogGroupName)).toContain('API-Gateway-Execution-Logs_');
    const [[, stage]] = resourcesOf(template, 'AWS::ApiGateway::Stage');
    expect(stage.DependsOn).toContain(execution);
  });

  test('functions log JSON, Lambda\'s own lines included', () => {
    for (const [, f] of resourcesOf(template, 'AWS::Lambda::Function').filter(([, r]) => `${r.Properties.FunctionName}`.startsWith('quarry-'))) {
      expect(f.Properties.LoggingConfig.LogFormat).toBe('JSON');
    }
  });

  test('WAF logs its requests with the key headers redacted', () => {
    template.hasResourceProperties('AWS::WAFv2::LoggingConfiguration', {
      LogDestinationConfigs: [getAtt(idOf(stack, prod.stack.api.wafLogs!))],
      RedactedFields: [{ SingleHeader: { Name: 'authorization' } }, { SingleHeader: { Name: 'x-api-key' } }],
    });
    expect(retained('aws-waf-logs-quarry-api')).toBe(true);
  });
});

describe('profiles', () => {
  test('prod: Multi-AZ, Performance Insights, a larger instance, longer history', () => {
    const t = synthesize({ profile: 'prod' }).template;
    t.hasResourceProperties('AWS::RDS::DBInstance', {
      MultiAZ: true,
      EnablePerformanceInsights: true,
      PerformanceInsightsRetentionPeriod: 7,
      DBInstanceClass: 'db.t4g.medium',
      BackupRetentionPeriod: 14,
    });
    for (const [, g] of resourcesOf(t, 'AWS::Logs::LogGroup')) expect(g.Properties.RetentionInDays).toBe(90);
  });

  test('dev: its own prefix, destroyed with the stack, no WAF', () => {
    const t = synthesize({ profile: 'dev' }).template;
    t.hasResourceProperties('AWS::Lambda::Function', { FunctionName: 'dev-api' });
    t.resourceCountIs('AWS::WAFv2::WebACL', 0);
    t.hasResource('AWS::RDS::DBInstance', { DeletionPolicy: 'Delete' });
  });

  test('the default stack is neither', () => {
    const instance = resourcesOf(template, 'AWS::RDS::DBInstance')[0][1].Properties;
    expect(instance.MultiAZ).toBe(false);
    expect(instance.EnablePerformanceInsights).toBeFalsy();
  });
});

describe('offline synthesis', () => {
  test('account and region are pinned and no context lookup is requested', () => {
    expect(stack.account).toBe('123456789012');
    expect(stack.region).toBe('us-east-1');
    const assembly = prod.app.synth();
    expect(assembly.manifest.missing ?? []).toEqual([]);
  });
});
