// The recovery codes page: "Print" prints the page (its print style hides everything but the codes).
// The button is hidden until this script runs, so a page without scripts offers only what works.
(function () {
  "use strict";
  var button = document.getElementById("v2fa-print");
  if (!button) return;
  button.hidden = false;
  button.addEventListener("click", function () { window.print(); });
})();
