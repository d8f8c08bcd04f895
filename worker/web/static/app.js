'use strict';
const POLL_MS = 1000;
const BASE = '/web';  // the live view's path on the API app
const JOB_ID = /^[A-Za-z0-9_-]{1,64}$/;
const LISTS = [[WORDS.state.RUNNING, 'Running'], [WORDS.state.QUEUED, 'Queued'], ['recent', 'Recently finished']];
const COLUMNS = ['job', 'agent', 'state', 'phase', 'attempt', 'heartbeat age', 'tokens', 'outcome', 'at'];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function selectedJob() {
  const page = location.pathname.match(/^\/web\/job\/([^/]+)$/);
  const id = page ? page[1] : location.hash.slice(1);
  return JOB_ID.test(id) ? id : null;
}

function age(seconds) {
  return seconds === null || seconds === undefined ? '' : seconds.toFixed(1) + ' s';
}

function jobLink(id, text) {
  return el('a', {href: BASE + '/job/' + encodeURIComponent(id), title: id}, text);
}

function setNotice(text) {
  document.getElementById('notice').textContent = text;
}

function table(id, columns) {
  return el('table', {id: id},
    el('thead', {}, el('tr', {}, ...columns.map((c) => el('th', {}, c)))), el('tbody'));
}

function fillRows(tableId, rows, columns) {
  const body = document.getElementById(tableId).tBodies[0];
  body.replaceChildren(...(rows.length ? rows
    : [el('tr', {class: 'empty'}, el('td', {colspan: columns}, 'none'))]));
}

function jobRow(job) {
  return el('tr', {id: 'job-' + job.job_id, 'data-job': job.job_id, 'data-state': job.state,
    'data-phase': job.phase || ''},
    el('td', {class: 'id'}, jobLink(job.job_id, job.job_id.slice(0, 12))),
    el('td', {}, job.agent_id),
    el('td', {class: 'state'}, job.state),
    el('td', {class: 'phase'}, job.phase || ''),
    el('td', {}, job.attempt),
    el('td', {}, age(job.heartbeat_age_s)),
    el('td', {class: 'tokens'}, job.tokens),
    el('td', {}, job.decision || job.reason || ''),
    el('td', {}, job.finished_at || job.heartbeat_at || job.submitted_at || ''));
}

function buildLists() {
  const lists = document.getElementById('lists');
  for (const [name, title] of LISTS) {
    lists.append(el('section', {},
      el('h2', {}, title, ' ', el('span', {id: 'count-' + name, class: 'count'})),
      table(name, COLUMNS)));
  }
}

function renderLists(jobs) {
  for (const [name] of LISTS) {
    document.getElementById('count-' + name).textContent = '(' + jobs[name].length + ')';
    fillRows(name, jobs[name].map(jobRow), COLUMNS.length);
  }
}

function renderStats(stats) {
  const header = document.getElementById('stats');
  header.removeAttribute('data-job');
  header.removeAttribute('data-state');
  header.textContent =
    'queue depth ' + stats.queue_depth + ' \u00b7 deferred ' + stats.queue_deferred +
    ' \u00b7 running ' + stats.running +
    ' \u00b7 workers live ' + stats.workers_live + ' of ' + stats.workers_known +
    ' \u00b7 ' + stats.jobs_per_minute + ' jobs/min \u00b7 ledger backlog ' + stats.ledger_pending +
    ' \u00b7 at ' + stats.at + tenantsLine(stats.tenants || {});
}

// Per tenant: queued, running, the oldest queued job's wait and its share of the last minute's starts.
function tenantsLine(tenants) {
  const parts = Object.entries(tenants).map(([id, t]) =>
    id + ' ' + t.queued + ' queued/' + t.running + ' running' +
    (t.oldest_queued_age_s === null ? '' : '/oldest ' + t.oldest_queued_age_s.toFixed(1) + 's') +
    '/' + Math.round(100 * t.share_of_starts) + '% of starts' + (t.paused ? ' (paused)' : ''));
  return parts.length ? ' \u00b7 tenants: ' + parts.join(', ') : '';
}

