// Drives the chat widget in headless Chromium like a customer would: opens the demo page,
// asks for an order, asks for an agent, and waits for the agent's reply (sent by the Rust
// test through the agent API). Usage: node chat.mjs BASE_URL SCREENSHOT_PATH
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  await page.goto(`${base}/chat`);
  const log = page.locator("#switchboard-chat-log");
  const input = page.locator("#switchboard-chat-input");
  await log.getByText("Hi, this is Acme.", { exact: false }).waitFor({ timeout: 15000 });
  await input.fill("1001");
  await input.press("Enter");
  await log.getByText("Order 1001 is shipped.").waitFor({ timeout: 15000 });
  await input.fill("agent please");
  await input.press("Enter");
  await log.getByText("sara joined the chat").waitFor({ timeout: 20000 });
  await log.getByText("sara: Hello from the agent desk!").waitFor({ timeout: 20000 });
  await page.locator("#switchboard-chat-status").getByText("with sara").waitFor({ timeout: 5000 });
  await page.screenshot({ path: screenshot });
  console.log("widget conversation ok");
} finally {
  await browser.close();
}
