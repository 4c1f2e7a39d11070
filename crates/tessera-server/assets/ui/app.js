// Tessera's web UI: keeps pages live from server-sent events. Pages read without it; it only
// updates what the server rendered. Values from the server are set as text, never as HTML.
"use strict";
(function () {
  var TERMINAL = { finished: 1, failed: 1, cancelled: 1 };
  var KNOWN = { pending: 1, waiting: 1, ready: 1, running: 1, finished: 1, failed: 1, skipped: 1, cancelled: 1 };

  var TILE = { ".": "waiting", q: "queued", r: "reading", c: "computing", w: "writing", C: "cached", d: "delivered", f: "failed" };

  function word(s) { return KNOWN[s] ? s : "other"; }

  function badge(el, state) {
    if (!el) return;
    el.textContent = "";
    var b = document.createElement("span");
    b.className = "badge s-" + word(state);
    b.textContent = state;
    el.appendChild(b);
  }

  function cssEscape(s) { return window.CSS && CSS.escape ? CSS.escape(s) : s.replace(/["\\]/g, "\\$&"); }

  // Opens the definition a graph node links to (the link works without this too).
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    if (!id) return;
    var el = document.getElementById(id);
    if (el && el.tagName === "DETAILS") el.open = true;
    document.querySelectorAll("g.node.selected").forEach(function (g) { g.classList.remove("selected"); });
    if (id.indexOf("node-") === 0) {
      var g = document.querySelector('g.node[data-node="' + cssEscape(id.slice(5)) + '"]');
      if (g) g.classList.add("selected");
    }
  }
  window.addEventListener("hashchange", openTarget);

  function status(root, text) {
    var el = root.querySelector(".live-status");
    if (!el) {
      el = document.createElement("p");
      el.className = "live-status";
      el.setAttribute("role", "status");
      root.insertBefore(el, root.children[1] || null);
    }
    el.textContent = text;
  }

  // A row for a node that started after the page was rendered (same cells as the server's).
  function addRow(root, task, n) {
    var body = root.querySelector("table.nodes tbody");
    if (!body) return null;
    var tr = document.createElement("tr");
    tr.setAttribute("data-key", n.key);
    var code = document.createElement("code");
    code.textContent = n.key;
    cell(tr, code, "th");
    cell(tr, n.type || "");
    cell(tr, "").className = "state";
    cell(tr, "").className = "attempts";
    cell(tr, (n.started_at || "—").replace("T", " ")).className = "started";
    cell(tr, "").className = "took";
    cell(tr, "").className = "err";
    var a = document.createElement("a");
    a.href = "/ui/tasks/" + encodeURIComponent(task) + "/nodes/" + encodeURIComponent(n.key) + "/log";
    a.textContent = "log";
    cell(tr, a);
    body.appendChild(tr);
    return tr;
  }

  // The page's section `id` (made after the nodes table when the server did not render it).
  function sectionOf(root, id, title) {
    var section = root.querySelector("#" + id);
    if (section) return section;
    section = document.createElement("section");
    section.id = id;
    var h = document.createElement("h2");
    h.textContent = title;
    section.appendChild(h);
    var nodes = root.querySelector("#nodes");
    root.insertBefore(section, nodes ? nodes.nextSibling : null);
    return section;
  }

  // A box `<div class=kind data-kind=key><h3><code>key</code></h3>` at the end of section.
  function keyedBox(section, kind, key) {
    var box = document.createElement("div");
    box.className = kind;
    box.setAttribute("data-" + kind, key);
    var h3 = document.createElement("h3");
    var code = document.createElement("code");
    code.textContent = key;
    h3.appendChild(code);
    box.appendChild(h3);
    section.appendChild(box);
    return box;
  }

  // A loop's progress box for a loop that started after the page was rendered.
  function addLoop(root, l) {
    var box = keyedBox(sectionOf(root, "loops", "Loops"), "loop", l.key);
    var p = document.createElement("p");
    var bar = document.createElement("progress");
    p.appendChild(bar);
    p.appendChild(document.createTextNode(" "));
    var t = document.createElement("span");
    t.className = "loop-text";
    p.appendChild(t);
    box.appendChild(p);
    return box;
  }

  var SVG = "http://www.w3.org/2000/svg";

  // A raster job's box, for a job that started after the page was rendered.
  function addRaster(root, r) {
    var box = keyedBox(sectionOf(root, "rasters", "Rasters"), "raster", r.key);
    var p = document.createElement("p");
    p.className = "raster-text";
    box.appendChild(p);
    return box;
  }

  // The tile map as the server draws it (cells of 8 px), for a job whose first tile came
  // after the page was rendered.
  function drawTiles(box, r) {
    var cell = 8;
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "tile-map");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "tile map of " + r.key);
    svg.setAttribute("width", r.cols * cell);
    svg.setAttribute("height", r.rows * cell);
    svg.setAttribute("viewBox", "0 0 " + r.cols * cell + " " + r.rows * cell);
    for (var i = 0; i < r.cells.length; i++) {
      var rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", (i % r.cols) * cell);
      rect.setAttribute("y", Math.floor(i / r.cols) * cell);
      rect.setAttribute("width", cell - 1);
      rect.setAttribute("height", cell - 1);
      svg.appendChild(rect);
    }
    var text = box.querySelector(".raster-text");
    box.insertBefore(svg, text ? text.nextSibling : null);
  }

  function followTask(root) {
    var id = root.getAttribute("data-task");
    var source = new EventSource("/ui/tasks/" + encodeURIComponent(id) + "/live");
    var rows = {};
    root.querySelectorAll("tr[data-key]").forEach(function (tr) { rows[tr.getAttribute("data-key")] = tr; });
    var nodes = {};
    root.querySelectorAll("g.node[data-node]").forEach(function (g) { nodes[g.getAttribute("data-node")] = g; });
    var loops = {};
    root.querySelectorAll(".loop[data-loop]").forEach(function (l) { loops[l.getAttribute("data-loop")] = l; });
    source.addEventListener("open", function () { status(root, "Live: following the task."); });
    source.addEventListener("error", function () { status(root, "Connection lost; reconnecting…"); });
    source.addEventListener("gone", function () { source.close(); status(root, "The task is gone."); });
    source.addEventListener("state", function (e) {
      var s = JSON.parse(e.data);
      badge(document.getElementById("task-state"), s.state);
      var upd = document.getElementById("task-updated");
      if (upd && s.updated_at) upd.textContent = s.updated_at.replace("T", " ");
      var err = document.getElementById("task-error");
      if (err) { err.textContent = s.error || ""; err.hidden = !s.error; }
      s.nodes.forEach(function (n) {
        var tr = rows[n.key] || (rows[n.key] = addRow(root, id, n));
        if (!tr) return;
        badge(tr.querySelector(".state"), n.state);
        tr.querySelector(".attempts").textContent = n.attempts + (n.iterations > 1 ? " · " + n.iterations + " iterations" : "");
        tr.querySelector(".took").textContent = n.took;
        tr.querySelector(".err").textContent = n.error || "";
        var g = nodes[n.key];
        if (g) {
          g.setAttribute("data-state", word(n.state));
          var label = g.querySelector("text.state-label");
          if (label) label.textContent = n.label;
        }
      });
      s.loops.forEach(function (l) {
        var g = nodes[l.key];
        if (g) { var label = g.querySelector("text.state-label"); if (label) label.textContent = l.text; }
        var box = loops[l.key] || (loops[l.key] = addLoop(root, l));
        if (!box) return;
        var p = box.querySelector("progress");
        if (p) { if (l.items) p.max = l.items; p.value = l.done; }
        var t = box.querySelector(".loop-text");
        if (t) t.textContent = l.text;
      });
      (s.rasters || []).forEach(function (r) {
        var box = root.querySelector('.raster[data-raster="' + cssEscape(r.key) + '"]') || addRaster(root, r);
        if (!box.querySelector("svg.tile-map")) drawTiles(box, r);
        var rects = box.querySelectorAll("svg.tile-map rect");
        if (rects.length === r.cells.length) {
          for (var i = 0; i < rects.length; i++) rects[i].setAttribute("class", "t-" + (TILE[r.cells[i]] || "waiting"));
        }
        var t = box.querySelector(".raster-text");
        if (t) t.textContent = fmt(r.done) + " of " + fmt(r.total) + " tiles done";
      });
      if (TERMINAL[s.state]) {
        // The result and the actions are the server's to render: reload once.
        source.close();
        status(root, "The task is " + s.state + "; loading its final page…");
        setTimeout(function () { location.reload(); }, 300);
      }
    });
  }

  function followLog(pre) {
    var src = pre.getAttribute("data-src");
    var after = pre.getAttribute("data-after");
    var source = new EventSource(src + (after ? "?after=" + encodeURIComponent(after) : ""));
    source.addEventListener("line", function (e) {
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.appendChild(document.createTextNode(JSON.parse(e.data).text + "\n"));
      var empty = document.getElementById("log-empty");
      if (empty) empty.hidden = true;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("end", function () { source.close(); });
  }

  function cell(tr, text, tag) {
    var c = document.createElement(tag || "td");
    if (tag === "th") c.setAttribute("scope", "row");
    if (text instanceof Node) c.appendChild(text); else c.textContent = text;
    tr.appendChild(c);
    return c;
  }

  function fmt(n) { return (n || 0).toLocaleString("en-US"); }

  function followEngine(root) {
    var source = new EventSource("/ui/engine/live");
    source.addEventListener("open", function () { status(root, "Live: updated every two seconds."); });
    source.addEventListener("error", function () { status(root, "Connection lost; reconnecting…"); });
    source.addEventListener("engine", function (e) {
      var f = JSON.parse(e.data);
      root.querySelectorAll("dd[data-total]").forEach(function (dd) { dd.textContent = fmt(f.totals[dd.getAttribute("data-total")]); });
      root.querySelectorAll("dd[data-figure]").forEach(function (dd) { dd.textContent = fmt(f[dd.getAttribute("data-figure")]); });
      var body = document.getElementById("pipeline-rows");
      if (body) {
        body.textContent = "";
        Object.keys(f.pipelines).sort().forEach(function (name) {
          var tr = document.createElement("tr");
          var a = document.createElement("a");
          a.href = "/ui/pipelines/" + encodeURIComponent(name);
          a.textContent = name;
          cell(tr, a, "th");
          ["pending", "running", "finished", "failed", "cancelled"].forEach(function (s) { cell(tr, fmt(f.pipelines[name][s])); });
          body.appendChild(tr);
        });
      }
      var workers = document.getElementById("worker-rows");
      if (workers && f.workers.length) {
        workers.textContent = "";
        f.workers.forEach(function (w) {
          var tr = document.createElement("tr");
          var code = document.createElement("code");
          code.textContent = w.runner;
          cell(tr, code, "th");
          cell(tr, w.started_at); cell(tr, w.heartbeat_at); cell(tr, fmt(w.held)); cell(tr, w.leases_until || "—");
          cell(tr, JSON.stringify(w.pools));
          workers.appendChild(tr);
        });
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    openTarget();
    // `?live=off` freezes a page as it was served (for screenshots, or to read it quietly).
    if (/[?&]live=off\b/.test(location.search)) return;
    var task = document.querySelector(".task[data-live=on]");
    if (task && window.EventSource) followTask(task);
    var log = document.querySelector("pre.log[data-live=on]");
    if (log && window.EventSource) followLog(log);
    var engine = document.querySelector(".engine[data-live=on]");
    if (engine && window.EventSource) followEngine(engine);
  });
})();
