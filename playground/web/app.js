// The agent-iam playground: the page around the engine. Every decision, validation and test run is made by
// the Rust core compiled to WebAssembly (playground/src/, through wasm-bindgen); this file only reads the
// editors, calls the engine with JSON strings and shows its answers. No framework, no build step, nothing
// fetched but the page's own files.
import init, * as engine from './pkg/agent_iam_playground.js';

const $ = (id) => document.getElementById(id);
const DEBOUNCE_MS = 120;
const SAVE_MS = 300;
const STATE_VERSION = 1;

/** The request fields of the form: state key -> element id. */
const REQUEST_FIELDS = {
  method: 'req-method',
  path: 'req-path',
  host: 'req-host',
  time: 'req-time',
  headers: 'req-headers',
  peer_uri_san: 'req-peer-uri-san',
  peer_sha256: 'req-peer-sha256',
  envoy_route: 'req-envoy-route',
  envoy_route_tag: 'req-envoy-route-tag',
  mcp: 'req-mcp',
};

const ui = {
  examples: [],
  example: '',
  format: 'json',
  mode: 'claims',
  tab: 'decide',
  ready: false,
  decisions: 0,
  testRuns: 0,
  lastValidated: null, // {key, result}
  lastHash: '',
};

// ---------------------------------------------------------------------------------------------------------
// Calling the engine

