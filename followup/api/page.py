"""The web page served at ``GET /``: self-contained (no external assets), no data of its own.

It asks for the API token (kept in sessionStorage, this tab only), then lists studies and batches
through the API with that token; reports are fetched with the token and opened as blobs. The
application serves it with a Content-Security-Policy built from the hashes of its one <script>
and one <style> (no inline handlers or style attributes, so keep it that way when editing).
"""

PAGE_HTML = r"""
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>followup — cryoablation follow-up MRI</title>
<style>
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #1b1f24; }
h1 { font-size: 1.3em; margin: 0 0 .6em; }
h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
form, .bar { display: flex; gap: .5em; align-items: center; flex-wrap: wrap; }
input, select, button { font: inherit; padding: .25em .5em; }
table { border-collapse: collapse; width: 100%; margin-top: .5em; }
th, td { border-bottom: 1px solid #d0d7de; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.state-complete { color: #1a7f37; } .state-failed { color: #cf222e; } .state-deferred { color: #9a6700; }
#msg { min-height: 1.4em; color: #cf222e; margin: .5em 0; }
#msg.ok { color: #57606a; }
.hidden { display: none; }
progress { width: 12em; vertical-align: middle; }
button.link {
  background: none; border: none; color: #0969da; text-decoration: underline; cursor: pointer; padding: 0 .3em;
}
.muted { color: #57606a; }
</style>
</head>
<body>
<h1>followup — residual tumour after cryoablation</h1>

<form id="login">
  <label for="token">API token</label>
  <input id="token" type="password" autocomplete="off" size="40" required>
  <button type="submit">Connect</button>
</form>
<div id="session" class="bar hidden">
  <span class="muted">Connected (token kept in this tab only).</span>
  <button id="forget" type="button">Forget token</button>
  <label for="state">State</label>
  <select id="state">
    <option value="">all</option>
    <option>receiving</option><option>stable</option><option>baseline</option><option>analysing</option>
    <option>complete</option><option>deferred</option><option>failed</option>
  </select>
  <button id="refresh" type="button">Refresh</button>
</div>
<div id="msg" role="status"></div>

<section id="data" class="hidden">
  <h2>Studies</h2>
  <table>
    <thead><tr><th>Date</th><th>Accession</th><th>Role</th><th>State</th>
      <th>Residual-tumour probability</th><th>Algorithm</th><th>Reports</th></tr></thead>
    <tbody id="studies"></tbody>
  </table>
  <h2>Reanalysis batches</h2>
  <table>
    <thead><tr>
      <th>#</th><th>Created</th><th>Reason</th><th>Algorithm</th><th>Progress</th><th>By status</th>
    </tr></thead>
    <tbody id="batches"></tbody>
  </table>
</section>

<script>
"use strict";
(function () {
  var KEY = "followup.apiToken";
  var $ = function (id) { return document.getElementById(id); };

  function token() { return sessionStorage.getItem(KEY) || ""; }
  function say(text, ok) { $("msg").textContent = text || ""; $("msg").className = ok ? "ok" : ""; }

  function showSession(on) {
    $("login").classList.toggle("hidden", on);
    $("session").classList.toggle("hidden", !on);
    $("data").classList.toggle("hidden", !on);
    if (!on) { $("studies").replaceChildren(); $("batches").replaceChildren(); }
  }

  function api(path) {
    return fetch(path, { headers: { "Authorization": "Bearer " + token() }, cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { sessionStorage.removeItem(KEY); showSession(false); throw new Error("Token refused."); }
        if (!r.ok) { throw new Error("Request failed (HTTP " + r.status + ")."); }
        return r;
      });
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) { td.className = cls; }
    return td;
  }

  function pct(x) { return x == null ? "" : (100 * x).toFixed(0) + " %"; }

  function probability(a) {
    if (!a || a.probability == null) { return ""; }
    var s = pct(a.probability);
    if (a.interval_low != null && a.interval_high != null) {
      s += " (" + pct(a.interval_low) + "–" + pct(a.interval_high) + ")";
    }
    return s;
  }

  function openReport(path, button) {
    // Open the tab now (a user gesture), fill it once the authenticated fetch is done.
    var win = window.open("about:blank", "_blank");
    if (win) { try { win.opener = null; } catch (e) { /* ignore */ } }
    button.disabled = true;
    api(path).then(function (r) { return r.blob(); }).then(function (blob) {
      var url = URL.createObjectURL(blob);
      if (win) { win.location.href = url; }
      else {
        var a = document.createElement("a");
        a.href = url; a.target = "_blank"; a.rel = "noopener";
        document.body.appendChild(a); a.click(); a.remove();
      }
      setTimeout(function () { URL.revokeObjectURL(url); }, 120000);
    }).catch(function (err) {
      if (win) { win.close(); }
      say(err.message);
    }).finally(function () { button.disabled = false; });
  }

  function reportButton(uid, fmt) {
    var b = document.createElement("button");
    b.type = "button"; b.className = "link"; b.textContent = fmt.toUpperCase();
    b.addEventListener("click", function () {
      openReport("studies/" + encodeURIComponent(uid) + "/report." + fmt, b);
    });
    return b;
  }

  // Fill a table body with one row per item (rowOf appends the cells), or one "empty" line.
  function fillTable(id, rows, empty, columns, rowOf) {
    var body = $(id);
    body.replaceChildren();
    if (!rows.length) {
      var tr = document.createElement("tr"), td = cell(empty, "muted");
      td.colSpan = columns; tr.appendChild(td); body.appendChild(tr); return;
    }
    rows.forEach(function (item) {
      var tr = document.createElement("tr");
      rowOf(tr, item);
      body.appendChild(tr);
    });
  }

  function renderStudies(rows) {
    fillTable("studies", rows, "No study.", 7, function (tr, s) {
      var rep = s.reported_analysis, latest = s.latest_analysis;
      tr.appendChild(cell(s.study_date || ""));
      tr.appendChild(cell(s.accession_number || ""));
      tr.appendChild(cell(s.role));
      var state = s.state;
      if (latest && (!rep || latest.id !== rep.id)) { state += " · analysis " + latest.status; }
      tr.appendChild(cell(state, "state-" + s.state));
      tr.appendChild(cell(probability(rep), "num"));
      tr.appendChild(cell(rep ? rep.algorithm_version + " r" + rep.revision : ""));
      var td = document.createElement("td");
      if (rep) { td.appendChild(reportButton(s.study_uid, "html")); td.appendChild(reportButton(s.study_uid, "pdf")); }
      tr.appendChild(td);
    });
  }

  function renderBatches(rows) {
    fillTable("batches", rows, "No batch.", 6, function (tr, b) {
      var p = b.progress;
      tr.appendChild(cell(b.id, "num"));
      tr.appendChild(cell((b.created_at || "").replace("T", " ").slice(0, 16)));
      tr.appendChild(cell(b.reason));
      tr.appendChild(cell(b.algorithm_version));
      var td = document.createElement("td"), bar = document.createElement("progress");
      bar.max = Math.max(p.total, 1); bar.value = p.done;
      td.appendChild(bar);
      td.appendChild(document.createTextNode(" " + p.done + " / " + p.total));
      tr.appendChild(td);
      tr.appendChild(cell(Object.keys(p.by_status).sort().map(function (k) {
        return k + " " + p.by_status[k];
      }).join(", ")));
    });
  }

  function load() {
    if (!token()) { showSession(false); return; }
    showSession(true);
    var state = $("state").value;
    var q = state ? "?state=" + encodeURIComponent(state) : "";
    Promise.all([
      api("studies" + q).then(function (r) { return r.json(); }),
      api("batches").then(function (r) { return r.json(); })
    ]).then(function (res) {
      renderStudies(res[0]); renderBatches(res[1]);
      say("Updated " + new Date().toLocaleTimeString() + ".", true);
    }).catch(function (err) { say(err.message); });
  }

  $("login").addEventListener("submit", function (ev) {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    load();
  });
  $("forget").addEventListener("click", function () {
    sessionStorage.removeItem(KEY); showSession(false); say("Token forgotten.", true);
  });
  $("refresh").addEventListener("click", load);
  $("state").addEventListener("change", load);
  setInterval(function () { if (token() && !document.hidden) { load(); } }, 30000);
  load();
})();
</script>
</body>
</html>
"""
