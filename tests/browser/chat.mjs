// Drives the chat widget in headless Chromium like a customer would: opens the demo page,
// asks for an order, asks for an agent, and waits for the agent's reply (sent by the Rust
// test through the agent API). Usage: node chat.mjs BASE_URL SCREENSHOT_PATH
import { launch } from "./launch.mjs";

const [base, screenshot] = process.argv.slice(2);
const browser = await launch();
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
  await log.locator("li.sb-info").getByText("sara joined the chat").waitFor({ timeout: 20000 });
  const reply = log.locator("li.sb-agent", { hasText: "Hello from the agent desk!" });
  await reply.waitFor({ timeout: 20000 });
  if ((await reply.locator(".sb-who").textContent()) !== "sara") throw new Error("the reply does not say who wrote it");
  // Keyboard: Escape folds the widget, its button opens it again with the focus in the input.
  await input.focus();
  await page.keyboard.press("Escape");
  if (await input.isVisible()) throw new Error("Escape did not fold the chat");
  const toggle = page.getByRole("button", { name: "Open the chat" });
  await toggle.focus();
  await page.keyboard.press("Enter");
  await input.waitFor({ state: "visible", timeout: 2000 });
  if (!(await input.evaluate((e) => e === document.activeElement))) throw new Error("the input has no focus after opening");
  await page.locator("#switchboard-chat-status").getByText("with sara").waitFor({ timeout: 5000 });
  await page.screenshot({ path: screenshot });
  console.log("widget conversation ok");
} finally {
  await browser.close();
}