/** Calls an exported function and parses its JSON answer; an exception becomes an error answer. */
function call(name, ...args) {
  try {
    const f = engine[name];
    if (typeof f !== 'function') {
      return { ok: false, errors: [{ path: '', message: `the engine has no function ${name}` }] };
    }
    return JSON.parse(f(...args));
  } catch (e) {
    return { ok: false, errors: [{ path: '', message: `the engine failed: ${e && e.message ? e.message : e}` }] };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Small DOM helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('data-')) node.setAttribute(k, String(v));
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** A body for display: pretty JSON if it is JSON, else the text. */
function prettyBody(text) {
  if (typeof text !== 'string' || text === '') return text || '';
  try {
    return pretty(JSON.parse(text));
  } catch {
    return text;
  }
}

/**
 * Shows a list of {path, message} errors in `node` (hidden when there are none). With `editor` (a textarea), a
 * path, or a message naming a line and column, is a button that selects that place in the editor.
 */
function showErrors(node, errors, editor = null) {
  clear(node);
  if (!errors || errors.length === 0) {
    node.hidden = true;
    return;
  }
  const list = el('ul');
  for (const e of errors) {
    const path = e && e.path ? e.path : '';
    const message = e && e.message !== undefined ? String(e.message) : String(e);
    const place = editor ? () => locate(editor.value, path, message) : null;
    let label = null;
    if (path && place) {
      label = el('button', { type: 'button', class: 'error-path', title: 'Show in the editor' }, path);
      label.addEventListener('click', () => reveal(editor, place()));
    } else if (path) {
      label = el('code', { class: 'error-path' }, path);
    }
    const item = el('li', { class: 'error-item', 'data-path': path }, label, label ? ': ' : null,
      el('span', { class: 'error-message' }, message));
    if (!path && place && place()) {
      const show = el('button', { type: 'button', class: 'error-where small' }, 'show');
      show.addEventListener('click', () => reveal(editor, place()));
      item.append(' ', show);
    }
    list.append(item);
  }
  node.append(list);
  node.hidden = false;
}

/** Selects [start, end) in a textarea and scrolls it into view. */
function reveal(editor, span) {
  if (!span) return;
  const [start, end] = span;
  editor.focus();
  editor.setSelectionRange(start, Math.max(start, end));
  const line = editor.value.slice(0, start).split('\n').length - 1;
  const lineHeight = parseFloat(getComputedStyle(editor).lineHeight) || 18;
  editor.scrollTop = Math.max(0, (line - 3) * lineHeight);
}

/**
 * Where an error is in the text: the value at `path` (`policy.rules[3].effect`) of a JSON document, or the
 * deepest part of the path that exists (the member a missing field belongs in); in YAML, the line of the path's
 * last key; else a "line L column C" the message names. [start, end) or null.
 */
function locate(text, path, message) {
  const segs = [];
  path.replace(/([^.[\]]+)|\[(\d+)\]/g, (m, key, index) => {
    segs.push(index !== undefined ? Number(index) : key);
    return m;
  });
  let found = null;
  if (segs.length && text.trimStart().startsWith('{')) {
    try {
      found = locateJson(text, segs);
    } catch {
      found = null;
    }
  }
  if (!found && segs.length) found = locateYaml(text, segs);
  if (!found) {
    const m = /line (\d+),? column (\d+)/.exec(message || '');
    if (m) {
      const lines = text.split('\n');
      const line = Math.min(Number(m[1]), lines.length);
      let offset = 0;
      for (let i = 0; i < line - 1; i++) offset += lines[i].length + 1;
      offset += Math.max(0, Number(m[2]) - 1);
      found = [offset, Math.min(text.length, offset + 1)];
    }
  }
  return found;
}

/**
 * The line of `segs` in block YAML, following the path forward through the text: each key on a later line (or
 * on its sequence item's own line), each index the n-th item of the sequence that follows. The deepest part
 * found, or null.
 */
function locateYaml(text, segs) {
  const lines = text.split('\n');
  const offsets = [];
  let offset = 0;
  for (const l of lines) {
    offsets.push(offset);
    offset += l.length + 1;
  }
  const indentOf = (l) => l.length - l.trimStart().length;
  const content = (l) => l.trim();
  let line = 0;
  let sameLine = true; // the next key may be on `line` itself (the top, or a sequence item's line)
  let found = null;
  for (const seg of segs) {
    if (typeof seg === 'number') {
      let itemIndent = -1;
      let count = -1;
      let hit = -1;
      for (let l = sameLine ? line : line + 1; l < lines.length; l++) {
        const c = content(lines[l]);
        if (!c || c.startsWith('#')) continue;
        const ind = indentOf(lines[l]);
        if (itemIndent < 0) {
          if (!c.startsWith('-')) return found;
          itemIndent = ind;
        }
        if (ind < itemIndent) break;
        if (ind === itemIndent && c.startsWith('-') && ++count === seg) {
          hit = l;
          break;
        }
      }
      if (hit < 0) return found;
      line = hit;
      sameLine = true;
      found = [offsets[hit] + indentOf(lines[hit]), offsets[hit] + lines[hit].length];
    } else {
      const quoted = seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const key = new RegExp(`^([\\s-]*)(["']?)${quoted}\\2\\s*:(\\s|$)`);
      let hit = -1;
      for (let l = sameLine ? line : line + 1; l < lines.length; l++) {
        if (key.test(lines[l])) {
          hit = l;
          break;
        }
      }
      if (hit < 0) return found;
      const m = key.exec(lines[hit]);
      line = hit;
      sameLine = false;
      found = [offsets[hit] + m[1].length, offsets[hit] + lines[hit].trimEnd().length];
    }
  }
  return found;
}

/** The span of the value at `segs` in JSON text, or of the deepest member or element on the way. */
function locateJson(text, segs) {
  let i = 0;
  let deepest = null; // [depth, start, end]
  const ws = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const string = () => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const value = (depth, on) => {
    ws();
    const start = i;
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') i++;
      else {
        for (;;) {
          ws();
          if (text[i] !== '"') throw new Error('key');
          const keyStart = i;
          const key = string();
          const keyEnd = i;
          ws();
          if (text[i++] !== ':') throw new Error(':');
          const hit = on && depth < segs.length && segs[depth] === key;
          if (hit && (!deepest || deepest[0] < depth + 1)) deepest = [depth + 1, keyStart, keyEnd];
          value(depth + 1, hit);
          ws();
          if (text[i] === ',') i++;
          else if (text[i] === '}') {
            i++;
            break;
          } else throw new Error(',');
        }
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') i++;
      else {
        for (let n = 0; ; n++) {
          ws();
          const hit = on && depth < segs.length && segs[depth] === n;
          if (hit && (!deepest || deepest[0] < depth + 1)) deepest = [depth + 1, i, i + 1];
          value(depth + 1, hit);
          ws();
          if (text[i] === ',') i++;
          else if (text[i] === ']') {
            i++;
            break;
          } else throw new Error(',');
        }
      }
    } else if (c === '"') {
      string();
    } else {
      while (i < text.length && !/[\s,\]}]/.test(text[i])) i++;
      if (i === start) throw new Error('value');
    }
    if (on && depth === segs.length) deepest = [depth + 1, start, i];
  };
  value(0, true);
  return deepest ? [deepest[1], deepest[2]] : null;
}

