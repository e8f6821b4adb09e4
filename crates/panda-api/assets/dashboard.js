// Panda's dashboard: follows a running execution's log live (the same SSE stream as the CLI),
// keeps the newest line in view unless the reader has scrolled up, shows when a queued one
// starts, and shows the final state when the execution ends. Nothing else on the dashboard needs a script.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log) return;
  var following = true;
  log.addEventListener("scroll", function () {
    following = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  });
  function toBottom() {
    if (following) log.scrollTop = log.scrollHeight;
  }
  toBottom();
  var source = log.dataset.stream;
  if (!source || !window.EventSource) return;
  var base = source.split("?")[0];
  var after = null;
  var match = /after=(\d+)/.exec(source);
  if (match) after = match[1];

  function span(cls, text) {
    var s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  }
  function append(line) {
    var waiting = document.getElementById("no-output");
    if (waiting) waiting.remove();
    var row = document.createElement("div");
    row.className = "line " + line.stream;
    row.appendChild(span("n", String(line.seq + 1)));
    var at = new Date(line.at);
    row.appendChild(span("ts", isNaN(at) ? "" : at.toISOString().slice(11, 23)));
    if (line.stream === "stderr") row.appendChild(span("tag", "err"));
    row.appendChild(span("t", line.text.replace(/\n$/, "")));
    log.appendChild(row);
    after = String(line.seq);
  }
  function open() {
    var events = new EventSource(after === null ? base : base + "?after=" + after);
    events.addEventListener("log", function (event) {
      append(JSON.parse(event.data));
      toBottom();
    });
    events.addEventListener("status", function (event) {
      // Queued when the page was made, running now: say so (the end reloads the page).
      var status = JSON.parse(event.data).status;
      var shown = document.getElementById("status");
      var symbols = { queued: "\u25CB", running: "\u25CF" };
      if (!shown || !symbols[status]) return;
      var badge = span("status s-" + status, " " + status);
      var symbol = span("", symbols[status]);
      symbol.setAttribute("aria-hidden", "true");
      badge.insertBefore(symbol, badge.firstChild);
      shown.replaceChildren(badge);
    });
    events.addEventListener("end", function () {
      events.close();
      // The header (status, duration, exit code) changed: show the final page.
      window.location.reload();
    });
    events.onerror = function () {
      // Reconnect from the last line seen, not from where the page began.
      events.close();
      window.setTimeout(open, 2000);
    };
  }
  open();
})();
