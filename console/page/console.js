// The operators' and auditors' console. It keeps the admin token in this
// tab's sessionStorage only, sends it as a bearer token, and reads and
// acts through the admin API alone; the server checks every role and
// writes the audit log. Charts are inline SVG drawn here: no library.
"use strict";
(() => {
  const T = {
    ko: {
      title: "prereg 운영 콘솔", signin_help: "운영자 또는 감사자 토큰으로 로그인하세요. 토큰은 이 탭에만 보관됩니다.",
      token: "관리자 토큰", signin: "로그인", signout: "로그아웃", bad_token: "토큰이 맞지 않습니다.", expired: "다시 로그인하세요.",
      campaign: "캠페인", reopens: "재개 예정 (선택)", pause: "접수 일시 중지", resume: "접수 재개",
      readonly: "감사자 권한: 조회만 할 수 있습니다.", operator: "운영자", auditor: "감사자",
      tab_pipeline: "파이프라인", tab_held: "보류 검토", tab_allocation: "배정", tab_sms: "문자", tab_audit: "감사 로그",
      tab_receipt: "접수번호 조회", tab_report: "보고서", updated: "갱신", reasons: "사유별 결정", kind: "결정", reason: "사유", count: "건수",
      providers: "본인 인증 기관", runs: "배정 실행", window: "기간", policy: "방식", dry_run: "모의", state: "상태", progress: "진행", started: "시작",
      reload: "새로 고침", release_selected: "선택 승인", reject_selected: "선택 반려", held_help: "기기당 인원 초과 등으로 보류된 신청입니다. 기기는 가명 키로만 표시됩니다.",
      receipt: "접수번호", device: "기기 (가명)", same_device: "같은 기기", received: "접수", release: "승인", reject: "반려",
      dry_run_btn: "모의 배정", run_btn: "배정 실행", alloc_help: "먼저 모의 배정으로 결과를 확인한 뒤 같은 기간과 방식으로 실제 배정을 실행합니다.",
      appointment: "예약 번호", resend: "문자 재발송", at: "시각", role: "역할", token_id: "토큰 ID", action: "작업", target: "대상", outcome: "결과",
      lookup: "조회", report_help: "중복 제거 보고서: 아래는 결정 건수이며, 전체 보고서를 내려받을 수 있습니다 (HTML은 인쇄하여 PDF로 저장할 수 있습니다).",
      submissions: "신청", reviews: "보류 검토", r_pending: "대기", r_released: "승인", r_rejected: "반려",
      cancel: "취소", confirm: "확인", open_now: "접수 중", paused_until: "일시 중지: 재개 예정", paused_manual: "일시 중지: 재개 시까지",
      c_accepted: "접수 (초당)", c_shed: "과부하 거절 (초당)", c_limited: "요청 제한 (초당)", c_verify_lag: "인증 지연 (초)",
      c_verify_backlog: "인증 대기", c_dedupe_backlog: "중복 제거 대기", c_decided: "결정 (초당)", c_registered: "등록",
      c_duplicate: "중복", c_held: "보류 (검토 대기)", c_rejected: "반려", c_outbox: "문자 대기", c_delivered: "문자 도착 (초당)",
      c_appointments: "예약", total: "누계", error_rate: "오류율",
      o_pending: "대기", o_sent: "발송됨", o_delivered: "도착", o_failed: "실패",
      b_closed: "정상 (닫힘)", b_open: "차단 (열림)", "b_half-open": "시험 중 (반열림)", b_unknown: "알 수 없음",
      confirm_pause: "캠페인 {c}의 접수를 일시 중지합니까? 모든 접수 서버가 몇 초 안에 503으로 응답합니다.",
      confirm_resume: "캠페인 {c}의 접수를 재개합니까?", confirm_release: "{n}건을 승인합니까? 이미 등록된 사람은 다시 등록되지 않습니다.",
      confirm_reject: "{n}건을 반려합니까?", confirm_dry: "{c} / {w} 모의 배정을 실행합니까? 아무것도 기록되지 않습니다.",
      confirm_run: "{c} / {w} 배정을 실제로 실행합니까? 예약과 문자가 만들어집니다.", confirm_resend: "예약 {a}의 문자를 다시 보냅니까?",
      done: "완료", failed: "실패", running: "진행 중", none: "없음", not_found: "찾을 수 없습니다.", forbidden: "권한이 없습니다.",
      assigned: "배정", unassigned: "미배정", registrations: "대상 등록", run_id: "실행 번호", seconds: "소요 (초)",
      dry_done: "모의 배정 완료: 같은 조건으로 실제 배정을 실행할 수 있습니다.", resent: "재발송 요청됨: 버전",
      s_registered: "등록", s_duplicate: "중복", s_held: "보류", s_rejected: "반려", none_held: "검토할 보류 건이 없습니다.",
      operators_only: "운영자만 볼 수 있습니다.", unavailable: "아직 제공되지 않습니다.", read_errors: "읽지 못함:",
    },
    en: {
      title: "prereg console", signin_help: "Sign in with an operator or auditor token. It is kept in this tab only.",
      token: "Admin token", signin: "Sign in", signout: "Sign out", bad_token: "That token was not accepted.", expired: "Please sign in again.",
      campaign: "Campaign", reopens: "Reopens at (optional)", pause: "Pause intake", resume: "Resume intake",
      readonly: "Auditor: read only.", operator: "operator", auditor: "auditor",
      tab_pipeline: "Pipeline", tab_held: "Held review", tab_allocation: "Allocation", tab_sms: "SMS", tab_audit: "Audit log",
      tab_receipt: "Receipt", tab_report: "Report", updated: "Updated", reasons: "Decisions by reason", kind: "Decision", reason: "Reason", count: "Count",
      providers: "Identity providers", runs: "Allocation runs", window: "Window", policy: "Policy", dry_run: "Dry run", state: "State", progress: "Progress", started: "Started",
      reload: "Reload", release_selected: "Release selected", reject_selected: "Reject selected", held_help: "Submissions held for review, e.g. a device over the campaign's cap of people. Devices are shown by pseudonymous key only.",
      receipt: "Receipt", device: "Device (pseudonym)", same_device: "Same device", received: "Received", release: "Release", reject: "Reject",
      dry_run_btn: "Dry run", run_btn: "Run allocation", alloc_help: "Dry-run first and read the result, then run for real with the same window and policy.",
      appointment: "Appointment id", resend: "Resend SMS", at: "Time", role: "Role", token_id: "Token id", action: "Action", target: "Target", outcome: "Outcome",
      lookup: "Look up", report_help: "The dedupe report: its decision counts below, the whole report to download (print the HTML to save a PDF).",
      submissions: "Submissions", reviews: "Held review", r_pending: "pending", r_released: "released", r_rejected: "rejected",
      cancel: "Cancel", confirm: "Confirm", open_now: "open", paused_until: "paused, reopens at", paused_manual: "paused until resumed",
      c_accepted: "Accepted /s", c_shed: "Shed /s", c_limited: "Rate-limited /s", c_verify_lag: "Verify lag (s)",
      c_verify_backlog: "Waiting for verify", c_dedupe_backlog: "Waiting for dedupe", c_decided: "Decided /s", c_registered: "Registered",
      c_duplicate: "Duplicate", c_held: "Held (to review)", c_rejected: "Rejected", c_outbox: "SMS backlog", c_delivered: "SMS delivered /s",
      c_appointments: "Appointments", total: "total", error_rate: "error rate",
      o_pending: "pending", o_sent: "sent", o_delivered: "delivered", o_failed: "failed",
      b_closed: "closed", b_open: "open", "b_half-open": "half-open", b_unknown: "unknown",
      confirm_pause: "Pause intake for {c}? Every intake replica answers its submissions 503 within seconds.",
      confirm_resume: "Resume intake for {c}?", confirm_release: "Release {n} held submission(s)? A person already registered is not registered twice.",
      confirm_reject: "Reject {n} held submission(s)?", confirm_dry: "Dry-run the allocation of {c} / {w}? Nothing is written.",
      confirm_run: "Run the allocation of {c} / {w} for real? Appointments and SMS are created.", confirm_resend: "Resend the SMS of appointment {a}?",
      done: "done", failed: "failed", running: "running", none: "none", not_found: "Not found.", forbidden: "Not allowed for this role.",
      assigned: "Assigned", unassigned: "Unassigned", registrations: "Registrations", run_id: "Run", seconds: "Seconds",
      dry_done: "Dry run done: the same window and policy can now be run for real.", resent: "Resend requested: version",
      s_registered: "registered", s_duplicate: "duplicate", s_held: "held", s_rejected: "rejected", none_held: "No held submission to review.",
      operators_only: "Operators only.", unavailable: "Not available yet.", read_errors: "could not read:",
    },
  };
  const TOKEN_KEY = "prereg-admin-token";
  const LANG_KEY = "prereg-console-lang";
  const KEEP = 300;
  const SVG = "http://www.w3.org/2000/svg";

  let lang = localStorage.getItem(LANG_KEY) || ((navigator.language || "ko").toLowerCase().startsWith("ko") ? "ko" : "en");
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let role = "";
  let samples = [];
  let poller = 0;
  let tab = "pipeline";
  let dryDone = null; // {campaign, window, policy} of the last finished dry run
  let held = [];

  const $ = (id) => document.getElementById(id);
  const t = (k) => (T[lang] && T[lang][k]) || T.en[k] || k;
  // tp names a value the server sends (an outbox state, a breaker state) in
  // the page's language where the table has it, else as sent.
  const tp = (prefix, k) => (T[lang] && T[lang][prefix + k]) || T.en[prefix + k] || k;
  const fill = (s, vars) => s.replace(/\{(\w+)\}/g, (_, k) => String(vars[k]));
  const fmt = (n, digits) => (n === undefined || n === null || Number.isNaN(n)) ? "–" :
    Number(n).toLocaleString(lang === "ko" ? "ko-KR" : "en-GB", { maximumFractionDigits: digits === undefined ? 1 : digits });
  const time = (s) => s ? new Date(s).toLocaleString(lang === "ko" ? "ko-KR" : "en-GB") : "–";
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  };
  const campaign = () => $("campaign").value;
  const last = () => samples[samples.length - 1];

  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: "Bearer " + token }, cache: "no-store" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, opts);
    } catch (e) {
      return { status: 0, ok: false, data: null };
    }
    const ct = r.headers.get("Content-Type") || "";
    const data = ct.startsWith("application/json") ? await r.json().catch(() => null) : await r.blob();
    if (r.status === 401 && token) signOut(t("expired"));
    return { status: r.status, ok: r.ok, data };
  }

  function say(id, text, ok) {
    const m = $(id);
    m.textContent = text;
    m.className = "msg " + (ok ? "ok" : "err");
  }

  function failure(r) {
    if (r.status === 403) return t("forbidden");
    if (r.status === 404) return t("not_found");
    const d = r.data && (r.data.detail || r.data.message || r.data.error);
    return "HTTP " + r.status + (d ? ": " + d : "");
  }

  function confirmAction(text) {
    const d = $("confirm");
    $("confirm-text").textContent = text;
    d.returnValue = "";
    d.showModal();
    return new Promise((resolve) => d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true }));
  }

  // ---- sign-in ----
  async function signIn(tok) {
    token = tok;
    const r = await api("GET", "/admin/v1/whoami");
    if (!r.ok) {
      token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      say("signin-msg", t("bad_token"), false);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    role = r.data.role;
    document.body.dataset.role = role;
    $("who").textContent = t(role) + " · " + r.data.token_id;
    $("signin").hidden = true;
    $("app").hidden = false;
    $("signout").hidden = false;
    $("readonly").hidden = role === "operator";
    applyRole();
    samples = [];
    await poll();
    poller = setInterval(poll, 2000);
    showTab(tab);
  }

  function signOut(why) {
    clearInterval(poller);
    say("action-msg", "", true);
    dryDone = null;
    token = "";
    role = "";
    sessionStorage.removeItem(TOKEN_KEY);
    $("app").hidden = true;
    $("signout").hidden = true;
    $("signin").hidden = false;
    $("who").textContent = "";
    $("token").value = "";
    say("signin-msg", why || "", false);
  }

  // applyRole disables every action for an auditor; the server refuses
  // them anyway.
  function applyRole() {
    for (const b of document.querySelectorAll(".op")) {
      b.disabled = role !== "operator";
      if (role !== "operator") b.title = t("readonly");
    }
    if (role === "operator") updateAllocButtons();
  }

  // ---- pipeline ----
  async function poll() {
    const since = samples.length ? Date.parse(last().at) : 0;
    const r = await api("GET", "/admin/v1/pipeline" + (since ? "?since=" + since : ""));
    if (!r.ok || !r.data) return;
    samples = samples.concat(r.data.samples).slice(-KEEP);
    syncCampaigns();
    render();
  }

  function syncCampaigns() {
    const s = last();
    if (!s) return;
    const sel = $("campaign");
    const ids = Object.keys(s.campaigns).sort();
    const have = Array.from(sel.options).map((o) => o.value);
    if (ids.join() !== have.join()) {
      const cur = sel.value;
      sel.replaceChildren(...ids.map((id) => el("option", { value: id, text: id + (s.campaigns[id].name ? " — " + s.campaigns[id].name : "") })));
      if (ids.includes(cur)) sel.value = cur;
      fillWindows();
    }
  }

  function fillWindows() {
    const s = last();
    const c = s && s.campaigns[campaign()];
    const sel = $("alloc-window");
    const cur = sel.value;
    sel.replaceChildren(...((c && c.windows) || []).map((w) => el("option", { value: w.id, text: w.id + " (" + time(w.opens) + " – " + time(w.closes) + ")" })));
    if (Array.from(sel.options).some((o) => o.value === cur)) sel.value = cur;
    updateAllocButtons();
  }

  // spark draws a series as a small line chart.
  function spark(values) {
    const w = 200, h = 42, pad = 2;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    const vs = values.map((v) => (Number.isFinite(v) ? v : 0));
    const hi = Math.max(1e-9, ...vs);
    const n = Math.max(2, vs.length);
    const pts = vs.map((v, i) => [((i + (n - vs.length)) / (n - 1)) * w, h - pad - (v / hi) * (h - 2 * pad)]);
    const axis = document.createElementNS(SVG, "line");
    axis.setAttribute("class", "axis");
    axis.setAttribute("x1", "0"); axis.setAttribute("x2", String(w));
    axis.setAttribute("y1", String(h - pad)); axis.setAttribute("y2", String(h - pad));
    svg.append(axis);
    if (pts.length) {
      const line = pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
      const area = document.createElementNS(SVG, "polygon");
      area.setAttribute("class", "area");
      area.setAttribute("points", `${pts[0][0].toFixed(1)},${h - pad} ${line} ${pts[pts.length - 1][0].toFixed(1)},${h - pad}`);
      const pl = document.createElementNS(SVG, "polyline");
      pl.setAttribute("class", "line");
      pl.setAttribute("points", line);
      svg.append(area, pl);
    }
    const max = document.createElementNS(SVG, "text");
    max.setAttribute("x", "2"); max.setAttribute("y", "9");
    max.textContent = "max " + fmt(hi === 1e-9 ? 0 : hi);
    svg.append(max);
    return svg;
  }

  function card(id, label, series, value, sub, cls) {
    return el("div", { class: "card " + (cls || ""), id: "card-" + id },
      el("div", { class: "label", text: label }),
      el("div", { class: "value", id: "v-" + id, text: value }),
      el("div", { class: "sub", text: sub || "" }),
      spark(series));
  }

  const sum = (m) => Object.values(m || {}).reduce((a, b) => a + b, 0);
  const mix = (m, digits, prefix) => Object.entries(m || {}).filter(([, v]) => v > 0).sort().map(([k, v]) => tp(prefix || "", k) + " " + fmt(v, digits)).join(" · ");
  const parts = (...xs) => xs.filter((x) => x).join(" · ");

  function render() {
    const s = last();
    if (!s) return;
    const id = campaign();
    const cc = (x) => (x.campaigns && x.campaigns[id]) || { decisions: {}, reasons: {}, outbox: {} };
    const c = cc(s);
    $("updated").textContent = time(s.at);
    $("sample-errors").textContent = s.errors && s.errors.length ? t("read_errors") + " " + s.errors.join(", ") : "";
    const pause = c.pause;
    const ps = $("pause-state");
    ps.textContent = pause ? (pause.reopens_at ? t("paused_until") + " " + time(pause.reopens_at) : t("paused_manual")) : t("open_now");
    ps.className = "badge " + (pause ? "paused" : "running");
    const ser = (f) => samples.map(f);
    $("cards").replaceChildren(
      card("accepted", t("c_accepted"), ser((x) => (x.submits_per_s || {})["202"] || 0), fmt((s.submits_per_s || {})["202"] || 0),
        parts(mix(s.submits_per_s), t("total") + " " + fmt(s.accepted, 0))),
      card("shed", t("c_shed"), ser((x) => sum(x.shed_per_s)), fmt(sum(s.shed_per_s)), parts(mix(s.shed_per_s), t("total") + " " + fmt(s.shed, 0)), sum(s.shed_per_s) > 0 ? "warn" : ""),
      card("limited", t("c_limited"), ser((x) => sum(x.rate_limited_per_s)), fmt(sum(s.rate_limited_per_s)), parts(mix(s.rate_limited_per_s), t("total") + " " + fmt(s.rate_limited, 0))),
      card("verify-lag", t("c_verify_lag"), ser((x) => x.verify_lag_seconds), fmt(s.verify_lag_seconds), "", s.verify_lag_seconds > 60 ? "warn" : ""),
      card("verify-backlog", t("c_verify_backlog"), ser((x) => x.verify_backlog), fmt(s.verify_backlog, 0), ""),
      card("dedupe-backlog", t("c_dedupe_backlog"), ser((x) => x.dedupe_backlog), fmt(s.dedupe_backlog, 0), ""),
      card("decided", t("c_decided"), ser((x) => cc(x).decided_per_s || 0), fmt(c.decided_per_s || 0), t("total") + " " + fmt(c.decided || 0, 0)),
      card("registered", t("c_registered"), ser((x) => cc(x).decisions.registered || 0), fmt(c.decisions.registered || 0, 0), ""),
      card("duplicate", t("c_duplicate"), ser((x) => cc(x).decisions.duplicate || 0), fmt(c.decisions.duplicate || 0, 0), ""),
      card("held", t("c_held"), ser((x) => cc(x).held_pending || 0), fmt(c.held_pending || 0, 0), t("total") + " " + fmt(c.decisions.held || 0, 0), c.held_pending > 0 ? "warn" : ""),
      card("rejected", t("c_rejected"), ser((x) => cc(x).decisions.rejected || 0), fmt(c.decisions.rejected || 0, 0), ""),
      card("appointments", t("c_appointments"), ser((x) => cc(x).appointments || 0), fmt(c.appointments || 0, 0), ""),
      card("outbox", t("c_outbox"), ser((x) => cc(x).outbox.pending || 0), fmt(c.outbox.pending || 0, 0), mix(c.outbox, 0, "o_")),
      card("delivered", t("c_delivered"), ser((x) => cc(x).delivered_per_s || 0), fmt(c.delivered_per_s || 0), t("total") + " " + fmt(c.outbox.delivered || 0, 0)),
    );
    $("sms-cards").replaceChildren(
      card("sms-outbox", t("c_outbox"), ser((x) => cc(x).outbox.pending || 0), fmt(c.outbox.pending || 0, 0), mix(c.outbox, 0, "o_")),
      card("sms-delivered", t("c_delivered"), ser((x) => cc(x).delivered_per_s || 0), fmt(c.delivered_per_s || 0), t("total") + " " + fmt(c.outbox.delivered || 0, 0)),
    );
    $("reasons").tBodies[0].replaceChildren(...Object.entries(c.reasons || {}).sort().map(([k, n]) => {
      const [kind, reason] = k.split("/");
      return el("tr", {}, el("td", { text: t("s_" + kind) }), el("td", { text: reason || "–" }), el("td", { class: "num", text: fmt(n, 0) }));
    }));
    const provs = (s.providers || []).filter((p) => p.campaign === id);
    $("providers").replaceChildren(...provs.map((p) => {
      const series = ser((x) => ((x.providers || []).find((q) => q.campaign === p.campaign && q.name === p.name) || {}).error_rate || 0);
      return card("provider-" + p.name, p.name, series, tp("b_", p.state), t("error_rate") + " " + fmt(p.error_rate * 100) + " %", p.state === "open" ? "bad" : p.state === "half-open" ? "warn" : "");
    }));
    $("runs").tBodies[0].replaceChildren(...(s.runs || []).filter((r) => r.campaign === id).map((r) => el("tr", {},
      el("td", { text: String(r.id) }), el("td", { text: r.window }), el("td", { text: r.policy }),
      el("td", { text: r.dry_run ? "✓" : "" }), el("td", { text: t(r.state) }),
      el("td", {}, el("progress", { max: String(Math.max(1, r.total)), value: String(r.done) }), " " + fmt(r.done, 0) + " / " + fmt(r.total, 0)),
      el("td", { text: time(r.started_at) }))));
  }

  // ---- pause ----
  async function pauseIntake() {
    const id = campaign();
    if (!(await confirmAction(fill(t("confirm_pause"), { c: id })))) return;
    const v = $("reopens").value;
    const body = v ? { reopens_at: new Date(v).toISOString().replace(/\.\d+Z$/, "Z") } : {};
    const r = await api("POST", "/admin/v1/campaigns/" + encodeURIComponent(id) + "/pause", body);
    say("action-msg", r.ok ? t("pause") + ": " + id : failure(r), r.ok);
    poll();
  }

  async function resumeIntake() {
    const id = campaign();
    if (!(await confirmAction(fill(t("confirm_resume"), { c: id })))) return;
    const r = await api("POST", "/admin/v1/campaigns/" + encodeURIComponent(id) + "/resume");
    say("action-msg", r.ok ? t("resume") + ": " + id : failure(r), r.ok);
    poll();
  }

  // ---- held review ----
  async function loadHeld() {
    const r = await api("GET", "/admin/v1/held?campaign=" + encodeURIComponent(campaign()));
    const body = $("held").tBodies[0];
    if (!r.ok) {
      held = [];
      body.replaceChildren(el("tr", {}, el("td", { colspan: "8", text: r.status === 403 ? t("operators_only") : failure(r) })));
      $("held-count").textContent = "";
      return;
    }
    held = r.data.held || [];
    const perDevice = {};
    for (const h of held) perDevice[h.device_key] = (perDevice[h.device_key] || 0) + 1;
    $("held-count").textContent = fmt(held.length, 0);
    $("held-all").checked = false;
    if (!held.length) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: "8", text: t("none_held") })));
      return;
    }
    body.replaceChildren(...held.map((h) => {
      const rel = el("button", { type: "button", class: "op held-release", "data-receipt": h.receipt, text: t("release") });
      const rej = el("button", { type: "button", class: "op danger held-reject", "data-receipt": h.receipt, text: t("reject") });
      rel.addEventListener("click", () => review([h.receipt], "released"));
      rej.addEventListener("click", () => review([h.receipt], "rejected"));
      return el("tr", {},
        el("td", {}, el("input", { type: "checkbox", class: "held-pick", value: h.receipt, "aria-label": h.receipt })),
        el("td", {}, el("code", { text: h.receipt.slice(0, 12) + "…", title: h.receipt })),
        el("td", { text: h.window }), el("td", { text: h.reason }),
        el("td", {}, el("code", { text: h.device_key.slice(0, 12), title: h.device_key })),
        el("td", { class: "num", text: "×" + perDevice[h.device_key] }),
        el("td", { text: time(h.received_at) }),
        el("td", {}, rel, " ", rej));
    }));
    applyRole();
  }

  function picked() {
    return Array.from(document.querySelectorAll(".held-pick:checked")).map((c) => c.value);
  }

  // review acts on one held submission (its row's button) or on the
  // selected ones in bulk.
  async function review(receipts, verdict, bulk) {
    if (!receipts.length) return;
    const text = fill(t(verdict === "released" ? "confirm_release" : "confirm_reject"), { n: receipts.length });
    if (!(await confirmAction(text))) return;
    let r;
    if (!bulk) {
      r = await api("POST", "/admin/v1/held/" + encodeURIComponent(receipts[0]) + (verdict === "released" ? "/release" : "/reject"));
    } else {
      r = await api("POST", "/admin/v1/held/review", { campaign: campaign(), review: verdict, receipts, count: receipts.length });
    }
    say("action-msg", r.ok ? t(verdict === "released" ? "release" : "reject") + ": " + receipts.length : failure(r), r.ok);
    await loadHeld();
    poll();
  }

  // ---- allocation ----
  function updateAllocButtons() {
    const ready = dryDone && dryDone.campaign === campaign() && dryDone.window === $("alloc-window").value && dryDone.policy === $("alloc-policy").value;
    $("alloc-run").disabled = role !== "operator" || !ready;
  }

  async function allocate(dry) {
    const c = campaign(), w = $("alloc-window").value, policy = $("alloc-policy").value;
    if (!w) return;
    if (!(await confirmAction(fill(t(dry ? "confirm_dry" : "confirm_run"), { c, w })))) return;
    const r = await api("POST", "/admin/v1/allocations", { campaign: c, window: w, dry_run: dry, policy });
    if (!r.ok) {
      $("alloc-result").replaceChildren(el("p", { class: "msg err", text: failure(r) }));
      return;
    }
    const runID = r.data.run;
    let run;
    for (;;) {
      const s = await api("GET", "/admin/v1/allocations/" + runID);
      if (!s.ok) {
        $("alloc-result").replaceChildren(el("p", { class: "msg err", text: failure(s) }));
        return;
      }
      run = s.data;
      showRun(run);
      if (run.state !== "running") break;
      await new Promise((res) => setTimeout(res, 500));
    }
    if (run.state === "done" && dry) {
      dryDone = { campaign: c, window: w, policy };
      say("action-msg", t("dry_done"), true);
    } else {
      if (!dry) dryDone = null;
      say("action-msg", t("run_id") + " " + run.id + ": " + t(run.state), run.state === "done");
    }
    updateAllocButtons();
    poll();
  }

  function showRun(run) {
    const res = run.result || {};
    const row = (k, v) => el("tr", {}, el("th", { text: t(k) }), el("td", { text: v }));
    $("alloc-result").replaceChildren(el("table", { class: "kv", id: "alloc-table", "data-state": run.state, "data-dry": String(run.dry_run) }, el("tbody", {},
      row("run_id", String(run.id) + (run.dry_run ? " (" + t("dry_run") + ")" : "")),
      row("state", t(run.state) + (run.error ? ": " + run.error : "")),
      row("progress", fmt(run.done, 0) + " / " + fmt(run.total, 0)),
      row("registrations", fmt(res.registrations, 0)),
      row("assigned", fmt(res.assigned, 0)),
      row("unassigned", fmt(res.unassigned, 0) + (res.unassigned_by_reason ? " (" + mix(res.unassigned_by_reason, 0) + ")" : "")),
      row("seconds", fmt(res.seconds, 2)))));
  }

  // ---- SMS ----
  async function resend() {
    const a = parseInt($("sms-appointment").value, 10);
    if (!(a > 0)) return;
    if (!(await confirmAction(fill(t("confirm_resend"), { a })))) return;
    const r = await api("POST", "/admin/v1/outbox/resend", { appointment: a });
    say("sms-msg", r.ok ? t("resent") + " " + r.data.version : failure(r), r.ok);
    poll();
  }

  // ---- audit log ----
  async function loadAudit() {
    const r = await api("GET", "/admin/v1/audit?limit=200");
    const body = $("audit").tBodies[0];
    if (!r.ok) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: "7", text: failure(r) })));
      return;
    }
    body.replaceChildren(...(r.data.entries || []).map((e) => el("tr", { "data-action": e.action },
      el("td", { text: String(e.id) }), el("td", { text: time(e.at) }), el("td", { text: e.role }),
      el("td", {}, el("code", { text: e.token_id })), el("td", { text: e.action }),
      el("td", {}, el("code", { text: e.target })), el("td", { text: e.outcome || "…" }))));
  }

  // ---- receipt and report (the auditor's views) ----
  async function lookupReceipt(ev) {
    ev.preventDefault();
    const id = $("receipt-id").value.trim();
    const body = $("receipt-result").tBodies[0];
    body.replaceChildren();
    if (!id) return;
    const r = await api("GET", "/admin/v1/receipts/" + encodeURIComponent(id));
    if (!r.ok) {
      say("receipt-msg", r.status === 404 ? t("not_found") : failure(r), false);
      return;
    }
    say("receipt-msg", "", true);
    const rows = [];
    const walk = (prefix, v) => {
      if (v && typeof v === "object" && !Array.isArray(v)) {
        for (const [k, x] of Object.entries(v)) walk(prefix ? prefix + "." + k : k, x);
      } else {
        rows.push(el("tr", {}, el("th", { text: prefix }), el("td", {}, el("code", { text: Array.isArray(v) ? JSON.stringify(v) : String(v) }))));
      }
    };
    walk("", r.data);
    body.replaceChildren(...rows);
  }

  // loadReport shows the report's decision counts by kind and reason, the
  // same figures its downloads hold.
  async function loadReport() {
    const id = campaign();
    const body = $("report-totals").tBodies[0];
    const r = await api("GET", "/admin/v1/reports/dedupe?campaign=" + encodeURIComponent(id) + "&format=json");
    if (id !== campaign()) return;
    if (!r.ok || !r.data || !r.data.totals) {
      body.replaceChildren();
      $("report-summary").textContent = "";
      say("report-msg", failure(r), false);
      return;
    }
    say("report-msg", "", true);
    const tot = r.data.totals;
    const row = (kind, reason, n) => el("tr", { "data-kind": kind, "data-reason": reason }, el("td", { text: t("s_" + kind) }),
      el("td", { text: reason || "–" }), el("td", { class: "num", text: fmt(n, 0) }));
    const rows = [row("registered", "", tot.registered || 0)];
    for (const [kind, by] of [["duplicate", tot.duplicates], ["held", tot.held], ["rejected", tot.rejected]]) {
      for (const [reason, n] of Object.entries(by || {}).sort()) rows.push(row(kind, reason, n));
    }
    body.replaceChildren(...rows);
    const rv = r.data.reviews || {};
    $("report-summary").textContent = t("submissions") + " " + fmt(tot.submissions || 0, 0) + " · " + t("reviews") + ": " +
      ["pending", "released", "rejected"].map((k) => t("r_" + k) + " " + fmt(rv[k] || 0, 0)).join(", ");
  }

  async function downloadReport(format) {
    const id = campaign();
    const r = await api("GET", "/admin/v1/reports/dedupe?campaign=" + encodeURIComponent(id) + "&format=" + format);
    if (!r.ok) {
      say("report-msg", failure(r), false);
      return;
    }
    const blob = r.data instanceof Blob ? r.data : new Blob([JSON.stringify(r.data, null, 2)], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: "dedupe-" + id + "." + format });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    say("report-msg", "dedupe-" + id + "." + format, true);
  }

  // ---- tabs and language ----
  function showTab(name) {
    tab = name;
    for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
    for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== "tab-" + name;
    if (name === "held") loadHeld();
    if (name === "audit") loadAudit();
    if (name === "allocation") fillWindows();
    if (name === "report") loadReport();
  }

  function applyLang() {
    document.documentElement.lang = lang;
    for (const e of document.querySelectorAll("[data-t]")) e.textContent = t(e.dataset.t);
    document.title = t("title");
    $("lang").textContent = lang === "ko" ? "English" : "한국어";
    if (role) {
      $("who").textContent = t(role) + " · " + ($("who").textContent.split(" · ")[1] || "");
      render();
      if (tab === "held") loadHeld();
      if (tab === "report") loadReport();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    applyLang();
    $("lang").addEventListener("click", () => {
      lang = lang === "ko" ? "en" : "ko";
      localStorage.setItem(LANG_KEY, lang);
      applyLang();
    });
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      signIn($("token").value.trim());
    });
    $("signout").addEventListener("click", () => signOut(""));
    for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
    $("campaign").addEventListener("change", () => { fillWindows(); render(); if (tab === "held") loadHeld(); if (tab === "report") loadReport(); });
    $("pause").addEventListener("click", pauseIntake);
    $("resume").addEventListener("click", resumeIntake);
    $("held-reload").addEventListener("click", loadHeld);
    $("held-all").addEventListener("change", (ev) => { for (const c of document.querySelectorAll(".held-pick")) c.checked = ev.target.checked; });
    $("held-release-selected").addEventListener("click", () => review(picked(), "released", true));
    $("held-reject-selected").addEventListener("click", () => review(picked(), "rejected", true));
    $("alloc-dry").addEventListener("click", () => allocate(true));
    $("alloc-run").addEventListener("click", () => allocate(false));
    $("alloc-window").addEventListener("change", updateAllocButtons);
    $("alloc-policy").addEventListener("change", updateAllocButtons);
    $("sms-resend").addEventListener("click", resend);
    $("audit-reload").addEventListener("click", loadAudit);
    $("receipt-form").addEventListener("submit", lookupReceipt);
    $("report-reload").addEventListener("click", loadReport);
    for (const b of document.querySelectorAll("button.report")) b.addEventListener("click", () => downloadReport(b.dataset.format));
    if (token) signIn(token);
  });
})();
