// The agent desk: signed in with a session cookie, it follows the agent's world over the
// agent socket (/agent/v1/ws), rings offers with their context, and carries a chat or SMS
// conversation through to wrap-up. Changes go over the socket; page loads over /agent/v1
// with the session's CSRF token.
const $ = (id) => document.getElementById(id);
let csrf = "";
let socket = null;
let offer = null; // { reservation, task, expires }
let current = null; // { task, context }
let ring = null;
let retry = 1000;

async function api(method, path, body) {
  const answer = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await answer.json().catch(() => ({}));
  if (answer.status === 401) location.assign("/sign-in?next=/desk");
  if (!answer.ok) throw new Error(json.error?.message ?? `${method} ${path}: ${answer.status}`);
  return json;
}

function say(text) { $("error").textContent = text; }

function send(message) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    say("Not connected: wait for the connection to come back, then try again.");
    return;
  }
  socket.send(JSON.stringify(message));
}

function beep() {
  try {
    const audio = new AudioContext();
    const tone = audio.createOscillator();
    tone.frequency.value = 880;
    tone.connect(audio.destination);
    tone.start();
    tone.stop(audio.currentTime + 0.25);
  } catch (_) { /* no sound available: the offer still shows */ }
}

function describe(context) {
  return context.name ?? (context.customer?.name) ?? "unknown customer";
}

async function showOffer(reservation, task) {
  offer = { reservation: reservation.id, task: task.id, expires: reservation.expires_ms };
  $("idle").hidden = true;
  $("offer").hidden = false;
  $("offer-channel").textContent = task.channel;
  $("offer-queue").textContent = task.queue;
  const tick = () => {
    if (!offer) return;
    $("offer-countdown").textContent = Math.max(0, Math.round((offer.expires - Date.now()) / 1000));
  };
  tick();
  clearInterval(ring);
  ring = setInterval(() => { tick(); if (Math.round((offer?.expires - Date.now()) / 1000) % 3 === 0) beep(); }, 1000);
  beep();
  $("accept").focus();
  try {
    const context = await api("GET", `/agent/v1/tasks/${task.id}/context`);
    offer.context = context;
    $("offer-channel").textContent = context.channel;
    $("offer-queue").textContent = context.queue;
    $("offer-customer").textContent = describe(context);
    $("offer-wait").textContent = `${context.waited_secs} s`;
    const inputs = $("offer-inputs");
    inputs.replaceChildren(...context.inputs.map((i) => Object.assign(document.createElement("li"), { textContent: i })));
  } catch (e) {
    $("offer-customer").textContent = "(context unavailable)";
    say(e.message);
  }
}

function clearOffer(why) {
  offer = null;
  clearInterval(ring);
  $("offer").hidden = true;
  $("idle").hidden = false;
  if (why) say(why);
}

function addMessage(from, text, at) {
  const item = document.createElement("li");
  item.className = from;
  const time = document.createElement("time");
  const when = at ? new Date(at) : new Date();
  time.dateTime = when.toISOString();
  time.textContent = `${from === "agent" ? "You" : "Customer"} · ${when.toLocaleTimeString()}`;
  item.append(time, document.createTextNode(text));
  $("transcript").append(item);
  item.scrollIntoView({ block: "end" });
}

async function openConversation(task, context) {
  current = { task: task.id, contact: task.contact, channel: task.channel, context };
  $("typing").textContent = "";
  $("talk-none").hidden = true;
  $("talk").hidden = false;
  $("send").hidden = false;
  $("wrapup").hidden = true;
  $("talk-customer").textContent = context ? describe(context) : "";
  $("transfer").hidden = false;
  $("consult").hidden = task.channel !== "voice";
  // A call: hold and hang up; a chat or SMS: the message box.
  const call = task.channel === "voice";
  $("call").hidden = !call;
  $("send").hidden = call;
  showHold(Boolean(task.held_since_ms));
  $("consulting").hidden = true;
  $("talk-queue").textContent = task.queue;
  $("transcript").replaceChildren();
  const disposition = $("disposition");
  const codes = context?.dispositions ?? [];
  disposition.replaceChildren(
    ...(context?.disposition_required ? [] : [Object.assign(document.createElement("option"), { value: "", textContent: "(none)" })]),
    ...codes.map((c) => Object.assign(document.createElement("option"), { value: c, textContent: c })),
  );
  try {
    const said = await api("GET", `/agent/v1/tasks/${task.id}/messages`);
    for (const m of said) addMessage(m.from === "agent" ? "agent" : "customer", m.text, m.at);
  } catch (_) { /* a call has no messages */ }
  if (task.channel === "email") showAttachments(task.id);
  $("message").focus();
}

