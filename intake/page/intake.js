// The citizen page's behaviour: submit an intent as JSON with an
// Idempotency-Key that stays the same across retries of one form fill, and
// look up a receipt. No external assets, no framework.
(function () {
  "use strict";
  var msg = JSON.parse(document.body.dataset.messages);

  function deviceID() {
    var id = localStorage.getItem("prereg-device");
    if (!id) {
      id = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now());
      localStorage.setItem("prereg-device", id);
    }
    return id;
  }
  function show(el, text, ok) {
    el.textContent = text;
    el.className = ok ? "ok" : "err";
  }
  function explain(status, body, retry) {
    var t = msg["e" + status] || msg.error;
    if (body && body.fields) {
      t += " " + Object.keys(body.fields).map(function (k) { return k + ": " + body.fields[k]; }).join("; ");
    }
    if (body && body.next_window) {
      t += " " + msg.next + " " + new Date(body.next_window.opens).toLocaleString() + " (" + body.next_window.digits.join(", ") + ")";
    }
    if (retry) { t += " " + msg.retry.replace("%s", retry); }
    return t;
  }

  var form = document.getElementById("submit");
  var key = null;
  if (form) {
    form.addEventListener("input", function () { key = null; });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var out = document.getElementById("submit-result");
      if (!key) { key = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()); }
      var body = { campaign: form.dataset.campaign, device_id: deviceID() };
      ["provider", "identity_token", "birthdate", "phone", "region", "clinic", "earliest"].forEach(function (n) {
        var v = form.elements[n].value.trim();
        if (v) { body[n] = v; }
      });
      show(out, msg.sending, true);
      fetch("/v1/intents", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify(body)
      }).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (b) {
          if (r.status === 202) {
            show(out, msg.accepted + " " + b.receipt, true);
            document.getElementById("receipt").value = b.receipt;
            document.getElementById("lookup-birthdate").value = body.birthdate || "";
          } else {
            show(out, explain(r.status, b, r.headers.get("Retry-After")), false);
          }
        });
      }).catch(function () { show(out, msg.network, false); });
    });
  }

  var lookup = document.getElementById("lookup");
  lookup.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var out = document.getElementById("lookup-result");
    var r = lookup.elements.receipt.value.trim();
    var b = lookup.elements.birthdate.value;
    fetch("/v1/intents/" + encodeURIComponent(r) + "?birthdate=" + encodeURIComponent(b)).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (res.status !== 200) { show(out, explain(res.status, body, res.headers.get("Retry-After")), false); return; }
        var t = msg["s_" + body.status] || body.status;
        if (body.reason) { t += " (" + (msg["r_" + body.reason] || body.reason) + ")"; }
        if (body.slot) { t += " — " + body.slot.clinic + ", " + body.slot.day + " " + (body.slot.time || ""); }
        show(out, t, true);
      });
    }).catch(function () { show(out, msg.network, false); });
  });
})();
