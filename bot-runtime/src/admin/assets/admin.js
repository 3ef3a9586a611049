// The dashboard's live parts, hand-written, no third-party code; loaded from our origin (the
// Content-Security-Policy allows no inline script, nor inline style: only attributes and text
// change). Without it every page is still complete; it only saves a reload.
// * The overview: every 10 s, the same JSON the API serves (/api/v1/overview), written into
//   the elements marked data-live="<section>.<id>.<field>", the chart's bars (data-bar,
//   redrawn through their attributes) and its total.
// * The broadcasts page: every 2 s while a broadcast on it is running or scheduled, each row
//   (tr[data-broadcast]) from /api/v1/broadcasts: its bar, counts and state.
"use strict";
(function () {
  function age(now, at) {
    if (at === undefined || at === null) return "never";
    var minutes = Math.floor(Math.max(0, now - at) / 60000);
    if (minutes === 0) return "just now";
    if (minutes < 60) return minutes + " min ago";
    return Math.floor(minutes / 60) + " h ago";
  }
  function value(o, key) {
    var first = key.indexOf("."), last = key.lastIndexOf(".");
    var section = key.slice(0, first), field = key.slice(last + 1);
    if (section === "people") return o.people ? o.people[field] : undefined;
    var id = key.slice(first + 1, last);
    if (section === "plans") {
      // The 30 days' totals of one bot and plan ("<bot>|<plan>").
      var sum = 0;
      (o.revenue || []).forEach(function (r) { if (r.bot + "|" + r.plan === id) sum += r[field]; });
      return sum;
    }
    var by = section === "bots" ? "bot" : "pool";
    var rows = o[section] || [];
    for (var i = 0; i < rows.length; i++) {
      if (rows[i][by] !== id) continue;
      if (field === "star_balance_ms") return age(o.now_ms, rows[i][field]);
      if (field === "star_balance" && rows[i][field] === null) return "—";
      return rows[i][field];
    }
    return undefined;
  }
  function chart(o) {
    var days = o.daily || [], max = 1, total = 0;
    days.forEach(function (d) { max = Math.max(max, d.stars); total += d.stars; });
    days.forEach(function (d, i) {
      var bar = document.querySelector("[data-bar='" + i + "']");
      if (!bar) return;
      var h = Math.floor(d.stars * 96 / max);
      bar.setAttribute("y", String(100 - h));
      bar.setAttribute("height", String(h));
      var title = bar.querySelector("title");
      if (title) title.textContent = d.date + ": " + d.stars + " Stars";
    });
    var t = document.querySelector("[data-chart='total']");
    if (t) t.textContent = String(total);
    var svg = document.querySelector("svg.chart");
    if (svg) svg.setAttribute("aria-label", "Stars per day, " + total + " in total");
  }
  function get(path, then) {
    fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (o) { if (o) then(o); })
      .catch(function () {});
  }
  function overview() {
    get("/api/v1/overview", function (o) {
      document.querySelectorAll("[data-live]").forEach(function (el) {
        var v = value(o, el.getAttribute("data-live"));
        if (v !== undefined && v !== null) el.textContent = String(v);
      });
      chart(o);
    });
  }
  function set(row, name, text) {
    var el = row.querySelector("[data-" + name + "]");
    if (el) el.textContent = String(text);
  }
  // True while a row on the page may still move.
  function moving() {
    var live = false;
    document.querySelectorAll("tr[data-broadcast] [data-b='status']").forEach(function (el) {
      var s = el.textContent;
      if (s.indexOf("running") === 0 || s.indexOf("scheduled") === 0) live = true;
    });
    return live;
  }
  function broadcasts() {
    if (!moving()) return;
    get("/api/v1/broadcasts", function (o) {
      (o.broadcasts || []).forEach(function (b) {
        var row = document.querySelector("tr[data-broadcast='" + b.id + "']");
        if (!row) return;
        // As the page draws it: settled (delivered, failed, blocked) of the audience.
        var settled = b.delivered + b.failed + b.blocked, total = Math.max(b.total, b.queued);
        var bar = row.querySelector("progress");
        if (bar) {
          bar.setAttribute("max", String(Math.max(total, 1)));
          bar.setAttribute("value", String(settled));
          bar.textContent = settled + " of " + total;
        }
        set(row, "b='queued'", b.queued + " of " + total + " queued");
        ["delivered", "failed", "blocked"].forEach(function (k) { set(row, "outcome='" + k + "'", b[k]); });
        var state = row.querySelector("[data-b='status']");
        if (state && state.textContent.indexOf(b.status) !== 0) state.textContent = b.status;
        var cancel = row.querySelector("[data-b='cancel']");
        if (cancel && b.status !== "running" && b.status !== "scheduled") cancel.remove();
      });
    });
  }
  if (document.querySelector("[data-live], [data-bar]")) setInterval(overview, 10000);
  if (document.querySelector("tr[data-broadcast]")) setInterval(broadcasts, 2000);
})();
