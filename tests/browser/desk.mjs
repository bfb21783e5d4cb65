// Drives the agent desk and the chat widget side by side in headless Chromium: the agent is
// sent to the sign-in form, signs in, goes available; a customer (the widget, with a name)
// asks for an order then for an agent; the desk rings with the customer's name and what
// they wrote in the flow; the agent accepts, they exchange messages, the agent wraps up with
// a disposition code and sees the contact in their history.
// Usage: node desk.mjs BASE_URL SCREENSHOT_DIR
import { launch } from "./launch.mjs";

const [base, shots] = process.argv.slice(2);
const browser = await launch(["--autoplay-policy=no-user-gesture-required"]);
const step = (what) => console.log(`desk: ${what}`);
try {
  const desk = await (await browser.newContext()).newPage();
  await desk.goto(`${base}/desk`);
  if (!desk.url().includes("/sign-in")) throw new Error(`signed out, /desk showed ${desk.url()}`);
  step("a signed-out browser is sent to the sign-in form");
  await desk.getByLabel("Name").fill("sara");
  await desk.getByLabel("Password").fill("wrong password!");
  await desk.getByRole("button", { name: "Sign in" }).click();
  await desk.getByRole("alert").getByText("wrong name or password").waitFor({ timeout: 10000 });
  await desk.getByLabel("Password").fill("sara's long password");
  await desk.getByRole("button", { name: "Sign in" }).click();
  await desk.waitForURL(`${base}/desk`, { timeout: 10000 });
  await desk.getByText("Connected.").waitFor({ timeout: 10000 });
  await desk.getByLabel("Activity").selectOption("available");
  step("signed in and available");

  const widget = await (await browser.newContext()).newPage();
  await widget.goto(`${base}/chat?name=${encodeURIComponent("Jane Doe")}`);
  const log = widget.locator("#switchboard-chat-log");
  const input = widget.locator("#switchboard-chat-input");
  await log.getByText("Hi, this is Acme.", { exact: false }).waitFor({ timeout: 15000 });
  await input.fill("1001");
  await input.press("Enter");
  await log.getByText("Order 1001 is shipped.").waitFor({ timeout: 15000 });
  await input.fill("agent please");
  await input.press("Enter");

  const offer = desk.locator("#offer");
  await offer.waitFor({ state: "visible", timeout: 20000 });
  await offer.locator("#offer-customer").getByText("Jane Doe").waitFor({ timeout: 10000 });
  await offer.locator("#offer-inputs").getByText('wrote "1001"').waitFor({ timeout: 10000 });
  await offer.locator("#offer-queue").getByText("support").waitFor({ timeout: 10000 });
  step("the offer rings with the customer's name and what they did in the flow");
  await desk.screenshot({ path: `${shots}/browser-desk-offer.png` });
  await desk.getByRole("button", { name: "Accept" }).click();

  await log.locator("li.sb-info").getByText("sara joined the chat").waitFor({ timeout: 20000 });
  await desk.getByLabel("Message to the customer").fill("Hello Jane, how can I help?");
  await widget.locator("#switchboard-chat-typing").getByText("sara is typing").waitFor({ timeout: 5000 });
  step("the customer sees the agent typing");
  await desk.getByRole("button", { name: "Send" }).click();
  const bubble = log.locator("li.sb-agent", { hasText: "Hello Jane, how can I help?" });
  await bubble.waitFor({ timeout: 20000 });
  if ((await bubble.locator(".sb-who").textContent()) !== "sara") throw new Error("the agent's bubble does not say who wrote it");
  if (!(await bubble.locator("time").getAttribute("datetime"))) throw new Error("the agent's bubble has no time");
  if (await widget.locator("#switchboard-chat-typing").textContent()) throw new Error("still shown typing after the message");
  await input.fill("Where is my parcel?");
  await desk.locator("#typing").getByText("Jane Doe is typing").waitFor({ timeout: 5000 });
  step("the agent sees the customer typing");
  await input.press("Enter");
  await log.locator("li.sb-you", { hasText: "Where is my parcel?" }).waitFor({ timeout: 5000 });
  await desk.locator("#transcript").getByText("Where is my parcel?").waitFor({ timeout: 20000 });
  step("messages go both ways, as bubbles by sender with their time");
  await widget.screenshot({ path: `${shots}/browser-desk-widget.png` });

  await desk.getByRole("button", { name: "Wrap up" }).click();
  await desk.getByLabel("Disposition").selectOption("resolved");
  await desk.getByLabel("Notes").fill("Parcel tracking sent.");
  await desk.getByRole("button", { name: "Complete" }).click();
  await desk.locator("#history").getByText("resolved").waitFor({ timeout: 10000 });
  step("wrapped up with a disposition, in the history");
  await desk.reload();
  await desk.locator("#history").getByText("resolved").waitFor({ timeout: 10000 });
  step("the history survives a reload");

  // Again: this time the agent transfers the chat to another queue from the desk.
  desk.on("dialog", (dialog) => dialog.accept());
  await desk.getByText("Connected.").waitFor({ timeout: 10000 });
  await input.fill("agent please");
  await input.press("Enter");
  await offer.waitFor({ state: "visible", timeout: 20000 });
  await desk.getByRole("button", { name: "Accept" }).click();
  await desk.getByLabel("To", { exact: true }).selectOption("queue");
  await desk.getByLabel("Queue, agent or number").fill("billing");
  await desk.getByRole("button", { name: "Transfer", exact: true }).click();
  await desk.locator("#history").getByText("transferred to billing").waitFor({ timeout: 10000 });
  await desk.getByText("No conversation open.").waitFor({ timeout: 5000 });
  step("the agent transferred the next chat to billing");
  await desk.screenshot({ path: `${shots}/browser-desk.png` });
  console.log("desk ok");
} finally {
  await browser.close();
}
