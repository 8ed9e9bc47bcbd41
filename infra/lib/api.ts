import { Duration, RemovalPolicy, Size } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { keepPolicy, QuarryConfig } from './config';
import { Database } from './database';
import { QuarryFunction } from './function';
import { Jobs } from './jobs';
import { acknowledge, acknowledgeFindings } from './nag';
import { Network } from './network';
import { Notifications } from './notifications';
import { Storage } from './storage';

export const STAGE_NAME = 'prod';

/** Body of POST /analytics and POST /analytics/jobs (the engine checks the parameters themselves). */
/** An operation's name, or name@MAJOR for one of its major versions. */
export const OPERATION_NAME_PATTERN = '^[a-z][a-z0-9_]{0,63}(@[0-9]{1,6})?$';

export interface ApiProps {
  readonly config: QuarryConfig;
  readonly network: Network;
  readonly storage: Storage;
  readonly database: Database;
  readonly notifications: Notifications;
  readonly jobs: Jobs;
  readonly environment: Record<string, string>;
}

/**
 * quarry-api behind an API Gateway REST API (stage `prod`, Lambda proxy).
 *
 * - Routes: the REST API issue's, each declared (no greedy proxy), so an unknown
 *   path is answered by the gateway. GET /metrics is not exposed: metrics reach
 *   CloudWatch as Embedded Metric Format logs.
 * - API keys via a usage plan (throttle and monthly quota) on every route but
 *   GET /health and GET /openapi.json; stage-wide throttling as well.
 * - Request validation: JSON Schema models for the POST bodies, the required
 *   `operation` query parameter of GET /analytics.
 * - CORS: preflight answered by the gateway; the gateway's own 4XX/5XX answers
 *   carry CORS headers and a problem+json body like the API's.
 * - Access logs (JSON) and execution logs (errors), X-Ray, and a WAF web ACL
 *   (AWS common and known-bad-input rules, a per-IP rate limit).
 */
export class Api extends Construct {
  readonly fn: QuarryFunction;
  readonly restApi: apigw.RestApi;
  readonly usagePlan: apigw.UsagePlan;
  readonly accessLogs: logs.LogGroup;
  readonly executionLogs: logs.LogGroup;
  wafLogs?: logs.LogGroup;

