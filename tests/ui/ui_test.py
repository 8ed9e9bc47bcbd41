"""The web catalog in a real browser: Debian's headless Chromium, driven over
WebDriver (Debian's chromedriver) by selenium from PyPI.

Run by scripts/ui.sh against a `quarry serve` holding tests/fixtures/small.sql
and one API key (QUARRY_URL, QUARRY_KEY). Every check compares what the page
shows with what the JSON API answers for the same question, so the page cannot
pass by showing something plausible. Screenshots go to SHOTS (a folder).
"""

import csv
import io
import json
import os
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

URL = os.environ["QUARRY_URL"].rstrip("/")
KEY = os.environ["QUARRY_KEY"]
SHOTS = os.environ.get("SHOTS", "tests/ui/out")
CHECKS = []


def check(cond, what):
    CHECKS.append(what)
    if not cond:
        raise AssertionError(what)
    print("ok -", what)


def api(path, body=None, accept="application/json"):
    req = urllib.request.Request(
        URL + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + KEY, "Accept": accept, "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        data = r.read()
        return json.loads(data) if accept == "application/json" else data.decode()


def browser(downloads):
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1000", "--lang=en-US", "--hide-scrollbars"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                           "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")))
    d.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    return d


def shot(d, name, full=True):
    os.makedirs(SHOTS, exist_ok=True)
    d.execute_script("window.scrollTo(0, 0)")
    if full:
        height = d.execute_script("return Math.min(document.documentElement.scrollHeight, 2400)")
        d.set_window_size(1280, max(height, 800))
    d.save_screenshot(os.path.join(SHOTS, name + ".png"))
    d.set_window_size(1280, 1000)


def wait(d, cond, secs=30):
    return WebDriverWait(d, secs, poll_frequency=0.1).until(cond)


def table_rows(d, table_id):
    return d.execute_script(
        "return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr'))"
        ".map(tr => Array.from(tr.cells).map(td => td.textContent))", table_id)


def severe_logs(d):
    # Redoc's sidebar always shows its maker's logo from cdn.redoc.ly; the
    # pages' content security policy blocks it on purpose (the catalog asks
    # nothing of the internet), which the console reports. Only that is allowed.
    return [e for e in d.get_log("browser") if e.get("level") == "SEVERE"
            and not (e.get("source") == "security" and "https://cdn.redoc.ly/" in e.get("message", ""))]


def main():
    downloads = tempfile.mkdtemp(prefix="quarry-ui-")
    d = browser(downloads)
    try:
        run(d, downloads)
    finally:
        d.quit()
    print(f"ui: {len(CHECKS)} checks passed in headless Chromium")


def run(d, downloads):
    ops = api("/operations")["operations"]
    latest = {o["name"] for o in ops}

    # 1. The catalog: every operation, server-rendered (no key needed for it).
    d.get(URL + "/")
    check(d.title.startswith("Operations"), "the catalog is served at /")
    check(not severe_logs(d), "the catalog loads without console errors")
    cards = d.find_elements(By.CSS_SELECTOR, "#ops > li")
    names = {c.find_element(By.CSS_SELECTOR, "h2 a").text for c in cards}
    check(latest <= names, f"the catalog lists every operation ({len(latest)})")
    f = d.find_element(By.ID, "filter")
    f.send_keys("revenue")
    visible = [c for c in cards if c.is_displayed()]
    check(0 < len(visible) < len(cards), "the filter narrows the catalog")
    f.clear()
    f.send_keys(Keys.BACKSPACE)
    shot(d, "catalog")

    # 2. Without a key the page says what to do; with it, calls work.
    d.get(URL + "/ui/operations/customer_analysis")
    d.find_element(By.ID, "run").click()
    problem = wait(d, EC.visibility_of_element_located((By.ID, "problem")))
    check("API key" in problem.text, "without a key the page asks for an API key")
    check(d.switch_to.active_element.get_attribute("id") == "api-key", "and focuses the key box")
    severe_logs(d)  # the expected 401, drained
    # The gateway key (AWS) travels as x-api-key, which quarry serve also accepts.
    d.find_element(By.CSS_SELECTOR, "details.gw summary").click()
    d.find_element(By.ID, "gateway-key").send_keys(KEY + Keys.ENTER)
    wait(d, EC.text_to_be_present_in_element((By.ID, "key-state"), "gateway key only"))
    d.find_element(By.ID, "run").click()
    wait(d, EC.visibility_of_element_located((By.ID, "table-box")))
    check(len(table_rows(d, "answer")) > 0, "a gateway key alone is sent as x-api-key")
    d.find_element(By.ID, "key-forget").click()
    check(d.execute_script("return sessionStorage.length") == 0, "Forget clears both keys")
    d.find_element(By.ID, "api-key").click()
    d.switch_to.active_element.send_keys(KEY + Keys.ENTER)
    wait(d, EC.text_to_be_present_in_element((By.ID, "key-state"), "key in use"))
    check(d.execute_script("return sessionStorage.getItem('quarry.apiKey')") == KEY,
          "the key is kept in the browser session")

    # 3. The form: enums as selects, a run, rows equal to the API's, a bar chart.
    form_inputs = {e.get_attribute("name"): e.tag_name for e in d.find_elements(By.CSS_SELECTOR, "#run-form [name]")}
    check(form_inputs.get("group_by") == "select" and form_inputs.get("level") == "select",
          "enum parameters are selects")
    check(d.find_element(By.ID, "p-min_segment_size").get_attribute("type") == "number",
          "integer parameters are number inputs")
    Select(d.find_element(By.ID, "p-level")).select_by_value("segment")
    Select(d.find_element(By.ID, "p-group_by")).select_by_value("country")
    d.find_element(By.ID, "run").click()
    wait(d, EC.visibility_of_element_located((By.ID, "table-box")))
    want = api("/analytics/customer_analysis", {"level": "segment", "group_by": "country"})
    got = table_rows(d, "answer")
    check(len(got) == len(want["rows"]) > 0, f"the table shows the API's {len(want['rows'])} rows")
    headers = [b.text.strip(" ▲▼") for b in d.find_elements(By.CSS_SELECTOR, "#answer thead button")]
    check(headers[0] == "segment" and got[0][0] == str(want["rows"][0]["segment"]),
          "columns in declared order, cells as answered")
    check(d.execute_script("const c = Chart.getChart('chart'); return c && c.config.type") == "bar",
          "segments get a bar chart")
    bars = d.execute_script("return Chart.getChart('chart').data.datasets[0].data.length")
    check(bars == len(want["rows"]), "one bar per segment")

    # 4. Sorting, by mouse and by keyboard; the chart follows the sorted column.
    check(d.execute_script("return Chart.getChart('chart').data.datasets[0].label") == "segment_lifetime_value",
          "the chart draws the money column first")
    col = headers.index("segment_order_count")
    d.find_element(By.CSS_SELECTOR, '#answer button[data-col="segment_order_count"]').click()
    vals = [float(r[col]) for r in table_rows(d, "answer")]
    check(vals == sorted(vals), "a click sorts ascending")
    check(d.execute_script("return Chart.getChart('chart').data.datasets[0].label") == "segment_order_count",
          "the chart draws the column sorted by")
    focused = d.switch_to.active_element
    check(focused.get_attribute("data-col") == "segment_order_count", "focus stays on the sorted header")
    focused.send_keys(Keys.ENTER)
    vals = [float(r[col]) for r in table_rows(d, "answer")]
    check(vals == sorted(vals, reverse=True), "Enter on the header sorts descending")
    th = d.find_element(By.CSS_SELECTOR, '#answer th[aria-sort="descending"]')
    check(th is not None, "aria-sort tells assistive technology")
    # Back to the money column, highest first, for the picture.
    d.find_element(By.CSS_SELECTOR, '#answer button[data-col="segment_lifetime_value"]').click()
    d.switch_to.active_element.send_keys(Keys.ENTER)
    shot(d, "operation")

    # 5. CSV download equals the API's CSV.
    d.find_element(By.ID, "csv").click()
    path = os.path.join(downloads, "customer_analysis.csv")
    wait(d, lambda _: os.path.exists(path) and os.path.getsize(path) > 0, 20)
    time.sleep(0.3)
    with open(path, newline="", encoding="utf-8") as fh:
        downloaded = list(csv.reader(fh))
    expected = list(csv.reader(io.StringIO(
        api("/analytics/customer_analysis", {"level": "segment", "group_by": "country"}, accept="text/csv"))))
    check(downloaded == expected and len(downloaded) == len(want["rows"]) + 1,
          "Download CSV saves the API's CSV")

    # 5b. Pages of the answer: 4 rows per page (a quarter of the answer when
    #     it is large, as with the demo data of --screenshots), then "Load
    #     more" follows `next` until the table holds the whole answer, in the
    #     API's order.
    whole = api("/analytics/customer_analysis", {"level": "customer", "group_by": "country"})["rows"]
    per = 4 if len(whole) <= 40 else -(-len(whole) // 4)
    Select(d.find_element(By.ID, "p-level")).select_by_value("customer")
    rows_input = d.find_element(By.ID, "page-rows")
    rows_input.clear()
    rows_input.send_keys(str(per))
    d.find_element(By.ID, "run").click()
    wait(d, EC.visibility_of_element_located((By.ID, "table-box")))
    check(len(table_rows(d, "answer")) == per and f"of {len(whole)} rows" in d.find_element(By.ID, "table-info").text,
          f"a first page of {per} of {len(whole)} rows")
    more = d.find_element(By.ID, "more")
    while more.is_displayed():
        shown = len(table_rows(d, "answer"))
        more.click()
        wait(d, lambda _: len(table_rows(d, "answer")) > shown)
    ids = [r[headers.index("organization_id")] for r in table_rows(d, "answer")]
    check(ids == [str(r["organization_id"]) for r in whole], "Load more pages through to the whole answer, in order")
    rows_input.clear()
    rows_input.send_keys("500")
    Select(d.find_element(By.ID, "p-level")).select_by_value("segment")

    # 6. A bad value is marked at its field with the server's message.
    m = d.find_element(By.ID, "p-min_segment_size")
    m.clear()
    m.send_keys("0" + Keys.ENTER)
    err = wait(d, EC.visibility_of_element_located((By.ID, "e-min_segment_size")))
    wait(d, lambda _: err.text.strip() != "")
    check(m.get_attribute("aria-invalid") == "true" and err.text, "a 422 marks the parameter: " + err.text)
    severe_logs(d)  # the expected 422, drained

    # 7. A period column gets a line chart.
    d.get(URL + "/ui/operations/time_series_patterns")
    d.find_element(By.ID, "run").click()
    wait(d, EC.visibility_of_element_located((By.ID, "table-box")))
    wait(d, lambda _: d.execute_script("return !!Chart.getChart('chart')"))
    check(d.execute_script("return Chart.getChart('chart').config.type") == "line",
          "a time series gets a line chart")
    shot(d, "time-series")

    # 7b. Dates as date inputs (typed as a user types them), lists as text; the
    #     constraint between two parameters comes back at both.
    d.get(URL + "/ui/operations/revenue_analysis")
    start = d.find_element(By.ID, "p-start_date")
    check(start.get_attribute("type") == "date", "date parameters are date inputs")
    start.send_keys("01152024")
    check(start.get_attribute("value") == "2024-01-15", "a typed date becomes 2024-01-15")
    d.find_element(By.ID, "p-source_systems").send_keys("erp, shop")
    d.find_element(By.ID, "run").click()
    wait(d, EC.visibility_of_element_located((By.ID, "table-box")))
    want = api("/analytics/revenue_analysis", {"start_date": "2024-01-15", "source_systems": ["erp", "shop"]})
    check(len(table_rows(d, "answer")) == len(want["rows"]) > 0, f"date and list reach the API ({len(want['rows'])} rows)")
    d.find_element(By.ID, "p-end_date").send_keys("01012024")
    d.find_element(By.ID, "run").click()
    wait(d, lambda _: d.find_element(By.ID, "e-start_date").text and d.find_element(By.ID, "e-end_date").text)
    check(True, "start after end marks both dates: " + d.find_element(By.ID, "e-end_date").text)
    severe_logs(d)  # the expected 422, drained

    # 8. A heavy operation runs as a job; the page follows it to its result.
    d.get(URL + "/ui/operations/multi_dimensional_analytics")
    check(d.find_element(By.ID, "as-job").get_attribute("disabled") is not None, "heavy operations always run as jobs")
    d.find_element(By.ID, "run").click()
    wait(d, EC.visibility_of_element_located((By.ID, "job")))
    try:
        wait(d, EC.text_to_be_present_in_element((By.ID, "job-state"), "succeeded"), 60)
    except TimeoutException:
        raise AssertionError("the job did not finish: " + d.find_element(By.ID, "job").text)
    job_id = d.find_element(By.ID, "job-id").text
    status = api("/analytics/jobs/" + job_id)
    check(status["state"] == "succeeded", "the job the page followed succeeded in the API too")
    wait(d, EC.visibility_of_element_located((By.ID, "table-box")))
    rows = table_rows(d, "answer")
    check(len(rows) == status["result"]["row_count"], f"its {len(rows)} result rows are shown")
    link = d.find_element(By.ID, "job-result-link").get_attribute("href")
    check(link.endswith("/analytics/jobs/" + job_id + "/result"), "with the result link")
    shot(d, "job")

    # 9. The ingest ledger and the quarantine, as the API lists them.
    d.get(URL + "/ui/ingest")
    files = api("/ingest/files")["files"]
    quarantined = api("/ingest/quarantine")["records"]
    wait(d, lambda _: len(table_rows(d, "files")) == len(files) > 0)
    ledger = table_rows(d, "files")
    check([r[0] for r in ledger] == [str(f["id"]) for f in files], f"the ledger lists the API's {len(files)} files")
    wait(d, lambda _: len(table_rows(d, "quarantine")) == len(quarantined) > 0)
    reasons = [r[3] for r in table_rows(d, "quarantine")]
    check(reasons == [q["reason_code"] for q in quarantined], "the quarantine shows each record's reason")
    Select(d.find_element(By.ID, "f-status")).select_by_value("failed")
    d.find_element(By.CSS_SELECTOR, "#files-filter button").click()
    failed = api("/ingest/files?status=failed")["files"]
    wait(d, lambda _: len(table_rows(d, "files")) == len(failed))
    check(len(failed) > 0 and all(r[3] == "failed" and r[10] for r in table_rows(d, "files")),
          "the ledger filters by status; a failed file shows its error")
    Select(d.find_element(By.ID, "f-status")).select_by_value("")
    d.find_element(By.CSS_SELECTOR, "#files-filter button").click()
    wait(d, lambda _: len(table_rows(d, "files")) == len(files))
    shot(d, "ingest")

    # 9b. Companies: links to review, a company with its records and the
    # source of each value, and a decision taken on the page.
    d.get(URL + "/ui/companies")
    Select(d.find_element(By.ID, "l-status")).select_by_value("accepted")
    d.find_element(By.CSS_SELECTOR, "#links-filter button").click()
    accepted = api("/admin/links?status=accepted")["links"]
    wait(d, lambda _: len(table_rows(d, "links")) == len(accepted) > 0)
    check(all("accepted" in r[1] for r in table_rows(d, "links")),
          f"the review lists the API's {len(accepted)} accepted links")
    first = accepted[0]
    d.find_element(By.CSS_SELECTOR, "#links tbody tr td:nth-child(6) a").click()
    company = api("/companies/" + str(first["company_id"]))
    wait(d, lambda _: len(table_rows(d, "members")) == len(company["members"]))
    members = [r[0] for r in table_rows(d, "members")]
    check(members == [str(m["organization_id"]) for m in company["members"]],
          "a company shows its records in every system, as the API has them")
    golden = {r[0]: r for r in table_rows(d, "golden")}
    src = company["value_sources"]["name"]
    check(golden["name"][1] == company["company"]["name"] and src["source_system"] + ":" + src["source_id"] in golden["name"][2],
          "each value with the record it came from")
    shot(d, "companies")
    pair = (first["left_id"], first["right_id"])
    button = d.find_element(By.CSS_SELECTOR,
                            f'#company-links button[data-verb="reject"][data-left="{pair[0]}"][data-right="{pair[1]}"]')
    button.click()
    wait(d, lambda _: "rejected" in d.find_element(By.ID, "links-status").text)
    after = api(f"/admin/links?status=rejected&organization={pair[0]}")["links"]
    check(any((l["left_id"], l["right_id"]) == pair and l["decided_by"].startswith("api:") for l in after),
          "Different records the rejection with the key's name")

    # 10. The data dictionary from the database's comments.
    d.get(URL + "/ui/schema")
    sections = d.find_elements(By.CSS_SELECTOR, "section.dict")
    check(len(sections) >= 8, f"the data dictionary has {len(sections)} tables and views")
    org = d.find_element(By.ID, "t-organizations")
    check("attributes" in org.text and "Surrogate key" in d.page_source, "with columns and their descriptions")
    shot(d, "schema", full=False)

    # 11. The API reference (Redoc, from the binary) renders the live document.
    d.get(URL + "/ui/api")
    wait(d, lambda _: "list_ingest_files" in d.page_source or "The ingest ledger" in d.page_source, 60)
    check(len(d.find_elements(By.CSS_SELECTOR, "#redoc .api-content")) == 1, "Redoc renders /openapi.json")
    shot(d, "api", full=False)

    # 12. Keyboard: the skip link is the first stop and leads to the content.
    d.get(URL + "/")
    d.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    check(d.switch_to.active_element.get_attribute("class") == "skip", "Tab reaches the skip link first")
    d.switch_to.active_element.send_keys(Keys.ENTER)
    check(d.switch_to.active_element.get_attribute("id") == "main", "which moves focus to the content")

    # 13. Nothing failed in the page's console along the way.
    bad = severe_logs(d)
    check(not bad, "no errors in the browser console: " + json.dumps(bad)[:500])


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAILED -", e, file=sys.stderr)
        sys.exit(1)
