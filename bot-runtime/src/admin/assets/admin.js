// The overview's live numbers: every 10 s, the same JSON the API serves (/api/v1/overview),
// written into the elements marked data-live="<section>.<id>.<field>". Hand-written, no
// third-party code; loaded from our origin (the Content-Security-Policy allows no inline script).
"use strict";
(function () {
  function value(o, key) {
    var first = key.indexOf("."), last = key.lastIndexOf(".");
    var section = key.slice(0, first), field = key.slice(last + 1);
    if (section === "people") return o.people ? o.people[field] : undefined;
    var id = key.slice(first + 1, last), by = section === "bots" ? "bot" : "pool";
    var rows = o[section] || [];
    for (var i = 0; i < rows.length; i++) if (rows[i][by] === id) return rows[i][field];
    return undefined;
  }
  function refresh() {
    fetch("/api/v1/overview", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (o) {
        if (!o) return;
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var v = value(o, el.getAttribute("data-live"));
          if (v !== undefined && v !== null) el.textContent = String(v);
        });
      })
      .catch(function () {});
  }
  setInterval(refresh, 10000);
})();