// An e-mail's attachments, as downloads under the conversation.
async function showAttachments(id) {
  let files = [];
  try { files = await api("GET", `/agent/v1/tasks/${id}/attachments`); } catch (_) { return; }
  for (const f of files) {
    const item = document.createElement("li");
    item.className = "customer";
    if (f.kept) {
      const link = Object.assign(document.createElement("a"), {
        href: `/agent/v1/tasks/${id}/attachments/${f.mail}/${f.n}`,
        textContent: `\u{1F4CE} ${f.name}`,
        download: f.name,
      });
      item.append(link, document.createTextNode(` (${f.content_type}, ${f.size} bytes)`));
    } else {
      item.textContent = `\u{1F4CE} ${f.name} (${f.size} bytes, too large to keep)`;
    }
    $("transcript").append(item);
  }
}

async function reopen(task) {
  let context = null;
  try { context = await api("GET", `/agent/v1/tasks/${task.id}/context`); } catch (_) { /* shown without */ }
  await openConversation(task, context);
  if (task.status === "wrapping") {
    $("send").hidden = true;
    $("call").hidden = true;
    $("wrapup").hidden = false;
  }
}

function closeConversation() {
  current = null;
  $("talk").hidden = true;
  $("talk-none").hidden = false;
}

function remember(task, disposition) {
  const item = document.createElement("li");
  const who = task.attributes?.name ?? task.contact ?? task.id;
  item.textContent = `${new Date().toLocaleTimeString()} · ${task.channel} · ${task.queue} · ${who}${disposition ? ` · ${disposition}` : ""}`;
  $("history").prepend(item);
}

async function loadHistory() {
  try {
    const done = await api("GET", "/agent/v1/history");
    $("history").replaceChildren(...done.map((t) => {
      const item = document.createElement("li");
      const when = new Date(t.ended_ms ?? t.created_ms).toLocaleString();
      item.textContent = `${when} · ${t.channel} · ${t.queue} · ${t.attributes?.name ?? t.contact ?? t.id}${t.disposition ? ` · ${t.disposition}` : ""}`;
      return item;
    }));
  } catch (_) { /* history is a convenience */ }
}

