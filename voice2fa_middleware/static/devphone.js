(function () {
  "use strict";
  var dev = document.getElementById("v2fa-dev");
  var list = document.getElementById("v2fa-calls");
  var speakButton = document.getElementById("v2fa-speak");
  var latest = null, spoken = "";
  function speak(call) {
    if (!call || !window.speechSynthesis) return;
    window.speechSynthesis.cancel();
    call.says.forEach(function (text) { window.speechSynthesis.speak(new SpeechSynthesisUtterance(text)); });
  }
  function render(calls) {
    list.textContent = "";
    calls.slice().reverse().forEach(function (call) {
      var li = document.createElement("li");
      var head = document.createElement("strong");
      head.textContent = "To " + call.to + " (" + (call.statuses[call.statuses.length - 1] || "queued") + ")";
      li.appendChild(head);
      var ul = document.createElement("ul");
      call.says.forEach(function (s) { var item = document.createElement("li"); item.textContent = s; ul.appendChild(item); });
      li.appendChild(ul);
      list.appendChild(li);
    });
    latest = calls.length ? calls[calls.length - 1] : null;
    if (latest && latest.done && latest.sid !== spoken) { spoken = latest.sid; speak(latest); }
  }
  function poll() {
    fetch(dev.getAttribute("data-calls-url"), {headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (data) { render(data.calls || []); })
      .finally(function () { window.setTimeout(poll, 1500); });
  }
  speakButton.addEventListener("click", function () { speak(latest); });
  poll();
})();
