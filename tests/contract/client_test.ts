// A TypeScript client from /openapi.json (openapi-typescript types, openapi-fetch
// calls), used unedited: list operations, run three with parameters, hit a 422,
// submit a job, wait for it, download its result. The compiler checks every
// call and body against the document's types (tsc, strict) before it runs.
// Run by scripts/contract.sh with QUARRY_URL and QUARRY_KEY set.
import createClient from "openapi-fetch";
import type { paths, components } from "./out/api.js";

const baseUrl = process.env.QUARRY_URL ?? "";
const key = process.env.QUARRY_KEY ?? "";
const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${key}` } });

function check(cond: unknown, what: string): asserts cond {
  if (!cond) {
    throw new Error(`failed: ${what}`);
  }
}

async function main(): Promise<void> {
  const ops = await client.GET("/operations");
  check(ops.data, `list operations: ${ops.response.status}`);
  const names = ops.data.operations.map((o) => o.name);
  check(names.includes("customer_analysis"), "customer_analysis listed");
  console.log(`${names.length} operations`);

  const info = await client.GET("/analytics/database_info");
  check(info.data && info.response.status === 200, `database_info: ${info.response.status}`);
  const infoAnswer: components["schemas"]["DatabaseInfoAnswer"] = info.data as components["schemas"]["DatabaseInfoAnswer"];
  check(infoAnswer.row_count === infoAnswer.rows.length, "row_count matches rows");
  console.log(`database_info: ${infoAnswer.row_count} rows`);

  const seg = await client.GET("/analytics/customer_analysis", {
    params: { query: { group_by: "country", level: "segment", min_segment_size: 1 } },
  });
  check(seg.response.status === 200 && seg.data, `customer_analysis: ${seg.response.status}`);
  const segAnswer = seg.data as components["schemas"]["CustomerAnalysisAnswer"];
  const segments = segAnswer.rows.map((r) => r.segment);
  check(segments.length > 0 && segAnswer.rows.every((r) => r.organization_id == null), "segment rows");
  console.log(`customer_analysis by country: ${segments.join(", ")}`);

  const rev = await client.POST("/analytics/revenue_analysis", {
    body: { view: "customers", source_systems: ["erp", "shop"] },
  });
  check(rev.response.status === 200 && rev.data, `revenue_analysis: ${rev.response.status}`);
  const revAnswer = rev.data as components["schemas"]["RevenueAnalysisAnswer"];
  check(revAnswer.rows.every((r) => r.source_system === "erp" || r.source_system === "shop"), "only erp and shop");
  console.log(`revenue_analysis customers of erp+shop: ${revAnswer.row_count} rows`);

  const bad = await client.GET("/analytics/customer_analysis", {
    params: { query: { min_segment_size: 0 } },
  });
  check(bad.response.status === 422 && bad.error, `422 expected, got ${bad.response.status}`);
  const problem = bad.error as components["schemas"]["Problem"];
  check(problem.errors?.[0]?.parameter === "min_segment_size", "the 422 names min_segment_size");
  console.log(`422 as expected: ${problem.errors?.[0]?.message}`);

  // Paged: every customer, two per page, following `next` by its cursor.
  let page = await client.GET("/analytics/customer_analysis", { params: { query: { page_size: 2 } } });
  check(typeof page.data === "object" && page.data !== null && "rows" in page.data, `page 0: ${page.response.status}`);
  let current = page.data as components["schemas"]["CustomerAnalysisAnswer"];
  const total = current.page?.total_rows ?? 0;
  let got = current.rows.length;
  while (current.next) {
    const cursor = new URL(current.next, baseUrl).searchParams.get("cursor") ?? "";
    page = await client.GET("/analytics/customer_analysis", { params: { query: { cursor } } });
    check(typeof page.data === "object" && page.data !== null && "rows" in page.data, `next page: ${page.response.status}`);
    current = page.data as components["schemas"]["CustomerAnalysisAnswer"];
    got += current.rows.length;
  }
  check(got === total && total > 2, `paged ${got} of ${total} rows`);
  console.log(`customer_analysis paged: ${total} rows`);

  const submitted = await client.POST("/analytics/jobs", {
    body: { operation: "multi_dimensional_analytics" },
  });
  check(submitted.response.status === 202 && submitted.data, `submit: ${submitted.response.status}`);
  let job: components["schemas"]["JobStatus"] = submitted.data;
  const deadline = Date.now() + 60_000;
  while (job.state === "queued" || job.state === "running") {
    check(Date.now() < deadline, `job ${job.job_id} finished within 60 s`);
    await new Promise((r) => setTimeout(r, 200));
    const polled = await client.GET("/analytics/jobs/{id}", { params: { path: { id: job.job_id } } });
    check(polled.data, `poll: ${polled.response.status}`);
    job = polled.data;
  }
  check(job.state === "succeeded", `job state ${job.state}`);
  const result = await client.GET("/analytics/jobs/{id}/result", { params: { path: { id: job.job_id } } });
  check(result.response.status === 200 && result.data, `result: ${result.response.status}`);
  const answer = result.data as components["schemas"]["Answer"];
  check(answer.row_count === answer.rows.length && answer.row_count === job.result?.row_count, "result rows");
  console.log(`job ${job.job_id}: ${job.state}, ${answer.row_count} rows downloaded`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
