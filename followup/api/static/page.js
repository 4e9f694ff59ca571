"use strict";
(function () {
  var KEY = "followup.apiToken", me = null;
  var $ = function (id) { return document.getElementById(id); };
  var routeSeq = 0, lastQuery = "", images = new Map(), searchTimer = null, searchSeq = 0;

  function token() { return sessionStorage.getItem(KEY) || ""; }
  function say(text, ok) { $("msg").textContent = text || ""; $("msg").className = ok ? "ok" : ""; }

  // --- DOM helpers (no innerHTML of data, no style attributes: the CSP forbids them) -----------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v == null || v === false) { return; }
      if (k === "text") { node.textContent = String(v); }
      else if (k === "class") { node.className = v; }
      else { node.setAttribute(k, v === true ? "" : String(v)); }
    });
    (children || []).forEach(function (c) {
      if (c == null || c === false) { return; }
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
    return node;
  }
  function facts(rows) {
    return el("dl", { class: "facts" }, rows.filter(function (r) { return r && r[1] != null && r[1] !== ""; })
      .map(function (r) { return el("div", {}, [el("dt", { text: r[0] }), el("dd", {}, [r[1]])]); }));
  }
  function table(head, rows, empty, cls) {
    var body = el("tbody");
    if (!rows.length) {
      body.appendChild(el("tr", {}, [el("td", { colspan: head.length, class: "muted", text: empty })]));
    }
    var labels = head.map(function (h) { return Array.isArray(h) ? h[0] : h; });
    rows.forEach(function (r) {  // each cell names its column (shown where a narrow screen stacks the cells)
      Array.prototype.forEach.call(r.children, function (c, i) { if (labels[i]) { c.setAttribute("data-label", labels[i]); } });
      body.appendChild(r);
    });
    return el("div", { class: "scroll" }, [el("table", { class: cls || null }, [
      el("thead", {}, [el("tr", {}, head.map(function (h) {
        return Array.isArray(h) ? el("th", { scope: "col", class: h[1] }, [h[0]]) : el("th", { scope: "col" }, [h]);
      }))]), body])]);
  }
  function td(content, cls) { return el("td", { class: cls || null }, [content == null ? "" : content]); }

  // --- formatting: ISO dates, UTC times, percentages ---------------------------------------------
  function isoDate(s) { return s ? String(s).slice(0, 10) : ""; }
  // "2026-01-25T15:34:03.123+00:00" -> "2026-01-25 15:34 UTC" (the registry's times are UTC, without offset)
  function isoTime(s) {
    var m = /^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d)(?::\d\d(?:\.\d+)?)?(Z|[+-]\d\d:?\d\d)?$/.exec(String(s || ""));
    if (!m) { return s ? String(s) : ""; }
    return m[1] + " " + m[2] + (!m[3] || m[3] === "Z" || /^[+-]00:?00$/.test(m[3]) ? " UTC" : " " + m[3]);
  }
  function pct(x) { return x == null ? "" : (100 * x).toFixed(0) + " %"; }
  // calm (green) only at <= 2 % (BI-RADS 3's limit); above it category 4 or 5: never reassuring
  function pclass(x) { return x == null ? "" : (x <= 0.02 ? "p-low" : (x <= 0.5 ? "p-mid" : "p-high")); }
  function probability(a) {
    if (!a || a.probability == null) { return el("span", { class: "muted", text: a ? "no probability" : "" }); }
    var parts = [el("span", { class: "nowrap", text: pct(a.probability) })];
    if (a.interval_low != null && a.interval_high != null) {
      parts.push(" ", el("span", { class: "ci-text", text: "(95 % interval " + pct(a.interval_low) + "–" + pct(a.interval_high) + ")" }));
    }
    return el("span", { class: "prob " + pclass(a.probability) }, parts);
  }
  function badge(state) { return el("span", { class: "badge state-" + state, text: state }); }
  function revisionLabel(a) { return a.algorithm_version + " r" + a.revision; }
  function roleLabel(role) { return role === "followup" ? "follow-up" : (role === "baseline" ? "baseline" : "role unknown"); }
  function bytes(n) { return n < 1024 ? n + " B" : (n < 1048576 ? (n / 1024).toFixed(0) + " kB" : (n / 1048576).toFixed(1) + " MB"); }
  function dicomName(n) { return n || "(no name)"; }

  // --- the API -------------------------------------------------------------------------------------
  function api(path, opts) {
    opts = opts || {};
    var headers = { "Authorization": "Bearer " + token() };
    if (opts.body) { headers["Content-Type"] = "application/json"; }
    return fetch(path, { method: opts.method || "GET", headers: headers, cache: opts.cache || "no-store",
      body: opts.body ? JSON.stringify(opts.body) : undefined })
      .then(function (r) {
        if (r.status === 401) { signOut("The token was refused. Sign in again."); throw new Error("Token refused."); }
        if (!r.ok) {
          return r.json().catch(function () { return {}; }).then(function (b) {
            throw new Error((b && typeof b.detail === "string" ? b.detail : "Request failed") + " (HTTP " + r.status + ").");
          });
        }
        return r;
      });
  }
  function getJSON(path, opts) { return api(path, opts).then(function (r) { return r.json(); }); }

  // Key images: fetched with the token (the browser's cache keeps them: the API marks them private and
  // immutable), shown from object URLs kept for the session.
  function image(url, caption) {
    var img = el("img", { alt: caption, width: 240, height: 240 });
    var fig = el("figure", {}, [img, el("figcaption", { text: caption })]);
    var cached = images.get(url);
    var got = cached ? Promise.resolve(cached) : api(url, { cache: "default" }).then(function (r) { return r.blob(); })
      .then(function (b) { var u = URL.createObjectURL(b); images.set(url, u); return u; });
    got.then(function (u) { img.removeAttribute("width"); img.removeAttribute("height"); img.src = u; })
      .catch(function () { fig.replaceChildren(el("p", { class: "muted", text: "Image unavailable: " + caption })); });
    return fig;
  }
  function download(file, button) {
    button.disabled = true;
    api(file.url).then(function (r) { return r.blob(); }).then(function (blob) {
      var u = URL.createObjectURL(blob), a = el("a", { href: u, download: file.name });
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(function () { URL.revokeObjectURL(u); }, 60000);
    }).catch(function (e) { say(e.message); }).finally(function () { button.disabled = false; });
  }

  // --- session --------------------------------------------------------------------------------------
  function showSession(on) {
    $("login").hidden = on; $("nav").hidden = !on; $("who").hidden = !on;
    if (!on) { me = null; $("signed-in-as").textContent = ""; $("view").replaceChildren(); return; }
    if (me) { return; }
    // who the token signs in as (GET /me): the name the "reviewed" marks carry
    getJSON("me").then(function (m) {
      me = m; $("signed-in-as").textContent = "Signed in as " + m.name + " (" + m.role + ")";
    }).catch(function () { /* a refused token signs out in api() */ });
  }
  function signOut(text) {
    sessionStorage.removeItem(KEY);
    images.forEach(function (u) { URL.revokeObjectURL(u); }); images.clear();
    showSession(false); say(text || "", !text);
    $("token").focus();
  }

  // --- views ------------------------------------------------------------------------------------------
  function render(seq, nodes, focus) {
    if (seq !== routeSeq) { return false; }
    $("view").replaceChildren.apply($("view"), nodes.filter(Boolean));
    if (focus !== false) { var h = $("view").querySelector("h2"); if (h) { h.tabIndex = -1; h.focus(); } }
    return true;
  }

  function patientRow(p) {
    return el("tr", {}, [
      td(el("a", { href: "#/patient/" + p.patient_ref, text: dicomName(p.name) })),
      td(p.patient_id, "nowrap"), td(isoDate(p.birth_date), "num"), td(String(p.n_studies), "num"),
      td(isoDate(p.last_study_date), "num"),
      td(p.latest_probability == null ? el("span", { class: "muted", text: "—" }) : el("span", {}, [
        probability({ probability: p.latest_probability }),
        el("span", { class: "small muted", text: " on " + isoDate(p.latest_probability_date) })])),
      td(p.accession_numbers.join(", "), "small hide-narrow")]);
  }
  function runSearch(input, results, count) {
    var q = input.value.trim(); lastQuery = q;
    clearTimeout(searchTimer);
    // the same query already shown: leave the list (and the reader's focus in it) alone
    if (results.firstChild && results.getAttribute("data-query") === q) { return Promise.resolve(); }
    var mine = ++searchSeq;
    return getJSON("patients/search", { method: "POST", body: { q: q, limit: 200 } }).then(function (rows) {
      // an older search answering late (one started while typing) never replaces a newer one's list
      if (mine !== searchSeq) { return; }
      results.setAttribute("data-query", q);
      count.textContent = rows.length + (rows.length === 1 ? " patient" : " patients") + (q ? " matching “" + q + "”" : "") + ".";
      results.replaceChildren(table(["Name", "Patient ID", "Birth date", "Studies", "Last study", "Latest probability",
        ["Accession numbers", "hide-narrow"]], rows.map(patientRow), q ? "No patient matches." : "No patient yet."));
    });
  }
  function viewPatients(args, seq) {
    var results = el("div"), count = el("p", { class: "muted", role: "status" });
    var input = el("input", { id: "q", type: "search", value: lastQuery, autocomplete: "off",
      placeholder: "name, patient ID or accession number" });
    var form = el("form", { class: "inline", role: "search", id: "search" }, [
      el("label", { for: "q", text: "Find a patient" }), input, el("button", { type: "submit", text: "Search" })]);
    form.addEventListener("submit", function (ev) { ev.preventDefault(); runSearch(input, results, count).catch(function (e) { say(e.message); }); });
    input.addEventListener("input", function () {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () { runSearch(input, results, count).catch(function (e) { say(e.message); }); }, 300);
    });
    return runSearch(input, results, count).then(function () {
      if (render(seq, [el("h2", { text: "Patients" }), form, count, results], false)) { input.focus(); }
    });
  }

  function procedureCard(p) {
    var l = p.lesion || {};
    var side = p.laterality === "L" ? "left" : (p.laterality === "R" ? "right" : p.laterality);
    var tumour = [l.diameter_mm != null ? l.diameter_mm + " mm" : "", l.histology, l.grade ? "grade " + l.grade : ""]
      .filter(Boolean).join(", ");
    var card = el("div", { class: "card" }, [facts([
      ["Procedure date", isoDate(p.procedure_date)], ["Breast", side], ["Tumour", tumour],
      ["In-situ component", l.dcis_component_pct != null ? l.dcis_component_pct + " %" : ""],
      ["In-situ grade", l.insitu_grade || "—"], ["Freeze–thaw cycles", p.freeze_thaw_cycles],
      ["Ablation margin", p.margin_mm != null ? p.margin_mm + " mm" : ""]])]);
    if (p.indication_notes && p.indication_notes.length) {
      card.appendChild(el("ul", { class: "warn", "aria-label": "Outside the indication" },
        p.indication_notes.map(function (n) { return el("li", { text: n }); })));
    }
    return card;
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var n = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { n.setAttribute(k, String(attrs[k])); });
    if (text != null) { n.textContent = text; }
    return n;
  }
  // Probabilities over time: each analysed follow-up's probability with its 95 % interval, the 2 %
  // line (BI-RADS 3's limit: above it category 4, tissue diagnosis) and the procedure dates.
  function plot(studies, procedures) {
    var pts = studies.filter(function (s) { return s.reported && s.reported.probability != null && s.study_date; })
      .map(function (s) { return { t: Date.parse(s.study_date), s: s, a: s.reported }; });
    if (!pts.length) { return el("p", { class: "muted", text: "No analysed follow-up yet: nothing to plot." }); }
    var W = 900, H = 280, L = 56, R = 24, T = 16, B = 44;
    var times = pts.map(function (p) { return p.t; });
    procedures.forEach(function (p) { times.push(Date.parse(p.procedure_date)); });
    var t0 = Math.min.apply(null, times), t1 = Math.max.apply(null, times), pad = Math.max((t1 - t0) * 0.06, 864e5 * 15);
    t0 -= pad; t1 += pad;
    var x = function (t) { return L + (W - L - R) * (t - t0) / (t1 - t0); };
    var y = function (p) { return T + (H - T - B) * (1 - p); };
    var g = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "plot", role: "img",
      "aria-label": "Residual-tumour probability of each follow-up over time" });
    [0, 0.25, 0.5, 0.75, 1].forEach(function (v) {
      g.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      g.appendChild(svg("text", { x: L - 8, y: y(v) + 4, "text-anchor": "end", class: "lab" }, (100 * v) + " %"));
    });
    g.appendChild(svg("line", { x1: L, x2: W - R, y1: y(0.02), y2: y(0.02), class: "threshold" }));
    procedures.forEach(function (p) {
      var px = x(Date.parse(p.procedure_date));
      g.appendChild(svg("line", { x1: px, x2: px, y1: T, y2: H - B, class: "proc" }));
      g.appendChild(svg("text", { x: px + 4, y: T + 12, class: "lab" }, "procedure " + isoDate(p.procedure_date)));
    });
    g.appendChild(svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
    g.appendChild(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
    g.appendChild(svg("polyline", { class: "line", points: pts.map(function (p) { return x(p.t) + "," + y(p.a.probability); }).join(" ") }));
    pts.forEach(function (p) {
      if (p.a.interval_low != null && p.a.interval_high != null) {
        g.appendChild(svg("line", { x1: x(p.t), x2: x(p.t), y1: y(p.a.interval_low), y2: y(p.a.interval_high), class: "ci" }));
      }
      var c = svg("circle", { cx: x(p.t), cy: y(p.a.probability), r: 5, class: "pt" });
      c.appendChild(svg("title", {}, isoDate(p.s.study_date) + ": " + pct(p.a.probability)));
      g.appendChild(c);
      g.appendChild(svg("text", { x: x(p.t), y: H - B + 18, "text-anchor": "middle", class: "lab" }, isoDate(p.s.study_date)));
      g.appendChild(svg("text", { x: x(p.t) + 8, y: y(p.a.probability) - 8 }, pct(p.a.probability)));
    });
    return el("div", {}, [g, el("div", { class: "legend" }, [
      el("span", {}, [el("span", { class: "key" }), "probability (vertical bar: 95 % interval)"]),
      el("span", {}, [el("span", { class: "key threshold" }), "2 %: above it, BI-RADS 4"]),
      el("span", {}, [el("span", { class: "key proc" }), "cryoablation"])])]);
  }

  // Issue 14's comparison, once the newest report carries one: the ablation zone's volume at each time
  // point against months since the procedure (it should shrink), with the trend and its reason.
  function volumePlot(lg) {
    var pts = (lg.time_points || []).filter(function (t) { return t.zone_volume_ml != null && t.months_since_procedure != null; });
    var head = el("p", {}, [el("strong", { text: "Trend: " + (lg.trend || "not determined") }),
      lg.trend_reason ? " — " + lg.trend_reason : ""]);
    if (!pts.length) { return el("div", {}, [head]); }
    var W = 900, H = 240, L = 56, R = 24, T = 16, B = 44;
    var m1 = Math.max.apply(null, pts.map(function (p) { return p.months_since_procedure; })) || 1;
    var v1 = Math.max.apply(null, pts.map(function (p) { return p.zone_volume_ml; })) * 1.15 || 1;
    var x = function (m) { return L + (W - L - R) * m / (m1 * 1.06); };
    var y = function (v) { return T + (H - T - B) * (1 - v / v1); };
    var g = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "plot", role: "img",
      "aria-label": "Ablation zone volume at each follow-up against months since the procedure" });
    [0, 0.5, 1].forEach(function (f) {
      g.appendChild(svg("line", { x1: L, x2: W - R, y1: y(f * v1), y2: y(f * v1), class: "grid" }));
      g.appendChild(svg("text", { x: L - 8, y: y(f * v1) + 4, "text-anchor": "end", class: "lab" }, (f * v1).toFixed(0) + " ml"));
    });
    g.appendChild(svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
    g.appendChild(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
    g.appendChild(svg("polyline", { class: "line", points: pts.map(function (p) {
      return x(p.months_since_procedure) + "," + y(p.zone_volume_ml); }).join(" ") }));
    pts.forEach(function (p) {
      var cx = x(p.months_since_procedure), cy = y(p.zone_volume_ml);
      var c = svg("circle", { cx: cx, cy: cy, r: p.current ? 6 : 5, class: "pt" });
      c.appendChild(svg("title", {}, isoDate(p.study_date) + ": " + p.zone_volume_ml.toFixed(1) + " ml"));
      g.appendChild(c);
      g.appendChild(svg("text", { x: cx + 8, y: cy - 8 }, p.zone_volume_ml.toFixed(1) + " ml" +
        (p.suspicious_foci ? ", " + p.suspicious_foci + " focus/foci" : "")));
      g.appendChild(svg("text", { x: cx, y: H - B + 18, "text-anchor": "middle", class: "lab" },
        p.months_since_procedure.toFixed(0) + " mo"));
    });
    return el("div", {}, [head, g]);
  }

  function studyCard(s) {
    var rep = s.reported, latest = s.latest;
    var analysis = "";
    if (latest) {
      analysis = revisionLabel(latest) + " · " + latest.status;
      if (rep && latest.id !== rep.id) { analysis += " (shown: " + revisionLabel(rep) + ")"; }
    }
    var head = el("h3", {}, [el("span", { class: "num", text: isoDate(s.study_date) || "no date" }),
      el("span", { text: roleLabel(s.role) }), s.state === s.role ? null : badge(s.state)]);
    var card = el("article", { class: "card study " + s.role, "aria-label": "Study of " + (isoDate(s.study_date) || "unknown date") }, [
      head, facts([["Accession", s.accession_number], ["Days since procedure", s.days_since_procedure],
        ["Residual-tumour probability", rep ? probability(rep) : null], ["Analysis", analysis],
        ["Trend", s.trend], ["Revisions", s.revisions.length > 1 ? String(s.revisions.length) : null],
        ["Note", s.reason]])]);
    if (s.recommendations.length) {
      card.appendChild(el("ul", { class: "recs", "aria-label": "Recommendations" },
        s.recommendations.map(function (r) { return el("li", { text: r }); })));
    }
    if (s.key_images.length) {
      card.appendChild(el("div", { class: "images" }, s.key_images.map(function (k) { return image(k.url, k.caption); })));
    }
    if (rep && rep.has_report) {
      card.appendChild(el("p", {}, [el("a", { href: "#/report/" + rep.id, text: "Open the report (" + revisionLabel(rep) + ")" })]));
    }
    return card;
  }
  function viewPatient(args, seq) {
    return getJSON("patients/" + encodeURIComponent(args[0] || "")).then(function (p) {
      render(seq, [
        el("p", { class: "crumbs" }, [el("a", { href: "#/patients", text: "← Patients" })]),
        el("h2", { text: dicomName(p.name) }),
        facts([["Patient ID", p.patient_id], ["Birth date", isoDate(p.birth_date)], ["Studies", String(p.studies.length)]]),
        el("section", {}, [el("h3", { text: "Procedure record" })].concat(p.procedures.length ? p.procedures.map(procedureCard)
          : [el("p", { class: "muted", text: "No procedure record: follow-ups stay deferred until one is added." })])),
        el("section", {}, [el("h3", { text: "Residual-tumour probability over time" }), plot(p.studies, p.procedures)]),
        p.longitudinal ? el("section", {}, [el("h3", { text: "Ablation zone over time (newest report's comparison)" }),
          volumePlot(p.longitudinal)]) : null,
        el("section", {}, [el("h3", { text: "Studies, oldest first" })].concat(p.studies.map(studyCard)))]);
    });
  }

  // The report's HTML (report-view: no script, its style attributes as data-style), placed in a shadow
  // root; its stylesheet and style attributes applied through the CSSOM, which the CSP allows.
  function showReport(host, view) {
    var doc = new DOMParser().parseFromString("<!DOCTYPE html><body>" + view.body, "text/html");
    var root = host.shadowRoot || host.attachShadow({ mode: "open" });
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(view.css.replace(/(^|[}\s,])body(?=\s*[{,])/g, "$1.report-body") + "\n.report-body{margin:0 auto}");
    root.adoptedStyleSheets = [sheet];
    var body = el("div", { class: "report-body" });
    Array.prototype.slice.call(doc.body.childNodes).forEach(function (n) { body.appendChild(document.adoptNode(n)); });
    body.querySelectorAll("[data-style]").forEach(function (n) {
      n.style.cssText = n.getAttribute("data-style"); n.removeAttribute("data-style");
    });
    root.replaceChildren(body);
  }
  function revisionRow(r, current) {
    return el("tr", {}, [
      td(r.id === current ? el("span", { text: revisionLabel(r) + " (shown)" }) :
        (r.has_report ? el("a", { href: "#/report/" + r.id, text: revisionLabel(r) }) : revisionLabel(r)), "nowrap"),
      td(badge(r.status)), td(probability(r)), td(r.batch_id ? el("a", { href: "#/batch/" + r.batch_id, text: "batch " + r.batch_id }) : "on arrival"),
      td(isoTime(r.finished_at || r.created_at), "num"), td(r.reason || "", "small")]);
  }
  function viewReport(args, seq) {
    return getJSON("analyses/" + encodeURIComponent(args[0] || "")).then(function (v) {
      var a = v.analysis, host = el("div", { class: "report-host" });
      var files = el("ul", { class: "downloads" }, v.files.map(function (f) {
        var b = el("button", { type: "button", text: f.description + " — " + f.name + " (" + bytes(f.size) + ")" });
        b.addEventListener("click", function () { download(f, b); });
        return el("li", {}, [b]);
      }));
      var nodes = [
        el("p", { class: "crumbs" }, [el("a", { href: "#/patient/" + v.patient_ref, text: "← " + dicomName(v.patient_name) })]),
        el("h2", { text: "Report of the " + (isoDate(v.study_date) || "undated") + " study" }),
        v.viewer_url ? el("p", { class: "viewer-link" }, [el("a", { href: v.viewer_url, target: "_blank",
          rel: "noopener noreferrer", text: "Open the study in the image viewer" })]) : null,
        facts([["Algorithm", (v.algorithm_name ? v.algorithm_name + " " : "") + a.algorithm_version],
          ["Revision", a.revision + (v.supersedes_revision ? " (supersedes revision " + v.supersedes_revision + ")" : "")],
          ["Status", badge(a.status)], ["Residual-tumour probability", probability(a)],
          ["Report made", isoTime(v.report_created)], ["Accession", v.accession_number]]),
        el("section", {}, [el("h3", { text: "Download" }), v.files.length ? files : el("p", { class: "muted", text: "No file." })]),
        el("section", {}, [el("h3", { text: "Revisions of this study" }),
          table(["Revision", "Status", "Probability", "Made by", "Finished", "Note"], v.revisions.map(function (r) { return revisionRow(r, a.id); }), "None.")]),
        el("section", {}, [el("h3", { text: "Report" }), host])];
      if (!render(seq, nodes)) { return; }
      if (!v.html_url) { host.replaceChildren(el("p", { class: "muted", text: "This analysis has no HTML report." })); return; }
      return getJSON(v.html_url).then(function (view) { showReport(host, view); });
    });
  }

  function batchKind(b) { return b.selector && b.selector["import"] ? "import" : "reanalysis"; }
  function batchRow(b) {
    var p = b.progress, bar = el("progress", { max: Math.max(p.total, 1), value: p.done });
    return el("tr", {}, [
      td(el("a", { href: "#/batch/" + b.id, text: "Batch " + b.id }), "nowrap"), td(batchKind(b)),
      td(isoTime(b.created_at), "num"), td(b.reason || ""), td(b.algorithm_version), td(el("span", {}, [bar, " " + p.done + " / " + p.total]), "nowrap"),
      td(Object.keys(p.by_status).sort().map(function (k) { return k + " " + p.by_status[k]; }).join(", "), "small")]);
  }
  function viewBatches(args, seq) {
    return getJSON("batches").then(function (rows) {
      render(seq, [el("h2", { text: "Reanalysis batches" }),
        el("p", { class: "muted", text: "Open a batch to review the results that changed." }),
        table(["Batch", "Kind", "Created", "Reason", "Algorithm", "Progress", "By status"], rows.map(batchRow), "No batch.")]);
    });
  }
  function sideCell(x, withLink) {
    var parts = [probability(x), el("div", { class: "what", text: revisionLabel(x) + " · " + x.status })];
    var codes = x.recommendations.length ? x.recommendations : ["none"];
    parts.push(el("div", { class: "what" }, ["Recommendations: "].concat(codes.map(function (c, i) {
      return el("span", { class: "nowrap", text: c + (i < codes.length - 1 ? ", " : "") });
    }))));
    if (x.trend) { parts.push(el("div", { class: "what", text: "Trend: " + x.trend })); }
    parts.push(el("a", { href: "#/report/" + x.analysis_id, class: "small", text: withLink }));
    return el("td", { class: "side" }, parts);
  }
  function reviewCell(batchId, c, row) {
    var cell = el("td");
    function showMark(m) {
      row.classList.add("reviewed");
      cell.replaceChildren(el("span", { class: "reviewed-mark", text: "✓ Reviewed" }),
        el("div", { class: "small", text: "by " + m.reviewed_by + ", " + isoTime(m.reviewed_at) }));
    }
    if (c.review) { showMark(c.review); return cell; }
    var b = el("button", { type: "button", text: "Mark reviewed",
      "aria-label": "Mark the change of " + dicomName(c.patient_name) + ", " + isoDate(c.study_date) + " reviewed" });
    b.addEventListener("click", function () {
      b.disabled = true;
      getJSON("batches/" + batchId + "/changes/" + c.new.analysis_id + "/review",
        { method: "POST", body: {} })
        .then(function (m) { showMark(m); say("Marked reviewed.", true); cell.tabIndex = -1; cell.focus(); })
        .catch(function (e) { b.disabled = false; say(e.message); });
    });
    cell.appendChild(b);
    return cell;
  }
  function viewBatch(args, seq) {
    var id = encodeURIComponent(args[0] || "");
    return getJSON("batches/" + id + "/changes").then(function (v) {
      var b = v.batch, p = b.progress;
      var rows = v.changes.map(function (c) {
        var row = el("tr", { class: "change" });
        [td(el("span", {}, [el("a", { href: "#/patient/" + c.patient_ref, text: dicomName(c.patient_name) }),
          el("div", { class: "small muted", text: c.patient_id })])),
          td(isoDate(c.study_date), "num"), td(c.accession_number, "hide-narrow"),
          td(el("ul", { class: "recs" }, c.reasons.map(function (r) { return el("li", { text: r }); }))),
          sideCell(c.old, "earlier report"), sideCell(c.new, "new report"), reviewCell(b.id, c, row)]
          .forEach(function (cell) { row.appendChild(cell); });
        return row;
      });
      var reviewed = v.changes.filter(function (c) { return c.review; }).length;
      render(seq, [
        el("p", { class: "crumbs" }, [el("a", { href: "#/batches", text: "← Reanalysis batches" })]),
        el("h2", { text: "Batch " + b.id + " (" + batchKind(b) + "): results that changed" }),
        facts([["Reason", b.reason || "—"], ["Created", isoTime(b.created_at)], ["Algorithm", b.algorithm_version],
          ["Progress", p.done + " of " + p.total + " done"]]),
        facts([["Changed: to review", v.changes.length + " (" + reviewed + " reviewed)"], ["Unchanged", String(v.unchanged)],
          ["First result (nothing to compare)", String(v.first_analyses)], ["Not finished", String(v.unfinished)]]),
        el("p", { class: "muted small", text: "Listed: results whose probability moved by " + v.threshold_points +
          " points or more, or whose status, recommendations or trend changed, beside the study's previous result." }),
        table(["Patient", "Study date", ["Accession", "hide-narrow"], "What changed", "Before", "After", "Reviewed"], rows,
          "No result of this batch changed enough to review.", "changes stack")]);
    });
  }

  function studyRow(s) {
    var rep = s.reported_analysis, latest = s.latest_analysis;
    var state = [badge(s.state)];
    if (latest && (!rep || latest.id !== rep.id)) { state.push(el("div", { class: "small muted", text: "analysis " + latest.status })); }
    return el("tr", {}, [
      td(isoDate(s.study_date), "num"), td(el("a", { href: "#/patient/" + s.patient_ref, text: "patient " + s.patient_ref })),
      td(s.accession_number), td(roleLabel(s.role)), td(el("span", {}, state)), td(probability(rep)),
      td(rep ? el("a", { href: "#/report/" + rep.id, text: revisionLabel(rep) }) : "", "nowrap")]);
  }
  function viewStudies(args, seq) {
    var state = args[0] || "";
    var select = el("select", { id: "state" }, ["", "receiving", "stable", "baseline", "analysing", "complete", "deferred",
      "failed", "quarantined", "objects-only"].map(function (s) { return el("option", { value: s, text: s || "all", selected: s === state }); }));
    select.addEventListener("change", function () { location.hash = "#/studies/" + select.value; });
    return getJSON("studies" + (state ? "?state=" + encodeURIComponent(state) : "")).then(function (rows) {
      render(seq, [el("h2", { text: "All studies" }),
        el("div", { class: "bar" }, [el("label", { for: "state", text: "State" }), select]),
        table(["Date", "Patient", "Accession", "Role", "State", "Probability", "Report"], rows.map(studyRow), "No study.")]);
    });
  }

  var VIEWS = { patients: viewPatients, patient: viewPatient, report: viewReport, batches: viewBatches,
    batch: viewBatch, studies: viewStudies };
  function route() {
    var parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    if (!token()) { showSession(false); return; }
    showSession(true);
    var name = VIEWS[parts[0]] ? parts[0] : "patients";
    document.querySelectorAll("#nav a").forEach(function (a) {
      var on = a.dataset.view === name || (a.dataset.view === "batches" && name === "batch") ||
        (a.dataset.view === "patients" && (name === "patient" || name === "report"));
      if (on) { a.setAttribute("aria-current", "page"); } else { a.removeAttribute("aria-current"); }
    });
    var seq = ++routeSeq;
    say("");
    $("view").replaceChildren(el("p", { class: "muted", text: "Loading…" }));
    VIEWS[name](parts.slice(1), seq).catch(function (e) {
      if (seq === routeSeq && token()) { $("view").replaceChildren(); say(e.message); }
    });
  }

  $("login").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var t = $("token").value.trim();
    if (!t) { say("Enter your token."); return; }
    sessionStorage.setItem(KEY, t);
    $("token").value = "";
    route();
  });
  $("forget").addEventListener("click", function () { signOut(); say("Signed out.", true); });
  $("refresh").addEventListener("click", route);
  window.addEventListener("hashchange", route);
  route();
})();
