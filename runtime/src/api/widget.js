// Switchboard web chat widget. Embed with:
//   <script src="https://YOUR-SWITCHBOARD/widget.js" data-address="chat:support"></script>
// A site that knows its signed-in customer may add data-name="Jane Doe": the agent sees it.
// It opens a chat box, talks to /chat/v1/ws, and resumes the conversation after a reload or a
// lost connection. Messages are bubbles by sender with their time; the agent's arrival and
// typing are shown; the log is a live region for screen readers and every control has a label.
(function () {
  var script = document.currentScript;
  var address = (script && script.getAttribute("data-address")) || "chat:support";
  var name = (script && script.getAttribute("data-name")) || undefined;
  var base = script ? new URL(script.src, location.href) : new URL(location.href);
  var wsUrl = (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/chat/v1/ws";
  var storageKey = "switchboard-chat:" + address;

  // Styles scoped to the widget, so the host page's own are left alone.
  var style = document.createElement("style");
  style.textContent = [
    "#switchboard-chat{position:fixed;bottom:16px;right:16px;width:340px;max-width:calc(100vw - 32px);font:14px/1.4 system-ui,sans-serif;color:#1c2430;border:1px solid #c9d0d8;border-radius:10px;background:#fff;box-shadow:0 4px 16px rgba(0,0,0,.18);display:flex;flex-direction:column;z-index:2147483000}",
    "#switchboard-chat .sb-head{display:flex;align-items:center;gap:8px;padding:8px 12px;background:#1f4e79;color:#fff;border-radius:10px 10px 0 0}",
    "#switchboard-chat .sb-head h2{font-size:15px;margin:0;flex:1}",
    "#switchboard-chat .sb-head button{background:transparent;border:1px solid rgba(255,255,255,.6);color:#fff;border-radius:6px;width:28px;height:28px;cursor:pointer;font-size:16px;line-height:1}",
    "#switchboard-chat #switchboard-chat-status{font-size:12px;opacity:.9}",
    "#switchboard-chat .sb-notice{margin:0;padding:6px 12px;background:#fff4ce;color:#5c4400;font-size:13px}",
    "#switchboard-chat ol{list-style:none;margin:0;padding:10px;height:300px;overflow-y:auto;display:flex;flex-direction:column;gap:6px}",
    "#switchboard-chat li{max-width:80%;padding:6px 10px;border-radius:12px;word-wrap:break-word}",
    "#switchboard-chat li.sb-you{align-self:flex-end;background:#1f4e79;color:#fff;border-bottom-right-radius:4px}",
    "#switchboard-chat li.sb-agent{align-self:flex-start;background:#e4ecf7;border-bottom-left-radius:4px}",
    "#switchboard-chat li.sb-bot{align-self:flex-start;background:#eef1f5;border-bottom-left-radius:4px}",
    "#switchboard-chat li.sb-info{align-self:center;background:transparent;color:#5b6675;font-size:12px;font-style:italic;text-align:center}",
    "#switchboard-chat .sb-who{display:block;font-size:12px;font-weight:600;margin-bottom:2px}",
    "#switchboard-chat time{display:block;font-size:11px;opacity:.75;margin-top:2px;text-align:right}",
    "#switchboard-chat .sb-typing{margin:0;padding:0 12px 4px;min-height:18px;font-size:12px;color:#5b6675;font-style:italic}",
    "#switchboard-chat form{display:flex;gap:6px;border-top:1px solid #e3e7ec;padding:8px}",
    "#switchboard-chat input{flex:1;border:1px solid #c9d0d8;border-radius:6px;padding:8px;font:inherit}",
    "#switchboard-chat form button{border:0;border-radius:6px;background:#1f4e79;color:#fff;padding:0 14px;font:inherit;cursor:pointer}",
    "#switchboard-chat form button:disabled{opacity:.5;cursor:default}",
    "#switchboard-chat :focus-visible{outline:3px solid #8fb3ff;outline-offset:1px}",
    "#switchboard-chat .sb-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    "#switchboard-chat.sb-min .sb-body{display:none}",
  ].join("\n");
  document.head.appendChild(style);

  var box = document.createElement("section");
  box.id = "switchboard-chat";
  box.setAttribute("aria-labelledby", "switchboard-chat-title");
  box.innerHTML =
    '<div class="sb-head"><h2 id="switchboard-chat-title">Chat with us</h2>' +
    '<span id="switchboard-chat-status" role="status" aria-live="polite"></span>' +
    '<button type="button" id="switchboard-chat-toggle" aria-expanded="true" aria-controls="switchboard-chat-body" aria-label="Minimize the chat">&#8211;</button></div>' +
    '<div class="sb-body" id="switchboard-chat-body">' +
    '<p class="sb-notice" id="switchboard-chat-notice" role="alert" hidden></p>' +
    '<ol id="switchboard-chat-log" role="log" aria-live="polite" aria-label="Conversation" tabindex="0"></ol>' +
    '<p class="sb-typing" id="switchboard-chat-typing" aria-live="polite"></p>' +
    '<form id="switchboard-chat-form"><label for="switchboard-chat-input" class="sb-hidden">Message</label>' +
    '<input id="switchboard-chat-input" autocomplete="off" placeholder="Type a message" maxlength="4000">' +
    '<button type="submit" id="switchboard-chat-send">Send</button></form></div>';
  document.body.appendChild(box);
  var log = box.querySelector("#switchboard-chat-log");
  var status = box.querySelector("#switchboard-chat-status");
  var notice = box.querySelector("#switchboard-chat-notice");
  var typing = box.querySelector("#switchboard-chat-typing");
  var input = box.querySelector("#switchboard-chat-input");
  var sendButton = box.querySelector("#switchboard-chat-send");
  var toggle = box.querySelector("#switchboard-chat-toggle");

  // The ids of the lines shown: a line that arrives again (a resumed conversation's history
  // and the same line live) is shown once.
  var shown = {};
  // One message: a bubble by sender (you, the agent, the automated flow) or a line of news,
  // with the time it was said (`at`, when known) or shown. Text only: never HTML.
  function line(kind, text, who, at, id) {
    if (id) {
      if (shown[id]) return;
      shown[id] = true;
    }
    var item = document.createElement("li");
    item.className = "sb-" + kind;
    if (who) {
      var label = document.createElement("span");
      label.className = "sb-who";
      label.textContent = who;
      item.appendChild(label);
      var colon = document.createElement("span");
      colon.className = "sb-hidden";
      colon.textContent = ": ";
      item.appendChild(colon);
    }
    var body = document.createElement("span");
    body.className = "sb-text";
    body.textContent = text;
    item.appendChild(body);
    var now = at ? new Date(at) : new Date();
    if (isNaN(now.getTime())) now = new Date();
    var time = document.createElement("time");
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    item.appendChild(time);
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
  }

  var typingTimer = null;
  function showTyping(who) {
    typing.textContent = who + " is typing\u2026";
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { typing.textContent = ""; }, 4000);
  }

  var ws;
  var retry = 1000;
  var lost = false;
  // The conversation was closed: a dropped connection then is not picked up again (it would
  // start a new conversation unasked); the visitor starts one with the button.
  var ended = false;
  function connect() {
    ended = false;
    ws = new WebSocket(wsUrl);
    ws.onopen = function () {
      retry = 1000;
      status.textContent = "online";
      sendButton.disabled = false;
      ws.send(JSON.stringify({ type: "join", address: address, name: name, resume: localStorage.getItem(storageKey) || undefined }));
    };
    ws.onmessage = function (event) {
      var msg = JSON.parse(event.data);
      if (msg.type === "joined") {
        localStorage.setItem(storageKey, msg.contact);
        // A resumed chat (after a reload, or through another server) shows the whole
        // conversation again, including what was said while the connection was down.
        if (msg.history) {
          log.textContent = "";
          shown = {};
          msg.history.forEach(function (h) {
            if (h.from === "agent") line("agent", h.text, h.agent, h.at, h.id);
            else if (h.from === "you") line("you", h.text, "You", h.at, h.id);
            else line("bot", h.text, undefined, h.at, h.id);
          });
          if (msg.agent) status.textContent = "with " + msg.agent;
        }
        if (lost) {
          lost = false;
          notice.textContent = "Reconnected.";
          setTimeout(function () { if (!lost) notice.hidden = true; }, 3000);
        }
      } else if (msg.type === "message") {
        if (msg.from === "agent") {
          typing.textContent = "";
          line("agent", msg.text, msg.agent, undefined, msg.id);
        } else {
          line("bot", msg.text, undefined, undefined, msg.id);
        }
      } else if (msg.type === "typing" && msg.agent) {
        showTyping(msg.agent);
      } else if (msg.type === "agent-joined") {
        status.textContent = "with " + msg.agent;
        line("info", msg.agent + " joined the chat");
      } else if (msg.type === "queued") {
        status.textContent = "waiting for an agent";
        line("info", "Waiting for an agent\u2026");
      } else if (msg.type === "closed") {
        status.textContent = "closed";
        line("info", "The conversation has ended.");
        localStorage.removeItem(storageKey);
        ended = true;
        sendButton.disabled = true;
        var again = document.createElement("button");
        again.type = "button";
        again.textContent = "Start a new chat";
        again.addEventListener("click", function () {
          again.remove();
          if (ws) ws.onclose = null;
          if (ws) ws.close();
          connect();
        });
        var item = document.createElement("li");
        item.className = "sb-info";
        item.appendChild(again);
        log.appendChild(item);
      } else if (msg.type === "error") {
        line("info", msg.message);
      }
    };
    ws.onclose = function () {
      if (ended) {
        status.textContent = "closed";
        return;
      }
      lost = true;
      status.textContent = "offline";
      sendButton.disabled = true;
      notice.hidden = false;
      notice.textContent = "Connection lost. Reconnecting in " + Math.round(retry / 1000) + " s\u2026 Your conversation is kept.";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }
  box.querySelector("#switchboard-chat-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text || !ws || ws.readyState !== 1) return;
    ws.send(JSON.stringify({ type: "message", text: text }));
    line("you", text, "You");
    input.value = "";
    toldTyping = 0;
  });
  // Typing is told at most every 2 s (and again at once after a message is sent).
  var toldTyping = 0;
  input.addEventListener("input", function () {
    var now = Date.now();
    if (ws && ws.readyState === 1 && now - toldTyping > 2000) {
      toldTyping = now;
      ws.send(JSON.stringify({ type: "typing" }));
    }
  });
  toggle.addEventListener("click", function () {
    var open = box.classList.toggle("sb-min") === false;
    toggle.setAttribute("aria-expanded", String(open));
    toggle.setAttribute("aria-label", open ? "Minimize the chat" : "Open the chat");
    toggle.innerHTML = open ? "&#8211;" : "+";
    if (open) input.focus();
  });
  box.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && !box.classList.contains("sb-min")) toggle.click();
  });
  connect();
})();
