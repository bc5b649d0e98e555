(function () {
  "use strict";
  var dev = document.getElementById("v2fa-dev");
  var list = document.getElementById("v2fa-calls");
  var speakButton = document.getElementById("v2fa-speak");
  var latest = null, spoken = "";
  // A code read one digit at a time ("1, 2, 3" or "1、2、3"): kept on one line.
  var codeRun = /[0-9](?:\s*[,、，]\s*[0-9](?![0-9]))+/g;
  function speak(call) {
    if (!call || !window.speechSynthesis) return;
    window.speechSynthesis.cancel();
    call.says.forEach(function (text) { window.speechSynthesis.speak(new SpeechSynthesisUtterance(text)); });
  }
  function localTime(at) {
    var when = new Date(at * 1000);
    var time = document.createElement("time");
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleTimeString();
    return time;
  }
  function said(text) {
    var li = document.createElement("li"), at = 0, run;
    codeRun.lastIndex = 0;
    while ((run = codeRun.exec(text)) !== null) {
      li.appendChild(document.createTextNode(text.slice(at, run.index)));
      var code = document.createElement("span");
      code.className = "v2fa-spoken-code";
      code.textContent = run[0];
      li.appendChild(code);
      at = run.index + run[0].length;
    }
    li.appendChild(document.createTextNode(text.slice(at)));
    return li;
  }
  function render(calls) {
    if (!calls.length) return;  // keep the page's own "no calls yet" line
    list.textContent = "";
    calls.slice().reverse().forEach(function (call) {  // the newest first, numbered as they happened
      var li = document.createElement("li");
      li.className = "v2fa-call";
      var head = document.createElement("p");
      head.className = "v2fa-call-head";
      var number = document.createElement("strong");
      number.textContent = "Call " + call.number;
      head.appendChild(number);
      if (call.at) { head.appendChild(document.createTextNode(" ")); head.appendChild(localTime(call.at)); }
      var to = document.createElement("span");
      to.textContent = " to " + call.to + " (" + (call.statuses[call.statuses.length - 1] || "queued") + ")";
      head.appendChild(to);
      li.appendChild(head);
      var ul = document.createElement("ul");
      call.says.forEach(function (s) { ul.appendChild(said(s)); });
      li.appendChild(ul);
      list.appendChild(li);
    });
    latest = calls[calls.length - 1];
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