// A job's page heads with the job (id, state, attempt, agent, tenant); the queue's numbers are on the list.
function renderJobHeader(s) {
  const header = document.getElementById('stats');
  header.setAttribute('data-job', s.job_id);
  header.setAttribute('data-state', s.state);
  const phase = s.state === WORDS.state.RUNNING && s.phase ? ' (' + s.phase + ')' : '';
  header.textContent = 'job ' + s.job_id + ' \u00b7 ' + s.state + phase +
    ' \u00b7 attempt ' + s.attempt + ' \u00b7 agent ' + s.agent_id + ' \u00b7 tenant ' + s.tenant_id;
}

function field(name, value) {
  if (value === null || value === undefined || value === '') return [];
  return [el('dt', {}, name), el('dd', {'data-field': name}, value)];
}

function planSteps(output) {
  if (!output) return el('p', {class: 'muted'}, 'no plan');
  return el('ol', {id: 'plan'}, ...output.plan.map((step) =>
    el('li', {class: 'step', 'data-step': step.step},
      el('strong', {class: 'title'}, step.title),
      step.description ? el('p', {}, step.description) : null,
      step.actions.length ? el('p', {class: 'muted'}, 'actions: ' + step.actions.join(', ')) : null,
      step.risks.length ? el('p', {class: 'muted'}, 'risks: ' + step.risks.join('; ')) : null)));
}

function eventRows(events) {
  return events.map((e) => el('tr', {'data-kind': e.kind},
    el('td', {}, e.at), el('td', {}, e.kind), el('td', {}, e.state), el('td', {}, e.phase || ''),
    el('td', {}, e.attempt), el('td', {}, e.tokens)));
}

function ledgerRows(events) {
  return events.map((e) => el('tr', {'data-kind': e.kind},
    el('td', {}, e.seq), el('td', {}, e.created_at), el('td', {}, e.kind), el('td', {}, e.decision || ''),
    el('td', {}, e.reason || ''), el('td', {}, e.worker || '')));
}

function renderDetail(detail) {
  const s = detail.status;
  const row = detail.row;
  const section = document.getElementById('detail');
  const ledgerEvents = detail.ledger ? detail.ledger.events : [];
  const submitted = ledgerEvents.find((e) => e.kind === WORDS.event.SUBMITTED);
  const request = submitted && submitted.payload ? submitted.payload : {};
  const problem = s.refusal ? s.refusal.code + ': ' + s.refusal.reason
    : s.error ? s.error.type + ': ' + s.error.message : '';
  const output = s.output;
  section.setAttribute('data-job', s.job_id);
  section.setAttribute('data-state', s.state);
  section.setAttribute('data-phase', s.phase || '');
  section.replaceChildren(
    el('p', {}, el('a', {href: BASE + '/'}, 'all jobs')),
    el('h2', {}, 'Job ', el('code', {}, s.job_id)),
    el('dl', {},
      ...field('state', s.state), ...field('phase', s.phase), ...field('attempt', s.attempt),
      ...field('agent', s.agent_id), ...field('tenant', s.tenant_id),
      ...field('description', request.description),
      ...field('submitted', s.submitted_at), ...field('started', s.started_at),
      ...field('finished', s.finished_at), ...field('heartbeat age', age(row.heartbeat_age_s)),
      ...field('tokens', row.tokens), ...field('decision', output ? output.decision : null),
      ...field('confidence', output ? output.confidence : null), ...field('problem', problem),
      ...field('notes for humans', output ? output.notes_for_humans : null)),
    el('h3', {}, 'Plan'), planSteps(output),
    el('h3', {}, 'Events'), table('events', ['at', 'kind', 'state', 'phase', 'attempt', 'tokens']),
    el('h3', {}, 'Ledger record'),
    detail.ledger ? table('ledger-events', ['seq', 'created', 'kind', 'decision', 'reason', 'worker'])
      : el('p', {class: 'muted'}, detail.ledger_note || 'not in the ledger'));
  fillRows('events', eventRows(detail.events), 6);
  if (detail.ledger) fillRows('ledger-events', ledgerRows(ledgerEvents), 6);
  if (reviewable(s)) section.append(reviewBox(s.job_id));
}

