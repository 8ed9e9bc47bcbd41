"""A Python client generated from /openapi.json by openapi-python-client, used
unedited: list the operations, run three with parameters, hit a 422, submit a
job, wait for it, download its result. Every response it receives is also
validated against the document by openapi-core (strict: status, headers, body).

Run by scripts/contract.sh with PYTHONPATH holding the generated package and
QUARRY_URL, QUARRY_KEY and OPENAPI set.
"""

import json
import os
import sys
import time
from urllib.parse import parse_qs, urlsplit

import httpx
from openapi_core import Config, OpenAPI

from quarry_api_client import AuthenticatedClient
from quarry_api_client.api.catalog import list_operations
from quarry_api_client.api.jobs import get_job, get_job_result, submit_job
from quarry_api_client.api.operations import (
    run_customer_analysis,
    run_database_info,
    run_revenue_analysis_post,
)
from quarry_api_client.models import (
    CustomerAnalysisAnswer,
    DatabaseInfoAnswer,
    JobStatus,
    OperationList,
    Problem,
    RevenueAnalysisAnswer,
    RevenueAnalysisParameters,
    RevenueAnalysisParametersView,
    RunCustomerAnalysisGroupBy,
    RunCustomerAnalysisLevel,
)
from quarry_api_client.types import UNSET

# Strict: a property the document does not declare is an error, and problem
# documents are read as the JSON they are.
spec = OpenAPI.from_file_path(
    os.environ["OPENAPI"],
    config=Config(
        extra_media_type_deserializers={"application/problem+json": json.loads},
        additional_properties_default_policy="forbid",
    ),
)
checked = []


class _Request:
    """openapi-core's request protocol over an httpx request."""

    def __init__(self, r: httpx.Request):
        parts = urlsplit(str(r.url))
        self.host_url = f"{parts.scheme}://{parts.netloc}"
        self.path = parts.path
        self.full_url_pattern = self.host_url + self.path
        self.method = r.method.lower()
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(r.url.params.multi_items())),
            header=Headers(dict(r.headers)),
            cookie=ImmutableMultiDict(),
        )
        self.body = r.content or None
        self.content_type = r.headers.get("content-type", "")


class _Response:
    def __init__(self, r: httpx.Response):
        self.status_code = r.status_code
        self.content_type = r.headers.get("content-type", "")
        from werkzeug.datastructures import Headers

        self.headers = Headers(dict(r.headers))
        self.data = r.content


def validate(response: httpx.Response) -> None:
    response.read()
    spec.validate_response(_Request(response.request), _Response(response))
    checked.append(f"{response.request.method} {response.request.url.path} {response.status_code}")


def main() -> int:
    client = AuthenticatedClient(
        base_url=os.environ["QUARRY_URL"],
        token=os.environ["QUARRY_KEY"],
        httpx_args={"event_hooks": {"response": [validate]}},
        raise_on_unexpected_status=True,
    )
    with client:
        ops = list_operations.sync(client=client)
        assert isinstance(ops, OperationList), ops
        names = [o.name for o in ops.operations]
        assert "customer_analysis" in names and "revenue_analysis" in names, names
        print(f"{len(names)} operations: {', '.join(names)}")

        info = run_database_info.sync(client=client)
        assert isinstance(info, DatabaseInfoAnswer), info
        assert info.row_count == len(info.rows) and info.row_count > 0
        print(f"database_info: {info.row_count} rows")

        seg = run_customer_analysis.sync(
            client=client,
            group_by=RunCustomerAnalysisGroupBy.COUNTRY,
            level=RunCustomerAnalysisLevel.SEGMENT,
            min_segment_size=1,
        )
        assert isinstance(seg, CustomerAnalysisAnswer), seg
        assert seg.parameters["group_by"] == "country", seg.parameters
        segments = [r.segment for r in seg.rows]
        assert segments and all(r.organization_id is None for r in seg.rows), seg.rows
        print(f"customer_analysis by country: segments {segments}")

        body = RevenueAnalysisParameters(view=RevenueAnalysisParametersView.CUSTOMERS, source_systems=["erp", "shop"])
        rev = run_revenue_analysis_post.sync(client=client, body=body)
        assert isinstance(rev, RevenueAnalysisAnswer), rev
        assert all(r.source_system in ("erp", "shop") for r in rev.rows), [r.source_system for r in rev.rows]
        print(f"revenue_analysis customers of erp+shop: {rev.row_count} rows")

        bad = run_customer_analysis.sync_detailed(client=client, min_segment_size=0)
        assert bad.status_code == 422, bad.status_code
        assert isinstance(bad.parsed, Problem), bad.parsed
        assert bad.parsed.errors and bad.parsed.errors[0].parameter == "min_segment_size", bad.parsed
        print(f"422 as expected: {bad.parsed.errors[0].message}")

        # Paged: every customer, two per page, following `next` by its cursor.
        page = run_customer_analysis.sync(client=client, page_size=2)
        assert isinstance(page, CustomerAnalysisAnswer), page
        total, got, pages = page.page.total_rows, len(page.rows), 1
        while isinstance(page.next_, str):
            cursor = parse_qs(urlsplit(page.next_).query)["cursor"][0]
            page = run_customer_analysis.sync(client=client, cursor=cursor)
            assert isinstance(page, CustomerAnalysisAnswer), page
            got, pages = got + len(page.rows), pages + 1
        assert got == total and pages == page.page.total_pages, (got, total, pages)
        print(f"customer_analysis paged: {total} rows in {pages} pages")

        from quarry_api_client.models import MultiDimensionalAnalyticsRequest

        req = MultiDimensionalAnalyticsRequest.from_dict({"operation": "multi_dimensional_analytics"})
        job = submit_job.sync(client=client, body=req)
        assert isinstance(job, JobStatus), job
        deadline = time.time() + 60
        while job.state.value in ("queued", "running"):
            if time.time() > deadline:
                print(f"job {job.job_id} still {job.state.value} after 60 s", file=sys.stderr)
                return 1
            time.sleep(0.2)
            job = get_job.sync(client=client, id=job.job_id)
        assert job.state.value == "succeeded", job
        result = get_job_result.sync_detailed(client=client, id=job.job_id)
        assert result.status_code == 200, result.status_code
        assert result.parsed is not None and result.parsed.row_count == len(result.parsed.rows)
        assert job.result is not UNSET and job.result.row_count == result.parsed.row_count
        print(f"job {job.job_id}: {job.state.value}, {result.parsed.row_count} rows downloaded")
    print(f"openapi-core validated {len(checked)} responses: {'; '.join(checked)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
