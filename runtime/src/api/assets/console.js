// The supervisor console: live queue numbers and agents (from /v1/stats/stream, once a
// second), agents' activity changed by a supervisor, and flows with their versions: deploy
// (live or as a canary), promote or abort a canary, roll back. Every change asks for
// confirmation first and shows the server's answer.
const $ = (id) => document.getElementById(id);
let csrf = "";
let role = "";
const ACTIVITIES = ["available", "break", "offline", "unavailable"];

function cell(text, number) {
  const td = document.createElement("td");
  td.textContent = text;
  if (number) td.className = "number";
  return td;
}

async function api(method, path, body, raw) {
  const headers = { "X-CSRF-Token": csrf };
  headers["Content-Type"] = raw ? "application/wasm" : "application/json";
  const answer = await fetch(path, { method, headers, body: raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
  const json = await answer.json().catch(() => ({}));
  if (answer.status === 401) location.assign("/sign-in?next=/console");
  if (!answer.ok) throw new Error(json.error?.message ?? `${method} ${path}: ${answer.status}`);
  return json;
}

async function change(question, work) {
  if (!confirm(question)) return;
  $("error").textContent = "";
  try {
    $("result").textContent = await work();
    await Promise.all([loadFlows(), loadTasks(), loadPeople()]);
  } catch (e) {
    $("error").textContent = e.message;
  }
}

let tasksShown = "";

function showStats(stats) {
  queues = stats.queues.map((q) => q.queue);
  // The task list follows the queues' numbers: reloaded when they change.
  const shape = JSON.stringify(stats.queues.map((q) => q.tasks));
  if (shape !== tasksShown) {
    tasksShown = shape;
    loadTasks().catch((e) => { $("error").textContent = e.message; });
  }
  const body = $("wallboard").querySelector("tbody");
  body.replaceChildren(...stats.queues.map((q) => {
    const row = document.createElement("tr");
    const t = q.tasks ?? {};
    row.dataset.queue = q.queue;
    row.append(
      Object.assign(document.createElement("th"), { scope: "row", textContent: q.queue }),
      cell((t.pending ?? 0) + (t.reserved ?? 0), true),
      cell(`${Math.round(q.longest_wait_secs)} s`, true),
      cell(`${Math.round(q.sla_percent)} %`, true),
      cell(`${Math.round(q.average_wait_secs)} s`, true),
      cell(t["answered-in-window"] ?? 0, true),
      cell(t["canceled-in-window"] ?? 0, true),
      cell(`${q.available_agents} / ${q.eligible_agents}`, true),
    );
    return row;
  }));
  const agents = $("agents").querySelector("tbody");
  agents.replaceChildren(...stats.agents.map((a) => {
    const row = document.createElement("tr");
    row.dataset.agent = a.name;
    const activity = document.createElement("td");
    if (role === "admin" || role === "supervisor") {
      const select = document.createElement("select");
      select.setAttribute("aria-label", `Activity of ${a.name}`);
      for (const name of new Set([...ACTIVITIES, a.activity])) {
        select.append(Object.assign(document.createElement("option"), { value: name, textContent: name }));
      }
      select.value = a.activity;
      select.onchange = () => change(`Set ${a.name} to ${select.value}?`, async () => {
        await api("PUT", `/v1/agents/${encodeURIComponent(a.name)}/activity`, { activity: select.value });
        return `${a.name} is now ${select.value}.`;
      });
      activity.append(select);
    } else {
      activity.textContent = a.activity;
    }
    const busy = Object.entries(a.busy ?? {}).map(([c, n]) => `${c} ${n}`).join(", ") || "idle";
    const work = (a.tasks ?? []).map((t) => `${t.channel} in ${t.queue} (${t.status})`).join(", ");
    row.append(Object.assign(document.createElement("th"), { scope: "row", textContent: a.name }), activity, cell(busy), cell(work));
    return row;
  }));
}

let queues = [];

async function loadTasks() {
  if (role !== "admin" && role !== "supervisor") {
    $("tasks").closest("section").hidden = true;
    return;
  }
  const tasks = await api("GET", "/v1/tasks");
  const body = $("tasks").querySelector("tbody");
  body.replaceChildren(...tasks.map((t) => {
    const row = document.createElement("tr");
    row.dataset.task = t.id;
    const actions = document.createElement("td");
    const target = document.createElement("select");
    target.setAttribute("aria-label", `Queue to move ${t.id} to`);
    for (const q of queues.filter((q) => q !== t.queue)) {
      target.append(Object.assign(document.createElement("option"), { value: q, textContent: q }));
    }
    const move = Object.assign(document.createElement("button"), { type: "button", className: "secondary", textContent: "Move" });
    move.disabled = !target.options.length;
    move.onclick = () => change(`Move task ${t.id} from ${t.queue} to ${target.value}?`, async () => {
      await api("POST", `/v1/tasks/${encodeURIComponent(t.id)}/move`, { queue: target.value });
      return `Task ${t.id} moved to ${target.value}.`;
    });
    const cancel = Object.assign(document.createElement("button"), { type: "button", className: "secondary", textContent: "Cancel" });
    cancel.onclick = () => change(`Cancel task ${t.id}? The customer's flow hears it was canceled.`, async () => {
      await api("POST", `/v1/tasks/${encodeURIComponent(t.id)}/cancel`, { reason: "canceled from the console" });
      return `Task ${t.id} canceled.`;
    });
    actions.append(target, move, cancel);
    const waited = Math.round((Date.now() - t.created_ms) / 1000);
    row.append(cell(t.id), cell(t.queue), cell(t.channel), cell(t.status), cell(t.agent ?? ""), cell(`${waited} s`, true), actions);
    return row;
  }));
}

async function loadPeople() {
  if (role !== "admin") return;
  $("people").hidden = false;
  const [users, tokens] = await Promise.all([api("GET", "/v1/users"), api("GET", "/v1/tokens")]);
  $("users").querySelector("tbody").replaceChildren(...users.map((u) => {
    const row = document.createElement("tr");
    row.dataset.user = u.name;
    const actions = document.createElement("td");
    const toggle = Object.assign(document.createElement("button"), {
      type: "button", className: "secondary", textContent: u.disabled ? "Enable" : "Disable",
    });
    toggle.onclick = () => change(`${u.disabled ? "Enable" : "Disable"} ${u.name}?`, async () => {
      await api("PATCH", `/v1/users/${encodeURIComponent(u.name)}`, { disabled: !u.disabled });
      return `${u.name} is ${u.disabled ? "enabled" : "disabled"}.`;
    });
    const remove = Object.assign(document.createElement("button"), { type: "button", className: "secondary", textContent: "Delete" });
    remove.onclick = () => change(`Delete ${u.name} and their tokens?`, async () => {
      await api("DELETE", `/v1/users/${encodeURIComponent(u.name)}`);
      return `${u.name} deleted.`;
    });
    actions.append(toggle, remove);
    row.append(cell(u.name), cell(u.role), cell(u.disabled ? "disabled" : "enabled"), cell(u.has_password ? "signs in" : "tokens only"), actions);
    return row;
  }));
  $("tokens").querySelector("tbody").replaceChildren(...tokens.map((t) => {
    const row = document.createElement("tr");
    row.dataset.token = t.id;
    const revoke = Object.assign(document.createElement("button"), { type: "button", className: "secondary", textContent: "Revoke" });
    revoke.onclick = () => change(`Revoke token ${t.id} (${t.user}${t.label ? `, ${t.label}` : ""})?`, async () => {
      await api("DELETE", `/v1/tokens/${encodeURIComponent(t.id)}`);
      return `Token ${t.id} revoked.`;
    });
    const actions = document.createElement("td");
    actions.append(revoke);
    row.append(cell(t.id), cell(t.user), cell(t.label), cell(new Date(t.created_at).toLocaleString()),
      cell(t.expires_at ? new Date(t.expires_at).toLocaleString() : "never"), actions);
    return row;
  }));
}

$("add-user").onsubmit = (event) => {
  event.preventDefault();
  const name = $("user-name").value.trim();
  const password = $("user-password").value;
  const body = { name, role: $("user-role").value, password: password || undefined };
  change(`Add ${name} as ${body.role}?`, async () => {
    await api("POST", "/v1/users", body);
    $("add-user").reset();
    return `${name} added as ${body.role}.`;
  });
};

$("add-token").onsubmit = (event) => {
  event.preventDefault();
  const user = $("token-user").value.trim();
  const day = $("token-expires").value;
  const body = { label: $("token-label").value, expires_at: day ? `${day}T00:00:00Z` : undefined };
  change(`Create an API token for ${user}?`, async () => {
    const made = await api("POST", `/v1/users/${encodeURIComponent(user)}/tokens`, body);
    $("new-token-value").textContent = made.token;
    $("new-token").hidden = false;
    return `Token ${made.id} created for ${user}.`;
  });
};

function eventWords(e) {
  switch (e.type) {
    case "input": return e.digits ? `pressed ${e.digits}` : `said ${JSON.stringify(e.speech ?? "")}`;
    case "message": return `wrote ${JSON.stringify(e.text)}`;
    case "mail": return `mailed ${JSON.stringify(e.subject)}`;
    case "task-outcome": return `task ${e.status} in ${e.queue}${e.agent ? ` (${e.agent})` : ""}`;
    case "queue-wait": return `waiting in ${e.queue}, ${e.position} in line`;
    default: return e.type;
  }
}

function actionWords(a) {
  switch (a.type) {
    case "say": case "send": return `${a.type} ${JSON.stringify(a.text)}`;
    case "gather": return `gather (${(a.prompt ?? []).map((p) => p.text ?? p.prompt).join(" ")})`;
    case "enqueue": return `enqueue in ${a.queue}`;
    case "transfer": return `transfer to ${a.target}`;
    case "set-attribute": return `set ${a.key}=${a.value}`;
    default: return a.type;
  }
}

async function showTrace(id) {
  const steps = await api("GET", `/v1/contacts/${encodeURIComponent(id)}/trace`);
  $("trace").hidden = false;
  $("trace-contact").textContent = id;
  $("trace").dataset.contact = id;
  $("trace-steps").replaceChildren(...steps.map((s) => {
    const item = document.createElement("li");
    const calls = (s.host_calls ?? []).map((c) => `${c.call} → ${JSON.stringify(c.result)}`);
    const lines = [
      `v${s.version} · ${new Date(s.at).toLocaleTimeString()} · ${eventWords(s.event)} · ${s.elapsed_us} µs`,
      ...s.actions.map(actionWords),
      ...calls,
      ...(s.fault ? [`fault: ${s.fault.kind} ${s.fault.message ?? s.fault.why ?? ""}`] : []),
    ];
    item.append(...lines.map((l, i) => Object.assign(document.createElement(i ? "div" : "strong"), { textContent: l })));
    return item;
  }));
  $("replay").hidden = !(role === "admin" || role === "developer");
  $("replay-result").replaceChildren();
}

$("search").onsubmit = async (event) => {
  event.preventDefault();
  $("error").textContent = "";
  const attribute = $("search-attribute").value.trim();
  const query = `limit=20${attribute ? `&attribute=${encodeURIComponent(attribute)}` : ""}`;
  try {
    const contacts = await api("GET", `/v1/contacts?${query}`);
    $("contacts").querySelector("tbody").replaceChildren(...contacts.map((c) => {
      const row = document.createElement("tr");
      row.dataset.contact = c.id;
      const open = Object.assign(document.createElement("button"), { type: "button", className: "secondary", textContent: "Trace" });
      open.onclick = () => showTrace(c.id).catch((e) => { $("error").textContent = e.message; });
      const actions = document.createElement("td");
      actions.append(open);
      const status = typeof c.status === "string" ? c.status : c.status?.state ?? Object.keys(c.status ?? {})[0] ?? "";
      row.append(cell(c.id), cell(c.channel), cell(c.from), cell(c.to), cell(`${c.flow} v${c.version}`), cell(status),
        cell(new Date(c.created_at).toLocaleString()), actions);
      return row;
    }));
    $("result").textContent = `${contacts.length} contact(s).`;
  } catch (e) {
    $("error").textContent = e.message;
  }
};

$("replay").onsubmit = async (event) => {
  event.preventDefault();
  const id = $("trace").dataset.contact;
  const version = Number($("replay-version").value);
  $("error").textContent = "";
  $("result").textContent = `Replaying ${id} against v${version}…`;
  try {
    const report = await api("POST", `/v1/contacts/${encodeURIComponent(id)}/replay`, { version });
    const box = $("replay-result");
    const head = Object.assign(document.createElement("p"), {
      textContent: report.identical ? `v${version} behaves the same on every step.` : `v${version} behaves differently:`,
    });
    const list = document.createElement("ol");
    for (const s of report.steps.filter((s) => !s.same)) {
      const item = document.createElement("li");
      item.textContent = `step ${s.step} (${eventWords(s.event)}): recorded ${JSON.stringify(s.recorded)} · replayed ${JSON.stringify(s.replayed)}`;
      list.append(item);
    }
    box.replaceChildren(head, list);
    $("result").textContent = "Replay done.";
  } catch (e) {
    $("error").textContent = e.message;
  }
};

async function loadFlows() {
  const flows = await api("GET", "/v1/flows");
  const box = $("flows");
  const developer = role === "admin" || role === "developer";
  const blocks = [];
  for (const f of flows) {
    const versions = await api("GET", `/v1/flows/${encodeURIComponent(f.name)}/versions`);
    const block = document.createElement("div");
    block.className = "flow";
    block.dataset.flow = f.name;
    const canary = versions.canary ? ` · canary v${versions.canary.version} taking ${versions.canary.percent} %` : "";
    block.append(Object.assign(document.createElement("h3"), { textContent: `${f.name}: live v${versions.live}${canary}` }));
    const list = document.createElement("table");
    list.innerHTML = "<thead><tr><th scope='col'>Version</th><th scope='col'>Role</th><th scope='col'>Steps</th><th scope='col'>Faults</th><th scope='col'>Deployed</th><th scope='col'></th></tr></thead>";
    const rows = document.createElement("tbody");
    for (const v of versions.versions) {
      const row = document.createElement("tr");
      const actions = document.createElement("td");
      if (developer && v.role === "idle") {
        const back = Object.assign(document.createElement("button"), { type: "button", className: "secondary", textContent: `Roll back to v${v.version}` });
        back.onclick = () => change(`Make v${v.version} of ${f.name} live again?`, async () => {
          await api("POST", `/v1/flows/${encodeURIComponent(f.name)}/rollback`, { version: v.version });
          return `${f.name}: v${v.version} is live.`;
        });
        actions.append(back);
      }
      row.append(cell(`v${v.version}`), cell(v.role), cell(v.health?.steps ?? 0, true), cell(v.health?.faults ?? 0, true),
        cell(`${new Date(v.deployed_at).toLocaleString()} by ${v.deployed_by}`), actions);
      rows.append(row);
    }
    list.append(rows);
    block.append(list);
    if (developer && versions.canary) {
      const promote = Object.assign(document.createElement("button"), { type: "button", textContent: "Promote the canary" });
      promote.onclick = () => change(`Make canary v${versions.canary.version} of ${f.name} live for everyone?`, async () => {
        await api("POST", `/v1/flows/${encodeURIComponent(f.name)}/canary/promote`, {});
        return `${f.name}: v${versions.canary.version} is live.`;
      });
      const abort = Object.assign(document.createElement("button"), { type: "button", className: "secondary", textContent: "Abort the canary" });
      abort.onclick = () => change(`Abort canary v${versions.canary.version} of ${f.name}? New contacts all get v${versions.live}.`, async () => {
        await api("POST", `/v1/flows/${encodeURIComponent(f.name)}/canary/abort`, { reason: "aborted from the console" });
        return `${f.name}: canary aborted; v${versions.live} serves everyone.`;
      });
      block.append(promote, abort);
    }
    blocks.push(block);
  }
  box.replaceChildren(...blocks);
  $("deploy").hidden = !developer;
}

$("deploy").onsubmit = (event) => {
  event.preventDefault();
  const flow = $("deploy-flow").value.trim();
  const file = $("deploy-file").files[0];
  const canary = $("deploy-canary").value;
  if (!flow || !file) return;
  const how = canary ? `as a canary taking ${canary} % of new contacts` : "live at once";
  change(`Deploy ${file.name} (${Math.round(file.size / 1024)} KiB) to ${flow}, ${how}?`, async () => {
    $("result").textContent = `Uploading and compiling ${file.name}…`;
    const query = canary ? `?canary=${encodeURIComponent(canary)}` : "";
    const made = await api("POST", `/v1/flows/${encodeURIComponent(flow)}/versions${query}`, undefined, await file.arrayBuffer());
    return `${flow}: v${made.version} deployed ${how} (compiled in ${Math.round(made.compile_ms ?? 0)} ms).`;
  });
};

// Reports: historical figures per queue or agent, a chart (Chart.js, shipped in the binary)
// and a CSV export of the same query.
const QUEUE_COLUMNS = [
  ["interval_start", "Interval"], ["queue", "Queue"], ["offered", "Offered"], ["answered", "Answered"],
  ["abandoned", "Abandoned"], ["short_abandoned", "Short abandons"], ["waiting", "Waiting"],
  ["service_level_percent", "Service level %"], ["abandon_rate_percent", "Abandon rate %"], ["asa_secs", "ASA (s)"],
  ["longest_wait_secs", "Longest wait (s)"], ["aht_secs", "AHT (s)"], ["talk_secs", "Talk (s)"], ["hold_secs", "Hold (s)"], ["wrapup_secs", "Wrap-up (s)"],
];
const AGENT_COLUMNS = [
  ["interval_start", "Interval"], ["agent", "Agent"], ["handled", "Handled"], ["aht_secs", "AHT (s)"],
  ["busy_secs", "Busy (s)"], ["occupancy_percent", "Occupancy %"],
];
let chart = null;

function localInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function reportQuery(format) {
  const kind = $("report-kind").value;
  const params = new URLSearchParams({
    from: $("report-from").value, interval: $("report-interval").value,
    tz: $("report-tz").value.trim(),
  });
  // No end given: the report runs up to the moment it is asked for, however long the page
  // has been open.
  if ($("report-to").value) params.set("to", $("report-to").value);
  const only = $("report-only").value.trim();
  if (only) params.set(kind === "queues" ? "queue" : "agent", only);
  if ($("report-short").value !== "") params.set("short_abandon_secs", $("report-short").value);
  if (format) params.set("format", format);
  return `/v1/reports/${kind}?${params}`;
}

function figure(value) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

function drawReport(kind, rows) {
  const starts = [...new Set(rows.map((r) => r.start_ms))].sort((a, b) => a - b);
  const names = new Map(rows.map((r) => [r.start_ms, r.interval_start.replace("T", " ").slice(0, 16)]));
  const label = (r) => names.get(r.start_ms);
  const sum = (key) => starts.map((s) => rows.filter((r) => r.start_ms === s).reduce((t, r) => t + (r[key] ?? 0), 0));
  let config;
  if (kind === "queues") {
    const answered = sum("answered");
    const abandoned = sum("abandoned");
    const inSl = sum("answered_in_sl");
    const level = starts.map((_, i) => (answered[i] + abandoned[i] ? (inSl[i] * 100) / (answered[i] + abandoned[i]) : null));
    config = {
      data: {
        labels: starts.map((s) => label({ start_ms: s })),
        datasets: [
          { type: "bar", label: "Answered", data: answered, backgroundColor: "#0b5fff", stack: "c", yAxisID: "y" },
          { type: "bar", label: "Abandoned", data: abandoned, backgroundColor: "#b3261e", stack: "c", yAxisID: "y" },
          { type: "bar", label: "Short abandons", data: sum("short_abandoned"), backgroundColor: "#e0a100", stack: "c", yAxisID: "y" },
          { type: "line", label: "Service level %", data: level, borderColor: "#1b7f3b", backgroundColor: "#1b7f3b", yAxisID: "pct", spanGaps: true },
        ],
      },
      options: { scales: { y: { stacked: true, beginAtZero: true, title: { display: true, text: "Contacts" } },
        pct: { position: "right", min: 0, max: 100, title: { display: true, text: "%" }, grid: { drawOnChartArea: false } } } },
    };
  } else {
    const agents = [...new Set(rows.map((r) => r.agent))];
    const states = [...new Set(rows.flatMap((r) => Object.keys(r.states)))].sort();
    const colors = { available: "#1b7f3b", break: "#e0a100", offline: "#9aa4b1", unavailable: "#b3261e" };
    config = {
      data: {
        labels: agents,
        datasets: states.map((state, i) => ({
          type: "bar", label: `${state} (h)`, stack: "s", backgroundColor: colors[state] ?? `hsl(${i * 67} 60% 50%)`,
          data: agents.map((a) => rows.filter((r) => r.agent === a).reduce((t, r) => t + (r.states[state] ?? 0), 0) / 3600),
        })),
      },
      options: { indexAxis: "y", scales: { x: { stacked: true, title: { display: true, text: "Hours" } }, y: { stacked: true } } },
    };
  }
  config.options.maintainAspectRatio = false;
  config.options.animation = false;
  if (chart) chart.destroy();
  if (window.Chart) chart = new window.Chart($("report-chart"), config);
  $("report-chart").setAttribute("aria-label", kind === "queues"
    ? "Answered and abandoned contacts per interval, with the service level"
    : "Hours each agent spent in each activity");
}

function showReport(kind, report) {
  const rows = report.rows;
  let columns = kind === "queues" ? QUEUE_COLUMNS : AGENT_COLUMNS;
  if (kind === "agents") {
    const states = [...new Set(rows.flatMap((r) => Object.keys(r.states)))].sort();
    columns = [...columns, ...states.map((s) => [`state:${s}`, `${s} (s)`])];
  }
  const head = document.createElement("tr");
  head.append(...columns.map(([, title]) => Object.assign(document.createElement("th"), { scope: "col", textContent: title })));
  $("report-table").querySelector("thead").replaceChildren(head);
  $("report-table").querySelector("tbody").replaceChildren(...rows.map((r) => {
    const row = document.createElement("tr");
    row.dataset.key = `${r.queue ?? r.agent}@${r.start_ms}`;
    row.append(...columns.map(([key]) => {
      // The interval as the report's zone has it, not the browser's.
      if (key === "interval_start") return cell(r.interval_start.replace("T", " "));
      if (key === "queue" || key === "agent") return cell(r[key]);
      const value = key.startsWith("state:") ? r.states[key.slice(6)] ?? 0 : r[key];
      return cell(figure(value), true);
    }));
    return row;
  }));
  drawReport(kind, rows);
}

async function loadReport() {
  $("error").textContent = "";
  const kind = $("report-kind").value;
  $("report-csv").href = reportQuery("csv");
  $("result").textContent = "Computing the report…";
  try {
    const report = await api("GET", reportQuery());
    showReport(kind, report);
    $("result").textContent = `${report.rows.length} row(s), ${report.interval} intervals from ${report.from} to ${report.to} (${report.tz}).`;
  } catch (e) {
    $("error").textContent = e.message;
    $("result").textContent = "";
  }
}

function setUpReports() {
  if (role !== "admin" && role !== "supervisor") return;
  $("reports").hidden = false;
  const now = new Date();
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  $("report-from").value = localInput(midnight);
  $("report-tz").value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  $("report-csv").href = reportQuery("csv");
  for (const id of ["report-kind", "report-from", "report-to", "report-interval", "report-tz", "report-only", "report-short"]) {
    $(id).addEventListener("change", () => { $("report-csv").href = reportQuery("csv"); });
  }
  $("report").onsubmit = (event) => { event.preventDefault(); loadReport(); };
}

function follow() {
  const stream = new EventSource("/v1/stats/stream");
  stream.addEventListener("stats", (event) => {
    $("connection").textContent = `Live · ${new Date().toLocaleTimeString()}`;
    showStats(JSON.parse(event.data));
  });
  stream.onerror = () => { $("connection").textContent = "Connection lost; reconnecting…"; };
}

$("sign-out").onclick = async () => {
  await fetch("/auth/sign-out", { method: "POST" });
  location.assign("/sign-in");
};

(async () => {
  const answer = await fetch("/auth/session");
  if (!answer.ok) { location.assign("/sign-in?next=/console"); return; }
  const session = await answer.json();
  csrf = session.csrf;
  role = session.role;
  $("who").textContent = `Console · ${session.person} (${role})`;
  follow();
  setUpReports();
  try { await Promise.all([loadFlows(), loadPeople()]); } catch (e) { $("error").textContent = e.message; }
})();