function onPush(push) {
  switch (push.type) {
    case "snapshot": {
      // On (re)connection: the agent's world as it stands.
      $("activity").value = push.agent.activity;
      const r = push.agent.reservation;
      if (r) showOffer(r, { id: r.task, channel: "", queue: "" });
      else if (offer) clearOffer();
      const open = push.agent.tasks?.[0];
      if (open && !current) reopen(open);
      break;
    }
    case "reservation": showOffer(push.reservation, push.task); break;
    case "rescinded": case "timed-out":
      if (offer && push.task?.id === offer.task) clearOffer(push.reason ?? "The offer is gone.");
      break;
    case "canceled":
      if (offer && push.task?.id === offer.task) clearOffer(push.reason ?? "The task was canceled.");
      if (current && push.task?.id === current.task) { closeConversation(); say(push.reason ?? "The task was canceled."); }
      break;
    case "wrapping":
      // The conversation ended on its channel (the caller hung up): wrap-up begins.
      if (current && push.task?.id === current.task) {
        $("send").hidden = true;
        $("call").hidden = true;
        $("transfer").hidden = true;
        $("consult").hidden = true;
        $("wrapup").hidden = false;
        say(push.reason ? `The conversation ended: ${push.reason}.` : "The conversation ended.");
      }
      break;
    case "completed":
      if (current && push.task?.id === current.task) {
        remember(push.task, push.task.disposition);
        closeConversation();
        say(push.reason ? `Completed: ${push.reason}.` : "");
      }
      break;
    case "activity": if (push.activity) $("activity").value = push.activity; if (push.reason) say(push.reason); break;
    case "message":
      if (current && push.task === current.task) {
        $("typing").textContent = "";
        addMessage("customer", push.text);
      }
      break;
    case "typing":
      if (current && push.contact === current.contact) {
        $("typing").textContent = `${current.context?.name || "The customer"} is typing…`;
        clearTimeout(typingShown);
        typingShown = setTimeout(() => { $("typing").textContent = ""; }, 4000);
      }
      break;
    case "ok":
      if (push.task && offer && push.task.id === offer.task && push.task.status === "assigned") {
        const context = offer.context;
        clearOffer();
        openConversation(push.task, context);
      } else if (push.task && push.task.status === "wrapping") {
        $("send").hidden = true;
        $("call").hidden = true;
        $("transfer").hidden = true;
        $("wrapup").hidden = false;
        $("disposition").focus();
      } else if (push.task && push.task.status === "completed") {
        remember(push.task, push.task.disposition);
        closeConversation();
        say("");
      }
      break;
    case "error": say(push.message); break;
    default: break;
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/agent/v1/ws`);
  socket.onopen = () => { retry = 1000; $("connection").textContent = "Connected."; };
  socket.onmessage = (event) => { try { onPush(JSON.parse(event.data)); } catch (e) { say(e.message); } };
  socket.onclose = () => {
    $("connection").textContent = `Connection lost; reconnecting in ${Math.round(retry / 1000)} s…`;
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 15000);
  };
}

$("accept").onclick = () => offer && send({ type: "accept", reservation: offer.reservation });
$("reject").onclick = () => { if (offer) { send({ type: "reject", reservation: offer.reservation }); clearOffer(); } };
$("send").onsubmit = (event) => {
  event.preventDefault();
  const text = current?.channel === "email" ? $("message").value.trimEnd() : $("message").value.trim();
  if (!text.trim() || !current) return;
  send({ type: "message", task: current.task, text });
  addMessage("agent", text);
  $("message").value = "";
  toldTyping = 0;
};
// Enter sends a chat or SMS line; an e-mail is written over several lines and sent with
// Ctrl+Enter (or the button).
$("message").addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey) return;
  const mail = current?.channel === "email";
  if (mail && !(event.ctrlKey || event.metaKey)) return;
  event.preventDefault();
  $("send").requestSubmit();
});
// The customer sees the agent typing (chat), told at most every 2 s.
let typingShown = null;
let toldTyping = 0;
$("message").addEventListener("input", () => {
  if (!current || current.channel !== "chat" || socket?.readyState !== WebSocket.OPEN) return;
  if (Date.now() - toldTyping < 2000) return;
  toldTyping = Date.now();
  send({ type: "typing", task: current.task });
});
function showHold(held) {
  if (!current) return;
  current.held = held;
  $("hold").textContent = held ? "Resume" : "Hold";
  $("hold").setAttribute("aria-pressed", String(held));
  $("call-state").textContent = held ? "The caller is on hold (they hear music)." : "On the call.";
}

$("hold").onclick = async () => {
  if (!current) return;
  try {
    const task = await api("POST", `/agent/v1/tasks/${current.task}/hold`, { on: !current.held });
    showHold(Boolean(task.held_since_ms));
    say("");
  } catch (e) { say(e.message); }
};
// Hanging up ends the conversation: the agent's phone is hung up and wrap-up begins.
$("hang-up").onclick = () => current && send({ type: "wrap", task: current.task });
$("wrap").onclick = () => current && send({ type: "wrap", task: current.task });
$("transfer").onsubmit = async (event) => {
  event.preventDefault();
  if (!current) return;
  const kind = $("transfer-kind").value;
  const target = $("transfer-target").value.trim();
  if (!confirm(`Transfer this ${current.context?.channel ?? "contact"} to ${kind} ${target}?`)) return;
  try {
    const task = await api("POST", `/agent/v1/tasks/${current.task}/transfer`, { [kind]: target });
    if (kind === "number") {
      say(`Ringing ${target}; the customer stays with you until it answers.`);
      return;
    }
    remember(task, `transferred to ${target}`);
    closeConversation();
    say(`Transferred to ${kind} ${target}.`);
  } catch (e) {
    say(e.message);
  }
};
$("consult").onclick = async () => {
  if (!current) return;
  const agent = $("transfer-target").value.trim();
  if (!agent) { say("Name the agent to consult in the box above."); return; }
  try {
    await api("POST", `/agent/v1/tasks/${current.task}/consult`, { agent });
    $("consulting-agent").textContent = agent;
    $("consulting").hidden = false;
    $("transfer").hidden = true;
  } catch (e) { say(e.message); }
};
for (const [button, path, done] of [["consult-complete", "complete", "Handed over."], ["consult-cancel", "cancel", "The call is back with you."]]) {
  $(button).onclick = async () => {
    if (!current) return;
    try {
      await api("POST", `/agent/v1/tasks/${current.task}/consult/${path}`, {});
      $("consulting").hidden = true;
      if (path === "complete") closeConversation(); else $("transfer").hidden = false;
      say(done);
    } catch (e) { say(e.message); }
  };
}
$("wrapup").onsubmit = (event) => {
  event.preventDefault();
  if (!current) return;
  const disposition = $("disposition").value || undefined;
  send({ type: "complete", task: current.task, disposition, wrapup: $("notes").value });
};
$("activity").onchange = async () => {
  try { await api("PUT", "/agent/v1/activity", { activity: $("activity").value }); say(""); } catch (e) { say(e.message); }
};
$("sign-out").onclick = async () => {
  await fetch("/auth/sign-out", { method: "POST" });
  location.assign("/sign-in");
};

(async () => {
  const answer = await fetch("/auth/session");
  if (!answer.ok) { location.assign("/sign-in?next=/desk"); return; }
  const session = await answer.json();
  csrf = session.csrf;
  $("who").textContent = `Desk · ${session.person}`;
  await loadHistory();
  connect();
})();