function kvRows(table, pairs) {
  const body = clear(table.tBodies[0]);
  for (const [n, v] of pairs || []) {
    body.append(el('tr', {}, el('th', {}, n), el('td', {}, v)));
  }
  table.hidden = !pairs || pairs.length === 0;
}

// ---------------------------------------------------------------------------------------------------------
// The request as the engine takes it

/** The input of `decide`, or the errors of the editors that keep it from being built. */
function buildInput() {
  const errors = [];
  const input = { config: $('config').value, format: ui.format, mode: ui.mode };
  if (ui.mode === 'claims') {
    const text = $('claims').value.trim();
    if (text === '') {
      input.claims = {};
    } else {
      try {
        const claims = JSON.parse(text);
        if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
          errors.push({ path: 'claims', message: 'must be a JSON object' });
        } else {
          input.claims = claims;
        }
      } catch (e) {
        errors.push({ path: 'claims', message: `not valid JSON: ${e.message}` });
      }
    }
  } else {
    input.token = $('token').value.trim();
  }
  const request = {};
  const field = (key) => $(REQUEST_FIELDS[key]).value;
  request.method = field('method').trim();
  request.path = field('path');
  const host = field('host').trim();
  if (host) request.host = host;
  const headers = field('headers').trim();
  if (headers) {
    try {
      const h = JSON.parse(headers);
      if (h === null || typeof h !== 'object' || Array.isArray(h)) {
        errors.push({ path: 'request.headers', message: 'must be a JSON object: name → value or [values]' });
      } else {
        request.headers = h;
      }
    } catch (e) {
      errors.push({ path: 'request.headers', message: `not valid JSON: ${e.message}` });
    }
  }
  // The engine needs a time: an empty field is now.
  const time = field('time').trim();
  request.time = time === '' ? rfc3339Now() : /^-?\d+$/.test(time) ? Number(time) : time;
  const uriSan = field('peer_uri_san').trim();
  const digest = field('peer_sha256').trim();
  if (uriSan || digest) {
    request.peer = {};
    if (uriSan) request.peer.uri_san = uriSan;
    if (digest) request.peer.certificate_sha256 = digest;
  }
  const route = field('envoy_route').trim();
  if (route) request.envoy_route = route;
  const tag = field('envoy_route_tag').trim();
  if (tag) request.envoy_route_tag = tag;
  // The MCP body goes as its text: the engine reads the bytes a client sent, malformed or not.
  const mcp = field('mcp');
  if (mcp.trim()) request.mcp = mcp;
  input.request = request;
  return { input, errors };
}

// ---------------------------------------------------------------------------------------------------------
// Deciding and showing the answer

/** Validates the configuration (once per text and format) and shows the outcome beside the editor. */
function validateConfig() {
  const key = `${ui.format}\u0000${$('config').value}`;
  if (ui.lastValidated && ui.lastValidated.key === key) return ui.lastValidated.result;
  const result = call('validate', $('config').value, ui.format);
  ui.lastValidated = { key, result };
  const status = $('config-status');
  clear(status);
  if (result.ok) {
    status.className = 'status-line ok';
    status.append(el('span', { class: 'badge ok' }, 'valid'), ' ', describeSummary(result.kind, result.summary));
    showErrors($('config-error'), []);
  } else {
    status.className = 'status-line bad';
    const n = (result.errors || []).length;
    status.append(el('span', { class: 'badge bad' }, 'invalid'), ` ${n} error${n === 1 ? '' : 's'}, at their path:`);
    showErrors($('config-error'), result.errors, $('config'));
  }
  $('config').classList.toggle('invalid', !result.ok);
  return result;
}

/** One line about a valid configuration from validate's summary, whatever members it has. */
function describeSummary(kind, summary) {
  const what = kind === 'configuration' ? 'a whole gateway configuration' : kind === 'policy' ? 'a policy' : kind || '';
  if (!summary || typeof summary !== 'object') return what;
  const parts = [];
  for (const [k, v] of Object.entries(summary)) {
    if (v === null || v === undefined) continue;
    const name = k.replace(/_/g, ' ');
    if (Array.isArray(v)) parts.push(`${name}: ${v.length ? v.join(', ') : '–'}`);
    else if (typeof v === 'object') parts.push(`${name}: ${JSON.stringify(v)}`);
    else parts.push(`${name}: ${v}`);
  }
  return parts.length ? `${what} — ${parts.join(' · ')}` : what;
}

