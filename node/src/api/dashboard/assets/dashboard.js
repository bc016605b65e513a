// The dashboard's one script (node/src/api/dashboard/): shows times in the
// browser's zone, follows the node's event stream (docs/API.md, GET
// /v1/events) for the block height, and reloads a page when an event it
// shows arrives. Everything works without it, only not live.
"use strict";
(function () {
  for (const element of document.querySelectorAll("time[datetime]")) {
    const when = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) {
      element.title = element.getAttribute("datetime");
      element.textContent = when.toLocaleString();
    }
  }
  // A report's time zone: the browser's own, unless one was typed.
  for (const input of document.querySelectorAll("input[data-local-zone]")) {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && input.value === "UTC") {
      input.value = zone;
    }
  }
  const height = document.querySelector("[data-live=height]");
  const reloadOn = (document.body.dataset.reloadOn || "").split(" ").filter(Boolean);
  if (typeof EventSource !== "function") {
    return;
  }
  const events = new EventSource("/v1/events");
  let reloading = false;
  events.addEventListener("block", function (event) {
    try {
      const block = JSON.parse(event.data);
      if (height && typeof block.height === "number") {
        height.textContent = String(block.height);
      }
    } catch (_) {
      // A malformed event changes nothing on the page.
    }
    follow("block");
  });
  for (const name of ["clearing", "settlement"]) {
    events.addEventListener(name, function () {
      follow(name);
    });
  }
  function follow(name) {
    // Reload once, a moment after the event, unless the reader is typing.
    if (reloading || !reloadOn.includes(name)) {
      return;
    }
    const active = document.activeElement;
    if (active && active.tagName === "INPUT") {
      return;
    }
    reloading = true;
    events.close();
    window.setTimeout(function () {
      window.location.reload();
    }, 1000);
  }
})();