// A reviewer signed in sees approve / reject on an escalated plan nobody has decided yet. The box is
// built once per job and re-attached on every refresh, so a note being typed survives the polling.
let review = null;

function reviewable(s) {
  return me !== null && me.scope === WORDS.scope.REVIEWER && s.state === WORDS.state.DONE && s.output &&
    s.output.decision === WORDS.decision.ESCALATE && !s.review;
}

function reviewBox(jobId) {
  if (review && review.getAttribute('data-job') === jobId) return review;
  const note = el('input', {id: 'review-note', type: 'text', maxlength: 2000, placeholder: 'reason'});
  const said = el('span', {id: 'review-said', role: 'status'});
  const decide = (verdict) => async () => {
    try {
      await sendJSON(BASE + '/api/reviews/' + encodeURIComponent(jobId) + '/' + verdict, {note: note.value});
      said.textContent = verdict === 'approve' ? 'approved' : 'rejected';
    } catch (err) {
      said.textContent = 'not recorded: ' + (err && err.message ? err.message : err);
    }
  };
  const approve = el('button', {id: 'review-approve', type: 'button'}, 'Approve');
  const reject = el('button', {id: 'review-reject', type: 'button'}, 'Reject');
  approve.addEventListener('click', decide('approve'));
  reject.addEventListener('click', decide('reject'));
  review = el('div', {id: 'review', 'data-job': jobId}, el('h3', {}, 'Review'), note, approve, reject, said);
  return review;
}

async function sendJSON(url, body) {
  const response = await fetch(url, {
    method: 'POST', cache: 'no-store', body: JSON.stringify(body),
    headers: {'Content-Type': 'application/json', 'X-Plangate-Web': '1'},
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.detail || response.statusText);
  return answer;
}

async function getJSON(url) {
  const response = await fetch(url, {cache: 'no-store'});
  if (response.status === 401) {
    location.assign(BASE + '/login');  // the session ended: sign in again
    throw new Error('signed out');
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

let me = null;  // who is signed in: {scope, tenant_id, agent_id, reviewer_id, token_id}

function renderWho() {
  const header = document.getElementById('stats');
  header.removeAttribute('data-job');
  header.removeAttribute('data-state');
  const where = me.tenant_id ? ' of tenant ' + me.tenant_id : '';
  header.textContent = 'signed in as ' + me.scope + where + ' (queue numbers are for operators)';
}

async function tick() {
  const job = selectedJob();
  document.getElementById('lists').hidden = job !== null;
  document.getElementById('detail').hidden = job === null;
  try {
    if (me === null) me = await getJSON(BASE + '/api/me');
    if (job !== null) {
      const detail = await getJSON(BASE + '/api/jobs/' + encodeURIComponent(job));
      renderDetail(detail);
      renderJobHeader(detail.status);
    } else {
      const operator = me.scope === WORDS.scope.ADMIN || me.scope === WORDS.scope.AUDITOR;
      const [jobs, stats] = await Promise.all([
        getJSON(BASE + '/api/jobs'), operator ? getJSON(BASE + '/api/stats') : null]);
      renderLists(jobs);
      if (stats) renderStats(stats); else renderWho();
    }
    setNotice('');
  } catch (err) {
    const header = document.getElementById('stats');
    if (job !== null && header.getAttribute('data-job') !== job) header.textContent = 'job ' + job;
    setNotice('cannot refresh: ' + (err && err.message ? err.message : err));
  } finally {
    setTimeout(tick, POLL_MS);
  }
}

buildLists();
tick();
