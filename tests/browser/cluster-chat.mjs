// The chat widget in headless Chromium against a cluster behind HAProxy, driven in turns by
// the Rust test (tests/all/cluster.rs): each line this script prints is a step done, each
// line it reads is the test's go-ahead. Usage: node cluster-chat.mjs LOAD_BALANCER_URL
import readline from "node:readline";
import { launch } from "./launch.mjs";

const [base] = process.argv.slice(2);
const stdin = readline.createInterface({ input: process.stdin });
const told = stdin[Symbol.asyncIterator]();
async function wait(what) {
  const { value } = await told.next();
  if (value !== what) throw new Error(`expected "${what}" from the test, got "${value}"`);
}
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(`${base}/chat`);
  const log = page.locator("#switchboard-chat-log");
  const input = page.locator("#switchboard-chat-input");
  const say = async (text) => {
    await input.fill(text);
    await input.press("Enter");
  };
  await log.getByText("Hi, this is Acme.", { exact: false }).waitFor({ timeout: 15000 });
  await say("agent please");
  const contact = await page.evaluate(() => localStorage.getItem("switchboard-chat:chat:support"));
  console.log(`asked ${contact}`);
  await log.locator("li.sb-info").getByText("sara joined the chat").waitFor({ timeout: 20000 });
  await say("hello from the widget");
  await log.locator("li.sb-agent", { hasText: "Hello from the desk" }).waitFor({ timeout: 15000 });
  console.log("talked");

  // The test kills the node this widget is connected to, and the agent writes meanwhile.
  await wait("killed");
  await page.locator("#switchboard-chat-notice").getByText("Reconnected.").waitFor({ timeout: 30000 });
  await log.locator("li.sb-agent", { hasText: "Sent while you were away" }).waitFor({ timeout: 10000 });
  console.log("reconnected");

  // A reload starts from an empty page: the whole conversation comes back from the server.
  await page.reload();
  for (const [kind, text] of [["bot", "Hi, this is Acme."], ["you", "agent please"],
    ["you", "hello from the widget"], ["agent", "Hello from the desk"], ["agent", "Sent while you were away"]]) {
    await log.locator(`li.sb-${kind}`, { hasText: text }).first().waitFor({ timeout: 15000 });
  }
  await page.locator("#switchboard-chat-status").getByText("with sara").waitFor({ timeout: 5000 });
  await say("still here");
  await log.locator("li.sb-agent", { hasText: "Good to see you" }).waitFor({ timeout: 15000 });
  const shown = await log.locator("li.sb-agent", { hasText: "Sent while you were away" }).count();
  if (shown !== 1) throw new Error(`the message sent while away is shown ${shown} times`);
  console.log("resumed ok");
} finally {
  stdin.close();
  await browser.close();
}