function decide() {
  if (!ui.ready) return;
  const valid = validateConfig();
  const { input, errors } = buildInput();
  showErrors($('request-error'), errors.filter((e) => e.path.startsWith('request')));
  if (!valid.ok) {
    showUnavailable('The configuration is invalid: see its errors.');
    return;
  }
  if (errors.length) {
    showUnavailable('The credential or the request cannot be read: see the errors.', errors);
    return;
  }
  const answer = call('decide', JSON.stringify(input));
  if (!answer.ok) {
    showUnavailable('No decision.', answer.errors);
    return;
  }
  showDecision(answer);
}

/** No decision to show: the panel says why. */
function showUnavailable(message, errors = []) {
  $('panel-decide').classList.add('no-decision');
  const panel = $('decision');
  panel.dataset.decision = 'error';
  panel.dataset.status = '';
  panel.dataset.seq = String(++ui.decisions);
  $('decision-label').textContent = 'NO DECISION';
  $('decision-status').textContent = '';
  $('decision-mode').textContent = '';
  $('decision-reason').textContent = message;
  $('decision-rule').textContent = '';
  showErrors($('decide-error'), errors);
  clear($('explanation'));
  clear($('explanation-facts'));
  $('explanation-verdict').textContent = '';
  kvRows($('response-headers'), []);
  $('response-body').textContent = '';
  kvRows($('forwarded-set'), []);
  clear($('forwarded-remove'));
}

const LABELS = { allow: 'ALLOW', deny: 'DENY', invalid_request: 'INVALID REQUEST', answer: 'ANSWERED' };

function showDecision(a) {
  $('panel-decide').classList.remove('no-decision');
  const panel = $('decision');
  panel.dataset.decision = a.decision || '';
  panel.dataset.status = a.status === undefined || a.status === null ? '' : String(a.status);
  panel.dataset.rule = a.rule || '';
  panel.dataset.seq = String(++ui.decisions);
  $('decision-label').textContent = LABELS[a.decision] || String(a.decision || '?').toUpperCase();
  $('decision-status').textContent = a.status ? String(a.status) : '';
  $('decision-mode').textContent =
    a.mode === 'token' ? 'token mode — the gateway\'s whole decision' : a.mode === 'claims' ? 'claims only — signature not checked' : '';
  $('decision-mode').className = `decision-mode ${a.mode || ''}`;
  const reason = $('decision-reason');
  clear(reason);
  reason.append(a.reason ? el('code', {}, a.reason) : '');
  if (a.missing_scope) reason.append(' — the token lacks scope ', el('code', {}, a.missing_scope));
  if (a.dry_run) {
    reason.append(' — dry run: enforcement would answer ', el('code', {}, `${a.dry_run.status} ${a.dry_run.reason || ''}`.trim()));
  }
  const rule = $('decision-rule');
  clear(rule);
  if (a.rule) rule.append(a.decision === 'allow' ? 'allowed by rule ' : 'decided by rule ', el('code', {}, a.rule));
  else if (a.decision === 'deny' && a.reason === 'no_rule_allows') rule.append('no rule allows (default deny)');
  showErrors($('decide-error'), []);

  // Claims mode decides by policy alone: the gateway's answer and forwarded headers come with token mode.
  const policyOnly = a.mode === 'claims';
  for (const id of ['response-note', 'forwarded-note']) $(id).hidden = !policyOnly;
  const response = a.response || {};
  kvRows($('response-headers'), response.headers || []);
  $('response-body').textContent = prettyBody(response.body || '');
  $('response-card').classList.toggle('empty', !policyOnly && !(response.headers && response.headers.length) && !response.body);

  const fwd = a.forwarded || {};
  const pairs = [...(fwd.set || [])];
  kvRows($('forwarded-set'), pairs);
  const removed = clear($('forwarded-remove'));
  if (fwd.method || fwd.path) {
    removed.append(el('div', {}, 'request line forwarded: ', el('code', {}, `${fwd.method || ''} ${fwd.path || ''}`.trim())));
  }
  if (fwd.remove && fwd.remove.length) {
    removed.append(el('div', {}, 'removed: ', ...fwd.remove.flatMap((n, i) => [i ? ', ' : '', el('code', {}, n)])));
  }
  $('forwarded-card').classList.toggle('empty', !policyOnly && !pairs.length && !(fwd.remove && fwd.remove.length) && !fwd.path);

  showExplanation(a.explanation);

  if (window.__firstDecisionMs === undefined) {
    window.__firstDecisionMs = performance.now();
    if (window.__timings) window.__timings.firstDecision = window.__firstDecisionMs;
    $('engine-info').textContent += ` · first decision shown at ${window.__firstDecisionMs.toFixed(0)} ms`;
  }
}

