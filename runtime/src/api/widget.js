// Switchboard web chat widget. Embed with:
//   <script src="https://YOUR-SWITCHBOARD/widget.js" data-address="chat:support"></script>
// A site that knows its signed-in customer may add data-name="Jane Doe": the agent sees it.
// It opens a chat box, talks to /chat/v1/ws, and resumes the conversation after a reload.
(function () {
  var script = document.currentScript;
  var address = (script && script.getAttribute("data-address")) || "chat:support";
  var name = (script && script.getAttribute("data-name")) || undefined;
  var base = script ? new URL(script.src, location.href) : new URL(location.href);
  var wsUrl = (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/chat/v1/ws";
  var storageKey = "switchboard-chat:" + address;

  var box = document.createElement("div");
  box.id = "switchboard-chat";
  box.setAttribute("style", "position:fixed;bottom:16px;right:16px;width:320px;font:14px sans-serif;border:1px solid #ccc;border-radius:8px;background:#fff;box-shadow:0 2px 8px rgba(0,0,0,.2);display:flex;flex-direction:column");
  box.innerHTML =
    '<div style="padding:8px 12px;background:#1f4e79;color:#fff;border-radius:8px 8px 0 0">Chat with us <span id="switchboard-chat-status" style="float:right;font-size:12px"></span></div>' +
    '<div id="switchboard-chat-log" role="log" aria-live="polite" style="height:260px;overflow-y:auto;padding:8px"></div>' +
    '<form id="switchboard-chat-form" style="display:flex;border-top:1px solid #eee">' +
    '<input id="switchboard-chat-input" aria-label="Message" autocomplete="off" style="flex:1;border:0;padding:8px" placeholder="Type a message">' +
    '<button type="submit" style="border:0;background:#1f4e79;color:#fff;padding:0 12px">Send</button></form>';
  document.body.appendChild(box);
  var log = box.querySelector("#switchboard-chat-log");
  var status = box.querySelector("#switchboard-chat-status");
  var input = box.querySelector("#switchboard-chat-input");

  function line(who, text) {
    var p = document.createElement("p");
    p.className = "switchboard-chat-" + who;
    p.style.margin = "4px 0";
    p.style.textAlign = who === "you" ? "right" : "left";
    p.textContent = text; // never innerHTML: messages are text
    log.appendChild(p);
    log.scrollTop = log.scrollHeight;
  }

  var ws;
  function connect() {
    ws = new WebSocket(wsUrl);
    ws.onopen = function () {
      status.textContent = "online";
      ws.send(JSON.stringify({ type: "join", address: address, name: name, resume: localStorage.getItem(storageKey) || undefined }));
    };
    ws.onmessage = function (event) {
      var msg = JSON.parse(event.data);
      if (msg.type === "joined") localStorage.setItem(storageKey, msg.contact);
      else if (msg.type === "message") line(msg.from === "agent" ? "agent" : "bot", (msg.from === "agent" ? msg.agent + ": " : "") + msg.text);
      else if (msg.type === "agent-joined") { status.textContent = "with " + msg.agent; line("info", msg.agent + " joined the chat"); }
      else if (msg.type === "queued") status.textContent = "waiting for an agent";
      else if (msg.type === "closed") { status.textContent = "closed"; localStorage.removeItem(storageKey); }
      else if (msg.type === "error") line("info", "(" + msg.message + ")");
    };
    ws.onclose = function () {
      status.textContent = "reconnecting";
      setTimeout(connect, 2000);
    };
  }
  box.querySelector("#switchboard-chat-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text || !ws || ws.readyState !== 1) return;
    ws.send(JSON.stringify({ type: "message", text: text }));
    line("you", text);
    input.value = "";
  });
  input.addEventListener("input", function () {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "typing" }));
  });
  connect();
})();
