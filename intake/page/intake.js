// The citizen page's behaviour: sign in with the identity provider (the
// token comes back in the URL fragment), pick region and clinic from the
// campaign's lists, submit the intent as JSON with an Idempotency-Key
// that stays the same until a final answer (kept in sessionStorage, so a
// double click or a reload is one submission), wait out a 503 or 429 by
// itself, look a receipt up, change the clinic, cancel. Every word comes
// from the server's message table (data-messages). No external assets,
// no framework; nothing here needs 'unsafe-inline' or eval.
(function () {
  "use strict";
  var body = document.body;
  var msg = JSON.parse(body.dataset.messages);
  var lang = body.dataset.lang || "ko";
  var mode = body.dataset.mode || "fcfs";
  var tz = body.dataset.tz || undefined;
  var session = window.sessionStorage;
  function $(id) { return document.getElementById(id); }
  function t(key) { return msg[key] || key; }

  function random() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    var a = new Uint32Array(4);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (x) { return x.toString(16); }).join("-");
  }
  function deviceID() {
    var id = localStorage.getItem("prereg-device");
    if (!id) { id = random(); localStorage.setItem("prereg-device", id); }
    return id;
  }
  function readJSON(key) {
    try { return JSON.parse(session.getItem(key) || "null"); } catch (e) { return null; }
  }
  function when(s) {
    var d = new Date(s);
    if (isNaN(d)) { return s; }
    try {
      return d.toLocaleString(lang === "ko" ? "ko-KR" : "en-GB", { timeZone: tz, year: "numeric", month: "short", day: "numeric", weekday: "short", hour: "2-digit", minute: "2-digit" });
    } catch (e) { return d.toLocaleString(); }
  }

  // say fills a result area: a box with a line, an optional receipt,
  // field errors and further lines. textContent only.
  function say(el, kind, text, opts) {
    opts = opts || {};
    while (el.firstChild) { el.removeChild(el.firstChild); }
    if (!text) { return; }
    var box = document.createElement("div");
    box.className = "box " + kind;
    var p = document.createElement("p");
    p.textContent = text;
    if (opts.receipt) {
      var r = document.createElement("span");
      r.className = "receipt";
      r.textContent = " " + opts.receipt;
      p.appendChild(r);
    }
    box.appendChild(p);
    if (opts.fields && opts.fields.length) {
      var ul = document.createElement("ul");
      ul.className = "fields";
      opts.fields.forEach(function (f) { var li = document.createElement("li"); li.textContent = f; ul.appendChild(li); });
      box.appendChild(ul);
    }
    (opts.lines || []).forEach(function (l) { var q = document.createElement("p"); q.textContent = l; box.appendChild(q); });
    el.appendChild(box);
  }

  function nextLines(n) {
    if (!n) { return []; }
    var out = [];
    if (n.start) { out.push(t("next_appointment") + " " + [n.clinic_name, n.address, when(n.start)].filter(Boolean).join(", ")); }
    if (n.round_at) { out.push(t("next_round") + " " + when(n.round_at)); }
    if (n.sms_from) { out.push(t("next_sms") + " " + when(n.sms_from) + " – " + when(n.sms_until)); }
    return out;
  }

  // explain puts a refusal into words: the code's message, each field's,
  // the next window, the wait.
  function explain(status, b, retry) {
    b = b || {};
    var text = msg["e_" + b.error] || msg.error;
    var fields = Object.keys(b.fields || {}).sort().map(function (k) { return msg["f_" + k] || msg.e_invalid; });
    var lines = [];
    if (b.next_window) { lines.push(t("next_window") + " " + when(b.next_window.opens)); }
    if (retry) { lines.push(t("retry_later").replace("%s", retry)); }
    return { text: text, fields: fields, lines: lines };
  }
  function answer(res) {
    return res.json().catch(function () { return {}; }).then(function (b) { return { status: res.status, body: b, retry: res.headers.get("Retry-After") }; });
  }

  // Field errors next to their fields, announced with the field.
  var form = $("submit");
  function clearFieldErrors() {
    if (!form) { return; }
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (el) { el.removeAttribute("aria-invalid"); });
    Array.prototype.forEach.call(form.querySelectorAll("span.err"), function (el) { el.textContent = ""; });
  }
  function showFieldErrors(fields) {
    var first = null;
    Object.keys(fields || {}).forEach(function (k) {
      var span = $("err-" + k), input = form.elements[k];
      if (span) { span.textContent = msg["f_" + k] || msg.e_invalid; }
      if (input && input.setAttribute) {
        input.setAttribute("aria-invalid", "true");
        if (!first) { first = input; }
      }
    });
    if (first) {
      if (first.id === "identity_token") { $("token-details").open = true; }
      first.focus();
    }
  }

  // Region and clinic lists: the server renders the regions (the page
  // works without the script); the campaign's lists replace them, and a
  // search box filters each.
  var clinicCache = {};
  function clinicsOf(campaign, region) {
    var k = campaign + "/" + region;
    if (!clinicCache[k]) {
      clinicCache[k] = fetch("/v1/campaigns/" + encodeURIComponent(campaign) + "/clinics?region=" + encodeURIComponent(region))
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (b) { return b && b.clinics ? b.clinics : null; })
        .catch(function () { delete clinicCache[k]; return null; });
    }
    return clinicCache[k];
  }
  function fillClinics(select, list, keep) {
    while (select.options.length > 1) { select.remove(1); }
    list.forEach(function (c) {
      var o = new Option(c.name + (c.address ? " — " + c.address : ""), c.id);
      select.add(o);
    });
    if (keep) { select.value = keep; }
  }
  function filterOptions(select, query) {
    var q = query.trim().toLowerCase();
    Array.prototype.forEach.call(select.options, function (o, i) {
      o.hidden = i > 0 && q !== "" && o.text.toLowerCase().indexOf(q) < 0;
    });
  }
  function searchable(searchID, select) {
    var box = $(searchID);
    if (!box) { return; }
    box.hidden = false;
    var label = document.querySelector("label[for=" + searchID + "]");
    if (label) { label.hidden = false; }
    box.addEventListener("input", function () { filterOptions(select, box.value); });
  }
  function wireClinicPicker(campaign, regionSel, clinicSel, countEl, clinicSearch) {
    function load(keep) {
      var code = regionSel.value;
      if (!code) { fillClinics(clinicSel, []); if (countEl) { countEl.textContent = ""; } return; }
      clinicsOf(campaign(), code).then(function (list) {
        fillClinics(clinicSel, list || [], keep);
        if (countEl) { countEl.textContent = list ? t("clinic_count").replace("%s", String(list.length)) : ""; }
        if (clinicSearch) { $(clinicSearch).value = ""; }
      });
    }
    regionSel.addEventListener("change", function () { load(""); });
    if (clinicSearch) { searchable(clinicSearch, clinicSel); }
    return load;
  }

  // Sign in with the provider: to its page with the campaign, this
  // browser's device id, where to come back and a state that only this
  // tab knows (login CSRF); back here with the token in the fragment.
  function signinReturn() {
    if (location.hash.indexOf("token=") < 0) { return; }
    var p = new URLSearchParams(location.hash.slice(1));
    history.replaceState(null, "", location.pathname + location.search);
    var pending = readJSON("prereg-signin-state");
    session.removeItem("prereg-signin-state");
    if (!pending || !p.get("state") || p.get("state") !== pending.state) {
      say($("submit-result"), "err", t("signin_failed"));
      return;
    }
    session.setItem("prereg-signin", JSON.stringify({ token: p.get("token"), provider: pending.provider, campaign: pending.campaign }));
  }
  function showSignin() {
    var s = readJSON("prereg-signin");
    var done = $("signin-done"), buttons = $("signin-buttons"), again = $("signin-again");
    if (s && form && s.campaign === form.dataset.campaign) {
      form.elements.provider.value = s.provider;
      form.elements.identity_token.value = s.token;
      done.textContent = t("signed_in") + " " + s.provider + " ✓";
      done.hidden = false; again.hidden = false; buttons.hidden = true;
    } else {
      done.hidden = true; again.hidden = true; buttons.hidden = false;
    }
  }

  if (form) {
    var campaign = form.dataset.campaign;
    signinReturn();
    var buttons = form.querySelectorAll("button.signin");
    if (buttons.length) { $("signin").hidden = false; }
    Array.prototype.forEach.call(buttons, function (b) {
      b.addEventListener("click", function () {
        var state = random();
        session.setItem("prereg-signin-state", JSON.stringify({ state: state, provider: b.dataset.provider, campaign: campaign }));
        var back = location.origin + location.pathname + "?lang=" + encodeURIComponent(lang) + "&campaign=" + encodeURIComponent(campaign);
        var q = new URLSearchParams({ campaign: campaign, device: deviceID(), redirect_uri: back, state: state, lang: lang });
        location.assign(b.dataset.login + (b.dataset.login.indexOf("?") < 0 ? "?" : "&") + q.toString());
      });
    });
    $("signin-again").addEventListener("click", function () {
      session.removeItem("prereg-signin");
      form.elements.identity_token.value = "";
      showSignin();
      var first = form.querySelector("button.signin");
      if (first) { first.focus(); }
    });
    showSignin();

    var regionSel = $("region");
    fetch("/v1/campaigns/" + encodeURIComponent(campaign) + "/regions").then(function (r) { return r.ok ? r.json() : null; }).then(function (b) {
      if (!b || !b.regions || !b.regions.length) { return; }
      var keep = regionSel.value;
      while (regionSel.options.length > 1) { regionSel.remove(1); }
      b.regions.forEach(function (r) { regionSel.add(new Option([r.sido, r.name].filter(Boolean).join(" "), r.code)); });
      regionSel.value = keep;
    }).catch(function () {});
    searchable("region-search", regionSel);
    var loadClinics = wireClinicPicker(function () { return campaign; }, regionSel, $("clinic"), $("clinic-count"), "clinic-search");
    if (regionSel.value) { loadClinics(""); }

    // One submission per form fill: the key is kept with a fingerprint of
    // the body until a final answer, so a double click, a reload or an
    // automatic retry sends the same key, and a changed form a new one.
    var busy = false, timer = null;
    var send = $("send"), out = $("submit-result"), wait = $("wait"), count = $("wait-count");
    function fingerprint(s) {
      if (!(window.crypto && crypto.subtle)) { return Promise.resolve(""); }
      return crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)).then(function (h) {
        return Array.prototype.map.call(new Uint8Array(h), function (x) { return ("0" + x.toString(16)).slice(-2); }).join("");
      });
    }
    function finish() {
      busy = false;
      send.disabled = false;
      session.removeItem("prereg-submit");
    }
    function post(payload, key) {
      send.disabled = true;
      wait.hidden = true;
      say(out, "ok", t("sending"));
      fetch("/v1/intents", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify(payload)
      }).then(answer).then(function (a) {
        if (a.status === 202) {
          finish();
          session.removeItem("prereg-signin");
          say(out, "ok", t("accepted"), { receipt: a.body.receipt, lines: nextLines(a.body.next).concat([t("keep_receipt")]) });
          $("receipt").value = a.body.receipt;
          $("lookup-birthdate").value = payload.birthdate || "";
          showSignin();
          return;
        }
        if (a.status === 503 || a.status === 429) {
          countdown(payload, key, parseInt(a.retry, 10), a.body);
          return;
        }
        finish();
        var e = explain(a.status, a.body, a.retry);
        say(out, "err", e.text, e);
        showFieldErrors(a.body.fields);
      }).catch(function () {
        busy = false;
        send.disabled = false;
        say(out, "err", t("network"));
      });
    }
    // countdown waits Retry-After plus a random share of it (up to half,
    // at most 30 s, so that everyone refused at once does not come back
    // at once), then sends the same submission with the same key. A
    // campaign paused by its operator says so, and when it reopens.
    function countdown(payload, key, retry, b) {
      var base = isNaN(retry) || retry < 1 ? 5 : Math.min(retry, 600);
      var left = Math.ceil(base + Math.random() * Math.min(Math.max(1, base / 2), 30));
      if (b && b.error === "paused") {
        say(out, "wait", t("e_paused"), { lines: b.reopens_at ? [t("reopens") + " " + when(b.reopens_at)] : [] });
      } else {
        say(out, "wait", t("wait_title"));
      }
      wait.hidden = false;
      function tick() {
        count.textContent = t("wait_count").replace("%s", String(left));
        if (left <= 0) { timer = null; post(payload, key); return; }
        left--;
        timer = setTimeout(tick, 1000);
      }
      tick();
    }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (busy) { return; }
      busy = true;
      send.disabled = true;
      clearFieldErrors();
      var payload = { campaign: campaign, device_id: deviceID() };
      ["provider", "identity_token", "birthdate", "phone", "region", "clinic", "earliest"].forEach(function (n) {
        var v = form.elements[n].value.trim();
        if (v) { payload[n] = v; }
      });
      var text = JSON.stringify(payload);
      fingerprint(text).then(function (fp) {
        var kept = readJSON("prereg-submit");
        var key = kept && fp && kept.fp === fp ? kept.key : random();
        if (fp) { session.setItem("prereg-submit", JSON.stringify({ key: key, fp: fp })); }
        post(payload, key);
      });
    });
  }

  // Look up, change, cancel: each with the receipt and the birth date.
  var lookup = $("lookup");
  var manage = $("manage"), manageOut = $("manage-result");
  var current = null;
  var changeRegion = $("change-region"), changeClinic = $("change-clinic");
  wireClinicPicker(function () { return current ? current.campaign : ""; }, changeRegion, changeClinic, null, null);
  function copyRegions() {
    var src = $("region");
    if (!src || changeRegion.options.length > 1) { return; }
    Array.prototype.forEach.call(src.options, function (o, i) { if (i > 0) { changeRegion.add(new Option(o.text, o.value)); } });
  }
  function check(keepManage) {
    var out = $("lookup-result");
    var r = lookup.elements.receipt.value.trim();
    var b = lookup.elements.birthdate.value;
    if (!keepManage) { say(manageOut, "", ""); }
    return fetch("/v1/intents/" + encodeURIComponent(r) + "?birthdate=" + encodeURIComponent(b)).then(answer).then(function (a) {
      if (a.status !== 200) {
        manage.hidden = true;
        var e = explain(a.status, a.body, a.retry);
        say(out, "err", e.text, e);
        return;
      }
      var s = a.body;
      var text = msg["s_" + s.status] || s.status;
      if (s.reason) { text += " (" + (msg["r_" + s.reason] || s.reason) + ")"; }
      var lines = nextLines(s.next);
      if (s.slot && !(s.next && s.next.start)) { lines.push(t("next_appointment") + " " + s.slot.clinic + ", " + s.slot.day + " " + (s.slot.time || "")); }
      say(out, "ok", text, { lines: lines });
      current = { receipt: r, birthdate: b, campaign: s.campaign || (form && form.dataset.campaign) || "" };
      manage.hidden = s.status === "cancelled" || s.status === "rejected";
      copyRegions();
    }).catch(function () { say(out, "err", t("network")); });
  }
  lookup.addEventListener("submit", function (ev) { ev.preventDefault(); check(false); });

  function act(method, path, payload, okText) {
    say(manageOut, "ok", t("sending"));
    return fetch("/v1/intents/" + encodeURIComponent(current.receipt) + path, {
      method: method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload)
    }).then(answer).then(function (a) {
      if (a.status === 200) {
        say(manageOut, "ok", okText);
        return check(true);
      }
      var e = explain(a.status, a.body, a.retry);
      say(manageOut, "err", e.text, e);
    }).catch(function () { say(manageOut, "err", t("network")); });
  }
  $("change").addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (!current) { return; }
    act("PATCH", "", { birthdate: current.birthdate, clinic: changeClinic.value }, t("changed"));
  });
  var confirmBox = $("cancel-confirm");
  $("cancel").addEventListener("click", function () {
    confirmBox.hidden = false;
    $("cancel-no").focus();
  });
  $("cancel-no").addEventListener("click", function () { confirmBox.hidden = true; $("cancel").focus(); });
  confirmBox.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") { confirmBox.hidden = true; $("cancel").focus(); }
  });
  $("cancel-yes").addEventListener("click", function () {
    if (!current) { return; }
    confirmBox.hidden = true;
    act("POST", "/cancel", { birthdate: current.birthdate }, t("cancelled"));
  });
})();