const RESULT_TEXT = {
  matched: 'matched',
  undetermined: 'undetermined',
  conditions_failed: 'conditions failed',
  not_applicable: 'not applicable',
};
const RESULT_MARK = { matched: '+', undetermined: '?', conditions_failed: '−', not_applicable: '·' };
/** Members of an explanation shown as facts, in this order, with their labels. */
const FACTS = [
  ['policy_version', 'policy version'],
  ['agent', 'agent'],
  ['subject', 'subject'],
  ['issuer', 'issuer'],
  ['chain', 'delegation chain'],
  ['method', 'method'],
  ['path', 'path'],
  ['labels', 'route labels'],
  ['mcp', 'MCP'],
  ['not_applicable', 'not applicable'],
  ['missing_scope', 'missing scope'],
];
const NOT_FACTS = new Set(['candidates', 'decision', 'reason', 'rule']);

function factText(v) {
  if (Array.isArray(v)) return v.length ? v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : x)).join(' ← ') : '–';
  if (v && typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function showExplanation(e) {
  const facts = clear($('explanation-facts'));
  const list = clear($('explanation'));
  const verdict = $('explanation-verdict');
  verdict.textContent = '';
  if (!e || typeof e !== 'object') {
    list.append(el('li', { class: 'none muted' }, 'No policy evaluation: the request was refused before policy.'));
    return;
  }
  if (!Array.isArray(e.candidates)) {
    // `detail` says why in claims mode; token mode's explanation has the reason only.
    const why = e.detail || e.reason;
    list.append(el('li', { class: 'none muted' }, 'No policy evaluation: the request was refused before policy',
      why ? ': ' : '.', why ? el('code', {}, factText(why)) : null));
    return;
  }
  const shown = new Set();
  const fact = (key, label) => {
    shown.add(key);
    const v = e[key];
    if (v === undefined || v === null || (Array.isArray(v) && v.length === 0) || v === '') return;
    if (key === 'chain') {
      facts.append(el('dt', {}, label), el('dd', {}, v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : x)).join(' ← '), el('span', { class: 'muted' }, '  (current actor first)')));
      return;
    }
    if (key === 'not_applicable') {
      const text = Array.isArray(v) ? `${v.length} rule(s): ${v.join(', ')}` : `${v} rule(s), by agent, method or path`;
      facts.append(el('dt', {}, label), el('dd', {}, text));
      return;
    }
    facts.append(el('dt', {}, label), el('dd', {}, factText(v)));
  };
  for (const [k, label] of FACTS) fact(k, label);
  for (const k of Object.keys(e)) {
    if (!shown.has(k) && !NOT_FACTS.has(k)) fact(k, k.replace(/_/g, ' '));
  }
  const candidates = Array.isArray(e.candidates) ? e.candidates : [];
  if (candidates.length === 0) {
    list.append(el('li', { class: 'none muted' }, 'No rule is a candidate for this agent, method and path.'));
  }
  for (const c of candidates) {
    const result = c.result || '';
    const reasons = Array.isArray(c.reasons) ? c.reasons : [];
    list.append(
      el('li', { class: `candidate ${result}`, 'data-id': c.id, 'data-result': result },
        el('div', { class: 'candidate-head' },
          el('span', { class: 'mark', 'aria-hidden': 'true' }, RESULT_MARK[result] || '•'),
          el('code', { class: 'rule-id' }, c.id),
          el('span', { class: `effect ${c.effect}` }, c.effect),
          el('span', { class: 'result' }, RESULT_TEXT[result] || result),
          e.rule && e.rule === c.id ? el('span', { class: 'deciding' }, 'deciding rule') : null),
        reasons.length ? el('ul', { class: 'reasons' }, reasons.map((r) => el('li', {}, typeof r === 'string' ? r : JSON.stringify(r)))) : null),
    );
  }
  if (e.rule) verdict.append('Deciding rule: ', el('code', {}, e.rule));
  else if (e.missing_scope) verdict.append('No rule allows; the token lacks scope ', el('code', {}, e.missing_scope));
  else verdict.append('No rule allows (default deny).');
}