  constructor(scope: Construct, id: string, props: ApiProps) {
    super(scope, id);
    const { config, network, storage, database, notifications, jobs } = props;

    this.fn = new QuarryFunction(this, 'Api', {
      config,
      network,
      name: 'api',
      description: 'Quarry REST API (axum via lambda_http) behind API Gateway',
      memorySize: 512,
      timeout: Duration.seconds(29), // API Gateway's integration timeout
      environment: {
        ...props.environment,
        QUARRY_STATE_MACHINE_ARN: jobs.stateMachine.stateMachineArn,
        // Queries get 25 s (the function clamps to it too): with the engine's
        // 2 s guard, a slow one is Quarry's own 504 naming the job route,
        // never the gateway's bare 504.
        QUARRY_API__SYNC_TIMEOUT_SECONDS: '25',
      },
    });
    database.connect(this.fn, ['reader']);
    this.fn.allow(
      'CacheItems',
      ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
      [storage.cacheTable.tableArn],
    );
    this.fn.allow(
      'JobRows',
      ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:ConditionCheckItem'],
      [storage.jobsTable.tableArn],
    );
    // Presigned result links are signed with this role, so it needs GetObject;
    // cache values over DynamoDB's 400 KB item limit are kept in the same bucket.
    const resultObjects = storage.resultsBucket.arnForObjects('*');
    this.fn.allow('ResultObjects', ['s3:GetObject', 's3:PutObject'], [resultObjects]);
    acknowledgeFindings(
      this.fn.role,
      'AwsSolutions-IAM5',
      'Resource',
      [resultObjects],
      'Result and oversized-cache objects are keyed by job id or cache key, known only at run time; the grant is GetObject/PutObject on the objects of the results bucket only.',
    );
    this.fn.allow('StartJobs', ['states:StartExecution'], [jobs.stateMachine.stateMachineArn]);
    notifications.allowPublish(this.fn, notifications.alarmTopic, 'PublishSystemErrors');

    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      logGroupName: `/aws/apigateway/${config.prefix}-api/access`,
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: keepPolicy(config),
    });

    const corsHeaders = ['Content-Type', 'X-Api-Key', 'Authorization', 'If-None-Match', 'X-Request-Id'];
    this.restApi = new apigw.RestApi(this, 'RestApi', {
      restApiName: `${config.prefix}-api`,
      description: 'Quarry analytics REST API',
      endpointTypes: [apigw.EndpointType.REGIONAL],
      cloudWatchRole: true,
      cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN,
      apiKeySourceType: apigw.ApiKeySourceType.HEADER,
      // The gateway compresses answers (gzip/deflate per Accept-Encoding): the
      // function sends them plain (api.compress_answers is off on Lambda).
      minCompressionSize: Size.kibibytes(1),
      deployOptions: {
        stageName: STAGE_NAME,
        accessLogDestination: new apigw.LogGroupLogDestination(this.accessLogs),
        accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields(),
        loggingLevel: apigw.MethodLoggingLevel.ERROR,
        dataTraceEnabled: false,
        metricsEnabled: true,
        tracingEnabled: true,
        // Ceiling for all callers together; the usage plan limits each key.
        throttlingRateLimit: config.apiStageRateLimit,
        throttlingBurstLimit: config.apiStageBurstLimit,
      },
      defaultCorsPreflightOptions: {
        allowOrigins: config.corsAllowOrigins,
        allowMethods: ['GET', 'POST', 'OPTIONS'],
        allowHeaders: corsHeaders,
        exposeHeaders: ['ETag', 'X-Cache', 'X-Request-Id', 'Location', 'Link', 'X-Total-Count'],
        maxAge: Duration.hours(1),
      },
      defaultMethodOptions: { apiKeyRequired: true },
    });

    // The gateway's own errors (unknown route, missing key, throttled, invalid
    // body, integration failure): CORS headers so browsers can read them, and a
    // problem+json body shaped like the API's. Templates here are plain
    // substitution (not VTL); messageString comes quoted.
    // Access-Control-Allow-Origin holds one origin: with several configured, the
    // gateway's errors carry none (the preflight still answers each of them).
    const errorHeaders: Record<string, string> = {
      'Access-Control-Allow-Headers': `'${corsHeaders.join(',')}'`,
      'Content-Type': "'application/problem+json'",
    };
    if (config.corsAllowOrigins.length === 1) {
      errorHeaders['Access-Control-Allow-Origin'] = `'${config.corsAllowOrigins[0]}'`;
    }
    const problem =
      '{"type":"about:blank","title":$context.error.messageString,"code":"$context.error.responseType","request_id":"$context.requestId"}';
    for (const [id, type] of [
      ['Default4xx', apigw.ResponseType.DEFAULT_4XX],
      ['Default5xx', apigw.ResponseType.DEFAULT_5XX],
    ] as const) {
      this.restApi.addGatewayResponse(id, {
        type,
        responseHeaders: errorHeaders,
        templates: { 'application/json': problem },
      });
    }

    // Execution logs (errors) go to a group API Gateway names after the API and
    // stage and would create without retention: created here first.
    this.executionLogs = new logs.LogGroup(this, 'ExecutionLogs', {
      logGroupName: `API-Gateway-Execution-Logs_${this.restApi.restApiId}/${STAGE_NAME}`,
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: keepPolicy(config),
    });
    this.restApi.deploymentStage.node.addDependency(this.executionLogs);

    const validateBody = this.restApi.addRequestValidator('BodyValidator', {
      requestValidatorName: 'body',
      validateRequestBody: true,
      validateRequestParameters: true,
    });
    const validateParams = this.restApi.addRequestValidator('ParamsValidator', {
      requestValidatorName: 'parameters',
      validateRequestBody: false,
      validateRequestParameters: true,
    });
    const operationRequest = (modelName: string, title: string, job: boolean): apigw.Model =>
      this.restApi.addModel(modelName, {
        modelName,
        contentType: 'application/json',
        description: title,
        schema: {
          schema: apigw.JsonSchemaVersion.DRAFT4,
          title,
          type: apigw.JsonSchemaType.OBJECT,
          required: ['operation'],
          additionalProperties: false,
          properties: {
            operation: { type: apigw.JsonSchemaType.STRING, pattern: OPERATION_NAME_PATTERN },
            parameters: { type: apigw.JsonSchemaType.OBJECT },
            // A job's stored result format (the synchronous path negotiates Accept).
            ...(job ? { format: { type: apigw.JsonSchemaType.STRING, enum: ['json', 'ndjson', 'csv'] } } : {}),
          },
        },
      });
    const analyticsModel = operationRequest('AnalyticsRequest', 'Run an operation now', false);
    const jobModel = operationRequest('JobRequest', 'Submit an operation as a job', true);
    const parametersModel = this.restApi.addModel('ParametersRequest', {
      modelName: 'ParametersRequest',
      contentType: 'application/json',
      description: "One operation's parameters (the operation is in the path)",
      schema: {
        schema: apigw.JsonSchemaVersion.DRAFT4,
        title: "One operation's parameters",
        type: apigw.JsonSchemaType.OBJECT,
      },
    });

    // People's decisions about links: two organization ids and a note.
    const decisionModel = this.restApi.addModel('DecisionRequest', {
      modelName: 'DecisionRequest',
      contentType: 'application/json',
      description: 'A decision about two organizations',
      schema: {
        schema: apigw.JsonSchemaVersion.DRAFT4,
        title: 'A decision about two organizations',
        type: apigw.JsonSchemaType.OBJECT,
        required: ['left_id', 'right_id'],
        additionalProperties: false,
        properties: {
          left_id: { type: apigw.JsonSchemaType.INTEGER, minimum: 1 },
          right_id: { type: apigw.JsonSchemaType.INTEGER, minimum: 1 },
          note: { type: apigw.JsonSchemaType.STRING, maxLength: 2000 },
        },
      },
    });
    const splitModel = this.restApi.addModel('SplitRequest', {
      modelName: 'SplitRequest',
      contentType: 'application/json',
      description: 'Take an organization out of its company ({} or a note)',
      schema: {
        schema: apigw.JsonSchemaVersion.DRAFT4,
        title: 'Take an organization out of its company',
        type: apigw.JsonSchemaType.OBJECT,
        additionalProperties: false,
        properties: { note: { type: apigw.JsonSchemaType.STRING, maxLength: 2000 } },
      },
    });

    const integration = new apigw.LambdaIntegration(this.fn.function, {
      proxy: true,
      // One invoke permission for this API's routes rather than one per method.
      scopePermissionToMethod: false,
    });
    const root = this.restApi.root;
    const open = { apiKeyRequired: false };

    root.addResource('health').addMethod('GET', integration, open);
    root.addResource('openapi.json').addMethod('GET', integration, open);

    const operations = root.addResource('operations');
    operations.addMethod('GET', integration);
    operations.addResource('{name}').addMethod('GET', integration, {
      requestParameters: { 'method.request.path.name': true },
      requestValidator: validateParams,
    });

    const analytics = root.addResource('analytics');
    analytics.addMethod('GET', integration, {
      requestParameters: { 'method.request.querystring.operation': true },
      requestValidator: validateParams,
    });
    analytics.addMethod('POST', integration, {
      requestModels: { 'application/json': analyticsModel },
      requestValidator: validateBody,
    });

    // Each operation at its own path (typed in /openapi.json); the static
    // /analytics/jobs below takes precedence over the {name} variable.
    const named = analytics.addResource('{name}');
    named.addMethod('GET', integration, {
      requestParameters: { 'method.request.path.name': true },
      requestValidator: validateParams,
    });
    named.addMethod('POST', integration, {
      requestParameters: { 'method.request.path.name': true },
      requestModels: { 'application/json': parametersModel },
      requestValidator: validateBody,
    });

    const jobsResource = analytics.addResource('jobs');
    jobsResource.addMethod('POST', integration, {
      requestModels: { 'application/json': jobModel },
      requestValidator: validateBody,
    });
    const job = jobsResource.addResource('{id}');
    job.addMethod('GET', integration, {
      requestParameters: { 'method.request.path.id': true },
      requestValidator: validateParams,
    });
    job.addResource('result').addMethod('GET', integration, {
      requestParameters: { 'method.request.path.id': true },
      requestValidator: validateParams,
    });

    // What the ingest did (the function reads it through the reader's views).
    const ingest = root.addResource('ingest');
    ingest.addResource('files').addMethod('GET', integration);
    ingest.addResource('quarantine').addMethod('GET', integration);

    // Companies across systems: reviewing links and reading companies work with
    // the reader; the decisions answer Quarry's own 503 naming `quarry links`
    // (the API function holds no writer login), rather than a gateway 403.
    const admin = root.addResource('admin');
    const links = admin.addResource('links');
    links.addMethod('GET', integration);
    for (const verb of ['confirm', 'reject']) {
      links.addResource(verb).addMethod('POST', integration, {
        requestModels: { 'application/json': decisionModel },
        requestValidator: validateBody,
      });
    }
    admin.addResource('organizations').addResource('{id}').addResource('split').addMethod('POST', integration, {
      requestParameters: { 'method.request.path.id': true },
      requestModels: { 'application/json': splitModel },
      requestValidator: validateBody,
    });
    root.addResource('companies').addResource('{id}').addMethod('GET', integration, {
      requestParameters: { 'method.request.path.id': true },
      requestValidator: validateParams,
    });

    // The web catalog: pages that hold only what /openapi.json publishes, so
    // public like it; the page script calls the routes above with the user's key.
    root.addMethod('GET', integration, open);
    const ui = root.addResource('ui');
    ui.addMethod('GET', integration, open);
    for (const page of ['ingest', 'schema', 'api']) ui.addResource(page).addMethod('GET', integration, open);
    ui.addResource('operations').addResource('{name}').addMethod('GET', integration, {
      ...open,
      requestParameters: { 'method.request.path.name': true },
      requestValidator: validateParams,
    });
    ui.addResource('assets').addResource('{file}').addMethod('GET', integration, {
      ...open,
      requestParameters: { 'method.request.path.file': true },
      requestValidator: validateParams,
    });

    // The default plan's throttle and quota apply per key, across every Lambda
    // container (the gateway counts, not the function). No key is made here:
    // each caller gets their own (infra/scripts/add-caller.sh), in this plan or
    // in a plan of their own with other limits, so one caller's traffic never
    // spends another's.
    this.usagePlan = this.restApi.addUsagePlan('UsagePlan', {
      name: `${config.prefix}-default`,
      description: 'Default limits per caller key of the Quarry API',
      throttle: { rateLimit: config.apiRateLimit, burstLimit: config.apiBurstLimit },
      quota: { limit: config.apiMonthlyQuota, period: apigw.Period.MONTH },
      apiStages: [{ api: this.restApi, stage: this.restApi.deploymentStage }],
    });

    if (config.waf) this.addWaf(config);

    acknowledge(
      this.restApi,
      'AwsSolutions-APIG4',
      'Callers are identified by API keys in a usage plan (throttle and quota), as the original design has it; GET /health, GET /openapi.json, the web catalog pages (which hold only what openapi.json publishes) and the CORS preflights are public on purpose. User-level authorization (IAM or Cognito) is a product decision not taken yet.',
    );
    acknowledge(this.restApi, 'AwsSolutions-COG4', 'No Cognito user pool: the API uses API keys (see AwsSolutions-APIG4).');
    if (!config.waf) {
      acknowledge(this.restApi, 'AwsSolutions-APIG3', 'WAF turned off with -c waf=false (dev stacks); the default stack has one.');
    }
    acknowledgeFindings(
      this.restApi,
      'AwsSolutions-IAM4',
      'Policy',
      [iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AmazonAPIGatewayPushToCloudWatchLogs').managedPolicyArn],
      'API Gateway account-level CloudWatch role (one per account and region) that execution logging needs; AmazonAPIGatewayPushToCloudWatchLogs is the policy AWS documents for it and covers the log groups API Gateway names itself.',
    );
  }

  private addWaf(config: QuarryConfig): void {
    const visibility = (metricName: string): wafv2.CfnWebACL.VisibilityConfigProperty => ({
      cloudWatchMetricsEnabled: true,
      metricName,
      sampledRequestsEnabled: true,
    });
    const managed = (name: string, priority: number): wafv2.CfnWebACL.RuleProperty => ({
      name,
      priority,
      overrideAction: { none: {} },
      statement: { managedRuleGroupStatement: { vendorName: 'AWS', name } },
      visibilityConfig: visibility(name),
    });
    const acl = new wafv2.CfnWebACL(this, 'WebAcl', {
      name: `${config.prefix}-api`,
      description: 'Quarry API: AWS common and known-bad-input rules, per-IP rate limit',
      scope: 'REGIONAL',
      defaultAction: { allow: {} },
      visibilityConfig: visibility(`${config.prefix}-api`),
      rules: [
        {
          name: 'rate-limit-per-ip',
          priority: 0,
          action: { block: {} },
          statement: { rateBasedStatement: { limit: config.wafRateLimitPer5Min, aggregateKeyType: 'IP' } },
          visibilityConfig: visibility('rate-limit-per-ip'),
        },
        managed('AWSManagedRulesCommonRuleSet', 1),
        managed('AWSManagedRulesKnownBadInputsRuleSet', 2),
      ],
    });
    new wafv2.CfnWebACLAssociation(this, 'WebAclAssociation', {
      resourceArn: this.restApi.deploymentStage.stageArn,
      webAclArn: acl.attrArn,
    });
    if (config.wafLogs) {
      // WAF writes only to log groups named aws-waf-logs-*. Callers' keys never
      // reach the logs: both headers that carry them are redacted.
      this.wafLogs = new logs.LogGroup(this, 'WafLogs', {
        logGroupName: `aws-waf-logs-${config.prefix}-api`,
        retention: config.logRetentionDays as logs.RetentionDays,
        removalPolicy: keepPolicy(config),
      });
      new wafv2.CfnLoggingConfiguration(this, 'WebAclLogging', {
        resourceArn: acl.attrArn,
        logDestinationConfigs: [this.wafLogs.logGroupArn],
        redactedFields: [{ singleHeader: { Name: 'authorization' } }, { singleHeader: { Name: 'x-api-key' } }],
      });
    }
  }
}
