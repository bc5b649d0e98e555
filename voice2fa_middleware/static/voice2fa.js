(function () {
  "use strict";
  var config = document.getElementById("v2fa-config");
  if (!config) return;
  var code = document.getElementById("v2fa-code");
  if (code) code.focus();
  var labels = {};
  try { labels = JSON.parse(config.getAttribute("data-labels") || "{}"); } catch (e) {}
  var statusText = document.getElementById("v2fa-status-text");
  var resend = document.getElementById("v2fa-resend");
  var wait = document.getElementById("v2fa-resend-wait");
  var template = wait ? wait.getAttribute("data-template") : "";
  var left = resend ? parseInt(resend.getAttribute("data-wait") || "0", 10) : 0;
  function tick() {
    if (!resend) return;
    if (left > 0) {
      resend.disabled = true;
      wait.textContent = template.replace("{s}", String(left));
      left -= 1;
      window.setTimeout(tick, 1000);
    } else {
      resend.disabled = false;
      wait.textContent = "";
    }
  }
  tick();
  var last = "";
  function poll() {
    fetch(config.getAttribute("data-status-url"), {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        var s = data.call_status || "";
        if (s !== last && labels[s]) { statusText.textContent = labels[s]; last = s; }
        if (typeof data.resend_in === "number" && data.resend_in > left + 1) { left = data.resend_in; tick(); }
        if (["completed", "busy", "no-answer", "failed", "canceled"].indexOf(s) === -1) window.setTimeout(poll, 2000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
