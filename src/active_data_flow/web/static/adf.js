// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  // Ask before destructive form posts (forms carry data-confirm).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
  // Show times in the reader's own time zone, on hover.
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var when = new Date(el.getAttribute("datetime"));
    if (!isNaN(when)) el.title = when.toLocaleString();
  });
  // Pages showing a running run refresh themselves until it ends.
  var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (every > 0) {
    window.setTimeout(function () {
      var typing = /^(INPUT|TEXTAREA|SELECT)$/.test((document.activeElement || {}).tagName);
      if (!document.hidden && !typing) window.location.reload();
    }, every * 1000);
  }
})();
