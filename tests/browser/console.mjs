// Drives the supervisor console in headless Chromium: an agent is refused it; a developer
// (sent to sign in first) deploys a new version as a canary and aborts it; a supervisor's
// wallboard shows a task arrive and leave (the time it took is printed), with the numbers the
// API gives, and exports a report as CSV whose rows match a scenario the test made.
// Usage: node console.mjs BASE_URL SCREENSHOT_DIR ADMIN_TOKEN COMPONENT_PATH
import { launch } from "./launch.mjs";

const [base, shots, token, component] = process.argv.slice(2);
const browser = await launch();
const step = (what) => console.log(`console: ${what}`);
// Waits for the wallboard to show something and says how long it took. The board is pushed
// once a second, so it usually takes 1 to 2 s; the bound is wide for a busy machine (the
// test checks what is shown, not how fast).
const seen = [];
const shows = async (locator) => {
  const since = Date.now();
  await locator.waitFor({ timeout: 10000 });
  seen.push(Date.now() - since);
};
const admin = async (method, path, body) => {
  const answer = await fetch(`${base}${path}`, {
    method, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!answer.ok) throw new Error(`${method} ${path}: ${answer.status} ${await answer.text()}`);
  return answer.json();
};
async function signIn(name, password, next) {
  const page = await (await browser.newContext()).newPage();
  page.on("dialog", (dialog) => dialog.accept());
  page.on("pageerror", (e) => console.log(`page error on ${name}'s page: ${e.message}`));
  await page.goto(`${base}${next}`);
  if (!page.url().includes("/sign-in")) throw new Error(`signed out, ${next} showed ${page.url()}`);
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  return page;
}
try {
  const agent = await signIn("ann", "ann's long password", "/desk");
  await agent.waitForURL(`${base}/desk`, { timeout: 10000 });
  const refused = await agent.goto(`${base}/console`);
  if (refused.status() !== 403) throw new Error(`an agent opened the console: ${refused.status()}`);
  step("an agent is refused the console (403)");

  const dev = await signIn("dee", "dee's long password", "/console");
  await dev.waitForURL(`${base}/console`, { timeout: 10000 });
  const flow = dev.locator('.flow[data-flow="main"]');
  await flow.getByText("main: live v1").waitFor({ timeout: 10000 }).catch(async (e) => {
    throw new Error(`${e.message}\npage error: ${await dev.locator("#error").textContent()}\nflows: ${await dev.locator("#flows").innerHTML()}`);
  });
  await dev.getByLabel("Flow", { exact: true }).fill("main");
  await dev.getByLabel("Component (.wasm)").setInputFiles(component);
  await dev.getByLabel(/As a canary/).fill("50");
  await dev.getByRole("button", { name: "Deploy" }).click();
  await dev.locator("#result").getByText("v2 deployed as a canary taking 50 %").waitFor({ timeout: 30000 });
  await flow.getByText("canary v2 taking 50 %").waitFor({ timeout: 10000 });
  step("a developer deployed a canary from the console");
  // A contact of v1, found and traced from the page, replayed against v2.
  const contact = await admin("POST", "/v1/contacts", { channel: "voice", from: "+15550001", to: "+15550100", flow: "main" });
  await admin("POST", `/v1/contacts/${contact.contact}/events`, { type: "input", digits: "2" });
  await dev.getByRole("button", { name: "Search" }).click();
  const found = dev.locator(`#contacts tr[data-contact="${contact.contact}"]`);
  await found.getByRole("button", { name: "Trace" }).click();
  await dev.locator("#trace-steps").getByText("pressed 2").waitFor({ timeout: 5000 });
  await dev.locator("#trace-steps").getByText(/enqueue in support/).waitFor({ timeout: 5000 });
  await dev.getByLabel("Replay against version").fill("2");
  await dev.getByRole("button", { name: "Replay" }).click();
  await dev.locator("#replay-result").getByText("v2 behaves differently").waitFor({ timeout: 15000 });
  // The caller hangs up: their task leaves the queue before the wallboard part.
  await admin("POST", `/v1/contacts/${contact.contact}/events`, { type: "hangup" });
  step("a contact traced and replayed against the canary from the console");
  await dev.screenshot({ path: `${shots}/browser-console-canary.png`, fullPage: true });
  await flow.getByRole("button", { name: "Abort the canary" }).click();
  await dev.locator("#result").getByText("canary aborted").waitFor({ timeout: 10000 });
  // "main: live v1" is also the start of the heading while the canary is shown: wait for
  // the whole heading, then make sure nothing names the canary.
  await flow.getByText("main: live v1", { exact: true }).waitFor({ timeout: 10000 });
  if (await flow.getByText("canary v2").count()) throw new Error("the canary is still shown");
  const versions = await admin("GET", "/v1/flows/main/versions");
  if (versions.canary) throw new Error(`the API still has a canary: ${JSON.stringify(versions.canary)}`);
  step("and aborted it");

  const sup = await signIn("sam", "sam's long password", "/console");
  await sup.waitForURL(`${base}/console`, { timeout: 10000 });
  const row = sup.locator('#wallboard tr[data-queue="support"]');
  await row.waitFor({ timeout: 10000 });
  const waiting = () => row.locator("td").nth(0);
  await waiting().getByText("0", { exact: true }).waitFor({ timeout: 5000 });
  const abandoned = (await admin("GET", "/v1/queues/support/stats")).tasks["canceled-in-window"];
  const task = await admin("POST", "/v1/tasks", { queue: "support", channel: "chat", attributes: {} });
  await shows(waiting().getByText("1", { exact: true }));
  const stats = await admin("GET", "/v1/queues/support/stats");
  const waitingNow = (stats.tasks.pending ?? 0) + (stats.tasks.reserved ?? 0);
  if (waitingNow !== 1) throw new Error(`the API says ${waitingNow} waiting: ${JSON.stringify(stats)}`);
  step(`the wallboard showed the task arrive after ${seen.at(-1)} ms, as the API counts it`);
  const listed = sup.locator(`#tasks tr[data-task="${task.id}"]`);
  await listed.waitFor({ timeout: 5000 });
  await sup.screenshot({ path: `${shots}/browser-console.png`, fullPage: true });
  await listed.getByRole("combobox").selectOption("default");
  await listed.getByRole("button", { name: "Move" }).click();
  await sup.locator("#result").getByText(`moved to default`).waitFor({ timeout: 5000 });
  const moved = await admin("GET", `/v1/tasks/${task.id}`);
  if (moved.queue !== "default") throw new Error(`the task is in ${moved.queue}`);
  await shows(waiting().getByText("0", { exact: true }));
  await admin("POST", `/v1/tasks/${task.id}/move`, { queue: "support" });
  await shows(waiting().getByText("1", { exact: true }));
  step("a supervisor moved the task from the console");
  await admin("POST", `/v1/tasks/${task.id}/cancel`, { reason: "test" });
  await shows(waiting().getByText("0", { exact: true }));
  await shows(row.locator("td").nth(5).getByText(String(abandoned + 1), { exact: true }));
  const after = await admin("GET", "/v1/queues/support/stats");
  if (after.tasks["canceled-in-window"] !== abandoned + 1) throw new Error(`the API counts ${JSON.stringify(after.tasks)}`);
  step(`and leave after ${seen.at(-2)} ms, counted abandoned as the API does (board updates took ${seen.join(", ")} ms)`);

  // Reports: a queue with a scenario the test knows (three callers: two give up, one still
  // waits); the table shows it, and the CSV export has the figures the API gives.
  await admin("PUT", "/v1/queues/reports", { short_abandon_secs: 0 });
  const scenario = [];
  for (let i = 0; i < 3; i++) scenario.push(await admin("POST", "/v1/tasks", { queue: "reports", channel: "chat", attributes: {} }));
  await admin("POST", `/v1/tasks/${scenario[0].id}/cancel`, { reason: "hung up" });
  await admin("POST", `/v1/tasks/${scenario[1].id}/cancel`, { reason: "hung up" });
  await sup.getByLabel("Report", { exact: true }).selectOption("queues");
  await sup.getByLabel("Interval").selectOption("1d");
  await sup.getByRole("button", { name: "Show" }).click();
  const reportRow = sup.locator('#report-table tbody tr[data-key^="reports@"]').first();
  await reportRow.waitFor({ timeout: 10000 }).catch(async (e) => {
    throw new Error(`${e.message}\npage error: ${await sup.locator("#error").textContent()}`);
  });
  const shown = await reportRow.locator("td").allTextContents();
  if (shown[2] !== "3" || shown[4] !== "2" || shown[6] !== "1") throw new Error(`the report row shows ${shown.join(" | ")}`);
  if (!(await sup.locator("#report-chart").evaluate((c) => c.width > 0 && window.Chart !== undefined))) throw new Error("no chart was drawn");
  const [download] = await Promise.all([
    sup.waitForEvent("download"),
    sup.getByRole("link", { name: "Export CSV" }).click(),
  ]);
  const csv = (await import("node:fs")).readFileSync(await download.path(), "utf8").trim().split("\n").map((l) => l.split(","));
  const header = csv[0];
  const col = (name) => header.indexOf(name);
  const mine = csv.slice(1).filter((r) => r[col("queue")] === "reports");
  const total = (name) => mine.reduce((t, r) => t + Number(r[col(name)]), 0);
  const figures = ["offered", "answered", "abandoned", "short_abandoned", "waiting"].map(total).join(",");
  if (figures !== "3,0,2,0,1") throw new Error(`the CSV says offered,answered,abandoned,short,waiting = ${figures}:\n${csv.join("\n")}`);
  const href = await sup.getByRole("link", { name: "Export CSV" }).getAttribute("href");
  const api = await admin("GET", href.replace("format=csv", "format=json"));
  const apiRows = api.rows.filter((r) => r.queue === "reports");
  for (const [i, r] of mine.entries()) {
    for (const name of ["offered", "answered", "abandoned", "short_abandoned", "waiting", "answered_in_sl"]) {
      if (Number(r[col(name)]) !== apiRows[i][name]) throw new Error(`CSV ${name} ${r[col(name)]} but the API ${apiRows[i][name]}`);
    }
  }
  await sup.screenshot({ path: `${shots}/browser-console-reports.png`, fullPage: true });
  step("a supervisor read the report and exported a CSV whose rows match the scenario and the API");

  // The admin adds a person and gives them a token from the page; the token works, then is
  // revoked from the page and stops working.
  const root = await signIn("root", "root's long password", "/console");
  await root.waitForURL(`${base}/console`, { timeout: 10000 });
  await root.getByLabel("Name", { exact: true }).fill("kim");
  await root.getByLabel("Role").selectOption("developer");
  await root.getByLabel(/^Password/).fill("kim's long password");
  await root.getByRole("button", { name: "Add" }).click();
  await root.locator('#users tr[data-user="kim"]').waitFor({ timeout: 5000 });
  await root.getByLabel("Person").fill("kim");
  await root.getByLabel("Label").fill("ci");
  await root.getByRole("button", { name: "Create a token" }).click();
  // The element is on the page before the answer: wait for the secret itself.
  await root.locator("#new-token-value", { hasText: /\S/ }).waitFor({ timeout: 5000 });
  const secret = (await root.locator("#new-token-value").textContent()).trim();
  const use = () => fetch(`${base}/v1/flows`, { headers: { Authorization: `Bearer ${secret}` } });
  if ((await use()).status !== 200) throw new Error("the new token does not work");
  const tokenRow = root.locator("#tokens tr", { hasText: "ci" });
  await tokenRow.getByRole("button", { name: "Revoke" }).click();
  await root.locator("#result").getByText("revoked").waitFor({ timeout: 5000 });
  if ((await use()).status !== 401) throw new Error("the revoked token still works");
  step("an admin added a person, gave them a token and revoked it from the page");
  await root.screenshot({ path: `${shots}/browser-console-people.png`, fullPage: true });
  console.log("console ok");
} finally {
  await browser.close();
}