// ---------------------------------------------------------------------------------------------------------
// The decoded token

function showDecodedToken() {
  const token = $('token').value.trim();
  const header = $('token-header');
  const claims = $('token-claims');
  if (!token) {
    header.textContent = '';
    claims.textContent = '';
    showErrors($('token-decoded-error'), []);
    return;
  }
  const d = call('decode_token', token);
  if (d.ok === false && d.errors) {
    showErrors($('token-decoded-error'), d.errors);
    return;
  }
  header.textContent = d.header ? pretty(d.header) : '';
  claims.textContent = d.claims ? pretty(d.claims) : '';
  showErrors($('token-decoded-error'), d.error ? [{ path: 'token', message: d.error }] : []);
}

// ---------------------------------------------------------------------------------------------------------
// Tests

function runTests() {
  if (!ui.ready) return;
  const table = $('tests-results');
  const body = clear(table.tBodies[0]);
  const answer = call('run_tests', $('config').value, ui.format, $('tests').value);
  const summary = $('tests-summary');
  if (!answer.ok) {
    showErrors($('tests-error'), answer.errors);
    summary.textContent = 'not run';
    summary.className = 'tests-summary bad';
  } else {
    showErrors($('tests-error'), []);
    for (const r of answer.results || []) {
      body.append(
        el('tr', { class: `case ${r.passed ? 'pass' : 'fail'}`, 'data-name': r.name, 'data-passed': r.passed ? 'true' : 'false' },
          el('td', { class: 'narrow' }, el('span', { class: `badge ${r.passed ? 'ok' : 'bad'}` }, r.passed ? 'ok' : 'FAIL')),
          el('td', { class: 'case-name' }, r.name),
          el('td', { class: 'case-detail' }, r.detail || '')),
      );
    }
    summary.textContent = `${answer.passed} passed, ${answer.failed} failed`;
    summary.className = `tests-summary ${answer.failed ? 'bad' : 'ok'}`;
  }
  table.dataset.run = String(++ui.testRuns);
}

// ---------------------------------------------------------------------------------------------------------
// Tabs, modes, formats

function setTab(tab) {
  ui.tab = tab === 'tests' ? 'tests' : 'decide';
  const tests = ui.tab === 'tests';
  $('tab-decide').setAttribute('aria-selected', String(!tests));
  $('tab-tests').setAttribute('aria-selected', String(tests));
  $('panel-decide').hidden = tests;
  $('panel-tests').hidden = !tests;
  $('decide-inputs').hidden = tests;
  $('tests-card').hidden = !tests;
  document.body.dataset.tab = ui.tab;
}

function setMode(mode) {
  ui.mode = mode === 'token' ? 'token' : 'claims';
  $('mode-claims').checked = ui.mode === 'claims';
  $('mode-token').checked = ui.mode === 'token';
  $('claims-pane').hidden = ui.mode !== 'claims';
  $('token-pane').hidden = ui.mode !== 'token';
  document.body.dataset.mode = ui.mode;
}

function setFormat(format) {
  ui.format = ['json', 'yaml', 'auto'].includes(format) ? format : 'json';
  $('format-json').checked = ui.format === 'json';
  $('format-yaml').checked = ui.format === 'yaml';
}

/** The format toggle: the engine converts the editor's text (YAML 1.2 both ways), then reads it in the new format. */
function switchFormat(to) {
  if (to === ui.format) return;
  const converted = call('convert', $('config').value, to);
  if (converted.ok) {
    $('config').value = converted.text;
  } else {
    // Not convertible (not valid in the old format): the text stays, read in the new one.
    $('share-status').textContent = `kept as it was: ${converted.errors[0].message}`;
  }
  setFormat(to);
  changed();
}

// ---------------------------------------------------------------------------------------------------------
// Examples

