// Quarry's web catalog: the parts of the pages that talk to the JSON API.
// Plain browser JavaScript, no build step. The API key the user enters is kept
// in sessionStorage (this tab's session only) and sent as a Bearer token.
"use strict";

(function () {
  const KEY = "quarry.apiKey";
  // On AWS the gateway's usage plan wants its own key in x-api-key as well.
  const GATEWAY_KEY = "quarry.gatewayKey";

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  };

  // ---------------------------------------------------------------- API key
  const apiKey = () => sessionStorage.getItem(KEY) || "";

  function showKeyState() {
    const s = $("key-state");
    if (!s) return;
    const gw = sessionStorage.getItem(GATEWAY_KEY) ? " + gateway key" : "";
    s.textContent = apiKey() ? "key in use for this session" + gw : gw ? "gateway key only" : "no key (open local access)";
  }

  function initKeyForm() {
    const form = $("key-form");
    if (!form) return;
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = $("api-key").value.trim();
      if (v) sessionStorage.setItem(KEY, v);
      const g = $("gateway-key").value.trim();
      if (g) sessionStorage.setItem(GATEWAY_KEY, g);
      $("api-key").value = "";
      $("gateway-key").value = "";
      showKeyState();
    });
    $("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      sessionStorage.removeItem(GATEWAY_KEY);
      showKeyState();
    });
    showKeyState();
  }

  async function api(path, opts) {
    const o = Object.assign({ method: "GET", headers: {} }, opts || {});
    o.headers = Object.assign({ Accept: "application/json" }, o.headers);
    const k = apiKey();
    if (k) o.headers.Authorization = "Bearer " + k;
    const g = sessionStorage.getItem(GATEWAY_KEY);
    if (g) o.headers["X-Api-Key"] = g;
    return fetch(path, o);
  }

  // A problem document (RFC 9457) as a message; a 401/403 points at the key box.
  async function problemText(resp) {
    let p = null;
    try {
      p = await resp.json();
    } catch (_) {
      /* not JSON */
    }
    let msg = (p && (p.detail || p.title)) || resp.status + " " + resp.statusText;
    if (resp.status === 401 || resp.status === 403) {
      msg += " — enter an API key in the box at the top of the page.";
      const input = $("api-key");
      if (input) input.focus();
    }
    return { message: msg, problem: p };
  }

  function showProblem(box, message) {
    box.hidden = false;
    box.textContent = message;
  }

  // ------------------------------------------------------------ the catalog
  function initCatalog() {
    const f = $("filter");
    if (!f) return;
    f.addEventListener("input", () => {
      const q = f.value.trim().toLowerCase();
      for (const li of document.querySelectorAll("#ops > li")) {
        li.hidden = q !== "" && !li.dataset.search.toLowerCase().includes(q);
      }
    });
  }

  // --------------------------------------------------------- an operation
  function readParams(form) {
    const params = {};
    const errors = [];
    for (const field of form.querySelectorAll(".field")) {
      const name = field.dataset.param;
      const kind = field.dataset.kind;
      const input = field.querySelector("input, select, textarea");
      let value;
      if (field.dataset.input === "multiselect") {
        const chosen = Array.from(input.selectedOptions).map((o) => o.value);
        if (chosen.length === 0) continue;
        value = kind === "integer_list" ? chosen.map(Number) : chosen;
      } else {
        const raw = input.value.trim();
        if (raw === "") continue;
        if (kind === "integer" || kind === "number") {
          value = Number(raw);
          if (!Number.isFinite(value)) {
            errors.push([name, "expected a number"]);
            continue;
          }
        } else if (kind === "boolean") {
          value = raw === "true";
        } else if (kind === "string_list") {
          value = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
        } else if (kind === "integer_list") {
          value = raw.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
          if (value.some((n) => !Number.isInteger(n))) {
            errors.push([name, "expected whole numbers separated by commas"]);
            continue;
          }
        } else {
          value = raw;
        }
      }
      params[name] = value;
    }
    return { params, errors };
  }

  function clearFieldErrors() {
    for (const e of document.querySelectorAll(".field .error")) e.textContent = "";
    for (const i of document.querySelectorAll(".field [aria-invalid]")) i.removeAttribute("aria-invalid");
  }

  function markFieldError(name, message) {
    const e = $("e-" + name);
    const input = $("p-" + name);
    if (e) e.textContent = message;
    if (input) input.setAttribute("aria-invalid", "true");
    return !!e;
  }

  const state = { columns: [], rows: [], next: null, total: null, sort: null, chart: null };

  function columnsOf(rows) {
    try {
      const declared = JSON.parse($("columns").textContent).map(([name, type]) => ({ name, type }));
      if (declared.length) return declared;
    } catch (_) {
      /* fall through */
    }
    const first = rows[0] || {};
    return Object.keys(first).map((name) => ({ name, type: typeof first[name] === "number" ? "number" : "text" }));
  }

  const numeric = (c) => c.type === "integer" || c.type === "number";

  function cellText(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function compare(a, b, type) {
    if (a === null || a === undefined) return b === null || b === undefined ? 0 : 1;
    if (b === null || b === undefined) return -1;
    if (type === "integer" || type === "number") return Number(a) - Number(b);
    return String(a).localeCompare(String(b));
  }

  function renderTable() {
    const table = $("answer");
    const thead = table.tHead;
    const tbody = table.tBodies[0];
    thead.replaceChildren();
    tbody.replaceChildren();
    const tr = el("tr");
    state.columns.forEach((c, i) => {
      const sorted = state.sort && state.sort.index === i;
      const th = el("th", {
        scope: "col",
        "aria-sort": sorted ? (state.sort.dir > 0 ? "ascending" : "descending") : "none",
        class: numeric(c) ? "num" : null,
      });
      const b = el("button", { type: "button", class: "sort", "data-col": c.name, text: c.name });
      b.title = "Sort by " + c.name + " (" + c.type + ")";
      if (sorted) b.append(el("span", { "aria-hidden": "true", text: state.sort.dir > 0 ? " ▲" : " ▼" }));
      b.addEventListener("click", () => {
        const dir = sorted ? -state.sort.dir : 1;
        state.sort = { index: i, dir };
        state.rows.sort((x, y) => dir * compare(x[c.name], y[c.name], c.type));
        renderTable();
        renderChart();
        const again = document.querySelector('#answer button[data-col="' + CSS.escape(c.name) + '"]');
        if (again) again.focus();
      });
      th.append(b);
      tr.append(th);
    });
    thead.append(tr);
    const frag = document.createDocumentFragment();
    for (const row of state.rows) {
      const r = el("tr");
      for (const c of state.columns) r.append(el("td", { class: numeric(c) ? "num" : null, text: cellText(row[c.name]) }));
      frag.append(r);
    }
    tbody.append(frag);
    $("table-box").hidden = false;
    const total = state.total !== null ? state.total : state.rows.length;
    $("table-info").textContent =
      state.rows.length === total
        ? total + " rows"
        : "showing " + state.rows.length + " of " + total + " rows (sorting and the chart use the rows shown)";
    $("more").hidden = !state.next;
  }

  // The answer's first filled non-numeric column is its x: a line over time
  // when it is a date or a period, bars per value otherwise; y is the numeric
  // columns (not ids, ranks or positions). No x or no y: no chart.
  function chartShape(columns, rows) {
    const filled = (c) => rows.some((r) => r[c.name] !== null && r[c.name] !== undefined);
    const nums = columns.filter(numeric).filter(filled).filter((c) => !/(^|_)(id|index)$|rank|position/.test(c.name));
    const x = columns.find((c) => !numeric(c) && c.type !== "json" && c.type !== "boolean" && filled(c));
    if (!nums.length || !x) return null;
    // Money first: the measure an analyst means when a row has several.
    const money = nums.filter((c) => /revenue|value|amount|sales|total/.test(c.name));
    const ordered = money.concat(nums.filter((c) => !money.includes(c)));
    if (x.type === "date" || x.type === "timestamp" || /period|month|week/.test(x.name)) {
      return { type: "line", x, ys: ordered.slice(0, 1) };
    }
    return { type: "bar", x, ys: ordered.slice(0, 1) };
  }

  // The chart follows the sort: sorted by a numeric column, that column is drawn
  // (a line stays in time order; bars follow the table's order).
  function chartOf(columns, rows) {
    const shape = chartShape(columns, rows);
    const sorted = state.sort && columns[state.sort.index];
    if (shape && sorted && numeric(sorted) && !shape.ys.includes(sorted)) {
      shape.ys = [sorted];
    }
    return shape;
  }

  function renderChart() {
    const box = $("chart-box");
    if (state.chart) {
      state.chart.destroy();
      state.chart = null;
    }
    const shape = chartOf(state.columns, state.rows);
    if (!shape || !shape.ys.length || !state.rows.length || typeof Chart === "undefined") {
      box.hidden = true;
      return;
    }
    let rows = state.rows;
    if (shape.type === "line") {
      rows = rows.slice().sort((a, b) => compare(a[shape.x.name], b[shape.x.name], "text"));
    } else {
      rows = rows.slice(0, 40);
    }
    const datasets = shape.ys.map((y) => ({
      label: y.name,
      data: rows.map((r) => (r[y.name] === null ? null : Number(r[y.name]))),
    }));
    box.hidden = false;
    state.chart = new Chart($("chart"), {
      type: shape.type,
      data: { labels: rows.map((r) => cellText(r[shape.x.name])), datasets },
      options: { animation: false, responsive: true, maintainAspectRatio: false },
    });
    const what = shape.ys.map((y) => y.name).join(", ");
    const caption = (shape.type === "line" ? "Line: " : "Bars: ") + what + " by " + shape.x.name +
      (shape.type === "bar" && state.rows.length > 40 ? " (first 40 rows)" : "") +
      " · sort the table by another numeric column to chart that one";
    $("chart-caption").textContent = caption;
    $("chart").setAttribute("aria-label", caption);
  }

  function showAnswer(body, total) {
    state.columns = columnsOf(body.rows || []);
    state.rows = body.rows || [];
    state.next = body.next || null;
    state.total = total;
    state.sort = null;
    renderTable();
    renderChart();
  }

  async function loadMore() {
    if (!state.next) return;
    const resp = await api(state.next);
    if (!resp.ok) {
      showProblem($("problem"), (await problemText(resp)).message);
      return;
    }
    const body = await resp.json();
    state.rows = state.rows.concat(body.rows || []);
    state.next = body.next || null;
    renderTable();
    renderChart();
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // Follows a job until it ends; shows its state on the page.
  async function followJob(statusUrl) {
    $("job").hidden = false;
    $("job-result").hidden = true;
    const progress = $("job-progress");
    progress.removeAttribute("value");
    for (;;) {
      const resp = await api(statusUrl);
      if (!resp.ok) throw new Error((await problemText(resp)).message);
      const job = await resp.json();
      $("job-id").textContent = job.job_id;
      $("job-state").textContent = job.state;
      $("job-attempts").textContent = job.attempts + " of " + job.max_attempts;
      $("job-time").textContent = job.duration_ms !== null && job.duration_ms !== undefined
        ? (job.duration_ms / 1000).toFixed(1) + " s"
        : "since " + new Date(job.submitted_at).toLocaleTimeString();
      if (job.state === "succeeded") {
        progress.value = 1;
        progress.max = 1;
        $("job-result").hidden = false;
        $("job-result-link").href = job.links.result;
        $("job-result-link").textContent = "Result (" + job.result.format +
          (job.result.row_count !== null ? ", " + job.result.row_count + " rows" : "") + ")";
        return job;
      }
      if (job.state === "failed" || job.state === "cancelled") {
        throw new Error("the job " + job.state + ": " + ((job.error && job.error.message) || "no reason recorded"));
      }
      const wait = Number(resp.headers.get("Retry-After")) || 1;
      await sleep(Math.min(Math.max(wait, 0.5), 3) * 1000);
    }
  }

  function download(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function initOperation() {
    const form = $("run-form");
    if (!form) return;
    const op = form.dataset.operation;
    const status = $("status");
    const problem = $("problem");

    async function call(accept, asJob, pageSize) {
      clearFieldErrors();
      problem.hidden = true;
      const { params, errors } = readParams(form);
      if (errors.length) {
        for (const [n, m] of errors) markFieldError(n, m);
        throw new Error("check the marked parameters");
      }
      if (asJob) {
        return api("/analytics/jobs", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ operation: op, parameters: params, format: accept === "text/csv" ? "csv" : "json" }),
        });
      }
      const qs = pageSize ? "?page_size=" + pageSize : "";
      return api("/analytics/" + encodeURIComponent(op) + qs, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: accept },
        body: JSON.stringify(params),
      });
    }

    async function failed(resp) {
      const { message, problem: p } = await problemText(resp);
      let placed = false;
      if (p && Array.isArray(p.errors)) {
        for (const e of p.errors) if (e.parameter && markFieldError(e.parameter, e.message)) placed = true;
      }
      showProblem(problem, message + (placed ? " (see the marked parameters)" : ""));
      status.textContent = "";
    }

    async function run(ev) {
      ev.preventDefault();
      $("job").hidden = true;
      $("table-box").hidden = true;
      $("chart-box").hidden = true;
      status.textContent = "running " + op + "…";
      const asJob = $("as-job").checked && form.dataset.cost !== "heavy";
      const t0 = performance.now();
      try {
        // A heavy operation runs as a job, whose result comes whole: no paging.
        const rows = $("page-rows") ? Math.max(1, Math.floor(Number($("page-rows").value) || 500)) : null;
        let resp = await call("application/json", asJob, form.dataset.cost === "heavy" ? null : rows);
        if (resp.status === 202) {
          const job = await resp.json();
          status.textContent = "running as job " + job.job_id + "…";
          const done = await followJob(job.links.self);
          resp = await api(done.links.result);
          if (!resp.ok) return failed(resp);
          const body = await resp.json();
          showAnswer(body, body.row_count !== undefined ? body.row_count : null);
          status.textContent = "job " + done.job_id + " succeeded";
          return;
        }
        if (!resp.ok) return failed(resp);
        const total = Number(resp.headers.get("X-Total-Count"));
        const body = await resp.json();
        showAnswer(body, Number.isFinite(total) && resp.headers.has("X-Total-Count") ? total : (body.row_count !== undefined ? body.row_count : null));
        const ms = Math.round(performance.now() - t0);
        status.textContent = "answered in " + ms + " ms" + (resp.headers.get("X-Cache") === "hit" ? " (from the cache)" : "");
      } catch (e) {
        showProblem(problem, e.message);
        status.textContent = "";
      }
    }

    async function csv() {
      status.textContent = "preparing CSV…";
      try {
        let resp = await call("text/csv", $("as-job").checked && form.dataset.cost !== "heavy", null);
        if (resp.status === 202) {
          const job = await resp.json();
          const done = await followJob(job.links.self);
          resp = await api(done.links.result, { headers: { Accept: "text/csv" } });
        }
        if (!resp.ok) return failed(resp);
        download(await resp.blob(), op.replace("@", "-v") + ".csv");
        status.textContent = "CSV downloaded";
      } catch (e) {
        showProblem(problem, e.message);
        status.textContent = "";
      }
    }

    form.addEventListener("submit", run);
    $("csv").addEventListener("click", csv);
    $("more").addEventListener("click", loadMore);
  }

  // --------------------------------------------------------- ingest page
  function listPage(cfg) {
    let next = null;
    const table = $(cfg.table).tBodies[0];
    const more = $(cfg.more);
    const status = $(cfg.status);

    async function load(path, append) {
      status.textContent = "loading…";
      const resp = await api(path);
      if (!resp.ok) {
        status.textContent = (await problemText(resp)).message;
        return;
      }
      const body = await resp.json();
      const items = body[cfg.field];
      if (!append) table.replaceChildren();
      for (const item of items) table.append(cfg.row(item));
      next = body.next || null;
      more.hidden = !next;
      status.textContent = table.rows.length ? table.rows.length + " shown" : "none";
    }

    $(cfg.form).addEventListener("submit", (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const input of ev.target.elements) {
        if (!input.name) continue;
        if (input.type === "checkbox") {
          if (input.checked) q.set(input.name, "true");
        } else if (input.value.trim()) q.set(input.name, input.value.trim());
      }
      load(cfg.path + (q.toString() ? "?" + q : ""), false);
    });
    more.addEventListener("click", () => next && load(next, true));
    load(cfg.path, false);
  }

  const when = (t) => (t ? new Date(t).toLocaleString() : "");

  function initIngest() {
    if (!$("files")) return;
    listPage({
      path: "/ingest/files", field: "files", table: "files", more: "files-more", status: "files-status", form: "files-filter",
      row: (f) => el("tr", { class: "status-" + f.status },
        el("td", { class: "num", text: f.id }), el("td", { text: f.source_system }), el("td", { text: f.object_key }),
        el("td", { text: f.status }), el("td", { class: "num", text: f.records_read }), el("td", { class: "num", text: f.inserted }),
        el("td", { class: "num", text: f.updated }), el("td", { class: "num", text: f.unchanged }),
        el("td", { class: "num", text: f.quarantined }), el("td", { text: when(f.finished_at) }), el("td", { text: f.error || "" })),
    });
    listPage({
      path: "/ingest/quarantine", field: "records", table: "quarantine", more: "q-more", status: "q-status", form: "q-filter",
      row: (q) => {
        const details = el("details", {}, el("summary", { text: q.record_type || "record" }),
          el("pre", { text: q.raw_record + (q.raw_truncated ? "\n… (cut; quarry quarantine show " + q.id + " shows it whole)" : "") }));
        return el("tr", {},
          el("td", { class: "num", text: q.id }), el("td", { text: q.source_system }),
          el("td", { text: q.object_key + " : " + q.position }), el("td", {}, el("code", { text: q.reason_code })),
          el("td", { text: q.message }), el("td", {}, details),
          el("td", { text: q.resolved_at ? "resolved " + when(q.resolved_at) : "open" }));
      },
    });
  }

  // ------------------------------------------------------- companies page
  const recordOf = (id, label, name) => id + " " + name + " (" + label + ")";

  function linkRow(l, withCompany, after) {
    const decide = el("td", {});
    const button = (verb, text) => {
      const b = el("button", { type: "button", "data-verb": verb, "data-left": l.left_id, "data-right": l.right_id, text: text });
      b.addEventListener("click", async () => {
        const resp = await api("/admin/links/" + verb, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ left_id: l.left_id, right_id: l.right_id }),
        });
        const status = $("links-status");
        if (!resp.ok) {
          status.textContent = (await problemText(resp)).message;
          return;
        }
        const done = await resp.json();
        const where = done.companies.map((m) => m.organization_id + " → company " + m.company_id).join(", ");
        status.textContent = verb + "ed " + l.left_id + "–" + l.right_id + ": " + where;
        after();
      });
      return b;
    };
    if (l.status !== "confirmed") decide.append(button("confirm", "Same company"));
    if (l.status !== "rejected") decide.append(" ", button("reject", "Different"));
    const who = l.decided_by ? " by " + l.decided_by + " " + when(l.decided_at) : "";
    return el("tr", { class: "link-" + l.status },
      el("td", { text: recordOf(l.left_id, l.left, l.left_name) + " ↔ " + recordOf(l.right_id, l.right, l.right_name) }),
      el("td", { text: l.status + who }),
      el("td", { class: "num", text: Number(l.score).toFixed(3) }),
      el("td", { text: l.methods.join(", ") }),
      el("td", { text: l.reasons.join("; ") }),
      withCompany ? el("td", { class: "num" }, l.company_id ? companyLink(l.company_id) : "") : null,
      decide);
  }

  function companyLink(id) {
    const a = el("a", { href: "#company-" + id, text: String(id) });
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      $("company-id").value = id;
      showCompany(id);
    });
    return a;
  }

  async function showCompany(id) {
    const status = $("company-status");
    status.textContent = "loading…";
    const resp = await api("/companies/" + encodeURIComponent(id));
    if (!resp.ok) {
      $("company").hidden = true;
      status.textContent = (await problemText(resp)).message;
      return;
    }
    const c = await resp.json();
    const golden = $("golden").tBodies[0];
    golden.replaceChildren();
    for (const [field, value] of Object.entries(c.company)) {
      if (["id", "created_at", "updated_at", "member_count", "source_systems", "kind"].includes(field) || value === null) continue;
      const src = c.value_sources[field];
      golden.append(el("tr", {}, el("th", { scope: "row", text: field }), el("td", { text: String(value) }),
        el("td", { text: src ? src.source_system + ":" + src.source_id + " (organization " + src.organization_id + ")" : "" })));
    }
    const members = $("members").tBodies[0];
    members.replaceChildren();
    for (const m of c.members) {
      members.append(el("tr", {}, el("td", { class: "num", text: m.organization_id }), el("td", { text: m.source_system }),
        el("td", { text: m.source_id }), el("td", { text: m.name }), el("td", { text: m.industry || "" }),
        el("td", { text: m.country_code || "" }), el("td", { text: m.email_domain || "" }), el("td", { text: m.vat_id || "" })));
    }
    const links = $("company-links").tBodies[0];
    links.replaceChildren();
    for (const l of c.links) links.append(linkRow(l, false, () => showCompany(id)));
    $("company-name").textContent = c.company.name + " — company " + c.company.id + ", " + c.company.member_count +
      " record(s) in " + c.company.source_systems.join(", ");
    $("company").hidden = false;
    status.textContent = "";
  }

  function initCompanies() {
    if (!$("company-form")) return;
    $("company-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      showCompany($("company-id").value.trim());
    });
    let last = "/admin/links?status=proposed";
    const table = $("links").tBodies[0];
    async function load(path) {
      last = path;
      const status = $("links-status");
      status.textContent = "loading…";
      const resp = await api(path);
      if (!resp.ok) {
        status.textContent = (await problemText(resp)).message;
        return;
      }
      const body = await resp.json();
      table.replaceChildren();
      for (const l of body.links) table.append(linkRow(l, true, () => load(last)));
      status.textContent = body.links.length ? body.links.length + " shown" : "none";
    }
    $("links-filter").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const input of ev.target.elements) {
        if (input.name && input.value.trim()) q.set(input.name, input.value.trim());
      }
      load("/admin/links" + (q.toString() ? "?" + q : ""));
    });
    load(last);
    const m = /^#company-(\d+)$/.exec(location.hash);
    if (m) {
      $("company-id").value = m[1];
      showCompany(m[1]);
    }
  }

  // ------------------------------------------------------- API reference
  function initApiReference() {
    const box = $("redoc");
    if (!box || typeof Redoc === "undefined") return;
    Redoc.init(box.dataset.spec, { hideDownloadButton: false, expandResponses: "200", disableSearch: false }, box);
  }

  document.addEventListener("DOMContentLoaded", () => {
    initKeyForm();
    initCatalog();
    initOperation();
    initIngest();
    initCompanies();
    initApiReference();
  });
})();
