(function () {
  "use strict";
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(s) {
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = s % 60;
    return h ? h + ":" + pad(m) + ":" + pad(rest) : m + ":" + pad(rest);
  }
  // An error page: count down to when trying again can work, then offer it.
  var box = document.getElementById("v2fa-wait");
  if (box) {
    var shown = document.getElementById("v2fa-wait-clock");
    var ready = document.getElementById("v2fa-wait-ready");
    var again = document.getElementById("v2fa-again");
    var end = Date.now() + parseInt(box.getAttribute("data-wait") || "0", 10) * 1000;
    if (again) {
      again.addEventListener("click", function (e) {
        if (again.getAttribute("aria-disabled") === "true") e.preventDefault();
      });
    }
    var countDown = function () {
      var rest = Math.max(0, Math.ceil((end - Date.now()) / 1000));
      if (rest > 0) {
        shown.textContent = shown.getAttribute("data-template").replace("{t}", clock(rest));
        if (again) again.setAttribute("aria-disabled", "true");
        window.setTimeout(countDown, ((end - Date.now()) % 1000 || 1000) + 5);
      } else {
        shown.hidden = true;
        ready.textContent = ready.getAttribute("data-text");
        if (again) again.removeAttribute("aria-disabled");
      }
    };
    countDown();
  }
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
  var templateOne = wait ? (wait.getAttribute("data-template-one") || template) : "";
  var left = resend ? parseInt(resend.getAttribute("data-wait") || "0", 10) : 0;
  function tick() {
    if (!resend) return;
    if (left > 0) {
      resend.disabled = true;
      wait.textContent = (left === 1 ? templateOne : template).replace("{s}", String(left));
      wait.classList.remove("v2fa-spent");
      left -= 1;
      window.setTimeout(tick, 1000);
    } else {
      // Hidden, not emptied: the line keeps its room, so nothing on the page moves.
      resend.disabled = false;
      resend.removeAttribute("aria-describedby");
      wait.classList.add("v2fa-spent");
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
        if (["completed", "busy", "no-answer", "failed", "canceled", "machine", "reported"].indexOf(s) === -1) window.setTimeout(poll, 2000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