function fillExample(name) {
  const ex = ui.examples.find((x) => x.name === name) || ui.examples[0];
  if (!ex) return;
  ui.example = ex.name;
  $('example').value = ex.name;
  describeExample(ex);
  setFormat('json');
  $('config').value = ex.policy || '';
  setMode('claims');
  $('claims').value = ex.claims ? pretty(ex.claims) : '{}';
  $('token').value = '';
  showDecodedToken();
  const r = ex.request || {};
  $('req-method').value = r.method || 'GET';
  $('req-path').value = r.path || '/';
  $('req-host').value = r.host || '';
  $('req-time').value = r.time === undefined || r.time === null ? '' : String(r.time);
  $('req-headers').value = r.headers && Object.keys(r.headers).length ? pretty(r.headers) : '{}';
  $('req-peer-uri-san').value = (r.peer && r.peer.uri_san) || '';
  $('req-peer-sha256').value = (r.peer && r.peer.certificate_sha256) || '';
  $('req-envoy-route').value = r.envoy_route || '';
  $('req-envoy-route-tag').value = r.envoy_route_tag || '';
  $('req-mcp').value = r.mcp === undefined || r.mcp === null ? '' : typeof r.mcp === 'string' ? r.mcp : pretty(r.mcp);
  $('more-request').open = Boolean(r.mcp || r.peer || r.envoy_route || r.envoy_route_tag);
  $('tests').value = ex.tests || '';
  clearTests();
}

function describeExample(ex) {
  const node = clear($('example-description'));
  if (ex.description) node.append(ex.description);
  if (ex.case) node.append(' The request and claims are those of its first case, ', el('q', {}, ex.case), '.');
}

function clearTests() {
  clear($('tests-results').tBodies[0]);
  $('tests-summary').textContent = '';
  showErrors($('tests-error'), []);
}

// ---------------------------------------------------------------------------------------------------------
// The state in the URL fragment: #s= + base64url of the state's JSON, deflated (zlib) when the browser can.
// A zlib stream starts with 0x78, plain JSON with '{': the reader tells them apart by the first byte.

function currentState() {
  const request = {};
  for (const [k, id] of Object.entries(REQUEST_FIELDS)) request[k] = $(id).value;
  return {
    v: STATE_VERSION,
    example: ui.example,
    format: ui.format,
    config: $('config').value,
    mode: ui.mode,
    claims: $('claims').value,
    token: $('token').value,
    request,
    tests: $('tests').value,
    tab: ui.tab,
  };
}

function applyState(s) {
  if (!s || typeof s !== 'object') throw new Error('not a playground state');
  const str = (v) => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));
  ui.example = str(s.example);
  if (ui.examples.some((x) => x.name === ui.example)) {
    $('example').value = ui.example;
    describeExample(ui.examples.find((x) => x.name === ui.example));
  } else {
    $('example').value = '';
    $('example-description').textContent = '';
  }
  setFormat(str(s.format) || 'json');
  $('config').value = str(s.config);
  setMode(str(s.mode));
  $('claims').value = str(s.claims);
  $('token').value = str(s.token);
  const r = s.request && typeof s.request === 'object' ? s.request : {};
  for (const [k, id] of Object.entries(REQUEST_FIELDS)) $(id).value = str(r[k]);
  $('more-request').open = Boolean(r.mcp || r.peer_uri_san || r.peer_sha256 || r.envoy_route || r.envoy_route_tag);
  $('tests').value = str(s.tests);
  clearTests();
  showDecodedToken();
  setTab(str(s.tab));
}

