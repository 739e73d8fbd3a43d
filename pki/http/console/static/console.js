// Device PKI console: the one script.  Every page works without it; it only turns the
// confirmation step of a change (a second page without JavaScript) into a dialog.
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var message = form.getAttribute("data-confirm");
  if (!message) {
    return;
  }
  event.preventDefault();
  if (!window.confirm(message)) {
    return;
  }
  var confirmed = document.createElement("input");
  confirmed.type = "hidden";
  confirmed.name = "confirm";
  confirmed.value = "yes";
  form.appendChild(confirmed);
  form.removeAttribute("data-confirm");
  form.submit();
});