function toBase64Url(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

async function pipe(bytes, stream) {
  const out = new Blob([bytes]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(out).arrayBuffer());
}

async function encodeState(state) {
  const plain = new TextEncoder().encode(JSON.stringify(state));
  if (typeof CompressionStream === 'function') {
    try {
      return toBase64Url(await pipe(plain, new CompressionStream('deflate')));
    } catch {
      // Fall through to the plain form.
    }
  }
  return toBase64Url(plain);
}

async function decodeState(text) {
  let bytes = fromBase64Url(text);
  if (bytes.length && bytes[0] !== 0x7b) {
    if (typeof DecompressionStream !== 'function') throw new Error('this browser cannot decompress the link');
    bytes = await pipe(bytes, new DecompressionStream('deflate'));
  }
  return JSON.parse(new TextDecoder().decode(bytes));
}

function stateFromHash() {
  const m = /^#s=([A-Za-z0-9_-]*)$/.exec(location.hash);
  return m ? m[1] : null;
}

let saveTimer = 0;
function scheduleSave() {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(saveNow, SAVE_MS);
}

/** Writes the state into the address (replacing the entry, not adding one); resolves to the full URL. */
async function saveNow() {
  clearTimeout(saveTimer);
  const encoded = await encodeState(currentState());
  ui.lastHash = `#s=${encoded}`;
  history.replaceState(null, '', ui.lastHash);
  document.body.dataset.saved = String(Date.now());
  return location.href;
}

async function share() {
  const url = await saveNow();
  const status = $('share-status');
  try {
    await navigator.clipboard.writeText(url);
    status.textContent = `link copied (${url.length} characters)`;
  } catch {
    status.textContent = 'link in the address bar';
  }
  $('share').dataset.url = url;
}

async function restoreFromHash() {
  const encoded = stateFromHash();
  if (encoded === null) return false;
  try {
    applyState(await decodeState(encoded));
    ui.lastHash = location.hash;
    return true;
  } catch (e) {
    const banner = $('load-error');
    banner.textContent = `The link's state could not be read (${e.message}); the first example is shown instead.`;
    banner.hidden = false;
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Edits

let decideTimer = 0;
let testsTimer = 0;
function changed() {
  clearTimeout(decideTimer);
  decideTimer = setTimeout(decide, DEBOUNCE_MS);
  if (ui.tab === 'tests') {
    clearTimeout(testsTimer);
    testsTimer = setTimeout(runTests, DEBOUNCE_MS * 3);
  }
  scheduleSave();
}

function rfc3339Now() {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function wire() {
  for (const id of ['config', 'claims', 'token', 'tests', ...Object.values(REQUEST_FIELDS)]) {
    $(id).addEventListener('input', () => {
      if (id === 'token') showDecodedToken();
      if (id === 'tests') clearTests();
      changed();
    });
  }
  $('example').addEventListener('change', () => {
    if ($('example').value) fillExample($('example').value);
    $('load-error').hidden = true;
    changed();
    if (ui.tab === 'tests') runTests();
  });
  $('reset-example').addEventListener('click', () => {
    if (!ui.ready) return;
    fillExample($('example').value || ui.example);
    $('load-error').hidden = true;
    changed();
    if (ui.tab === 'tests') runTests();
  });
  $('format-json').addEventListener('change', () => switchFormat('json'));
  $('format-yaml').addEventListener('change', () => switchFormat('yaml'));
  $('mode-claims').addEventListener('change', () => {
    setMode('claims');
    changed();
  });
  $('mode-token').addEventListener('change', () => {
    setMode('token');
    showDecodedToken();
    changed();
  });
  $('tab-decide').addEventListener('click', () => {
    setTab('decide');
    decide();
    scheduleSave();
  });
  $('tab-tests').addEventListener('click', () => {
    setTab('tests');
    scheduleSave();
  });
  $('run-tests').addEventListener('click', runTests);
  $('share').addEventListener('click', share);
  $('req-time-now').addEventListener('click', () => {
    $('req-time').value = rfc3339Now();
    changed();
  });
  window.addEventListener('hashchange', async () => {
    if (location.hash === ui.lastHash) return;
    if (await restoreFromHash()) {
      ui.lastValidated = null;
      decide();
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Start

async function main() {
  wire();
  setTab('decide');
  const started = performance.now();
  try {
    // Fetches pkg/agent_iam_playground_bg.wasm (already requested by the page's preload hint) and compiles it
    // as it streams in.
    await init();
  } catch (e) {
    const banner = $('load-error');
    banner.textContent = `The engine (pkg/agent_iam_playground_bg.wasm) could not be loaded: ${e && e.message ? e.message : e}`;
    banner.hidden = false;
    $('engine-info').textContent = 'engine not loaded';
    return;
  }
  const loaded = performance.now();
  window.__timings = { script: started, engine: loaded };
  const list = call('examples');
  ui.examples = Array.isArray(list) ? list : [];
  const select = clear($('example'));
  select.append(el('option', { value: '' }, '— your own —'));
  for (const ex of ui.examples) select.append(el('option', { value: ex.name }, ex.title || ex.name));
  select.disabled = false;
  ui.ready = true;
  document.body.dataset.ready = 'true';
  $('engine-info').textContent =
    `The agent-iam engine, compiled to WebAssembly, loaded in ${(loaded - started).toFixed(0)} ms; every decision is made in this page.`;
  if (!(await restoreFromHash())) fillExample(ui.examples.length ? ui.examples[0].name : '');
  decide();
  if (ui.tab === 'tests') runTests();
}

main();
