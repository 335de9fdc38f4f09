// One change request as its reviewers read it: what each op writes, diffed against the
// key's current value; the revision it was based on against the key's revision now; who
// approved which digest and how it moved; and the actions the caller may take in its state
// (the server checks each anyway: a disabled button only spares a refusal).

import { api, describeError } from './api.js';
import { confirmAction } from './confirm.js';
import { renderDiff } from './diff.js';
import { $, el, timeEl, whileBusy } from './dom.js';
import { entryId, plural, shortId } from './format.js';
import { canWrite, identity, isAdmin } from './identity.js';
import { compactJson, prettyJson } from './json.js';
import { notify } from './messages.js';
import { entryOf, SCHEMAS_NAMESPACE, state } from './state.js';

// States a request moves no more from (server/src/requests.rs State::is_final).
const FINAL_STATES = ['applied', 'rejected', 'cancelled'];

// The last refusal of an action, by request: the detail is rebuilt on every push (a stale
// apply's push follows its 409 at once), and the reason must outlive that.
const refusals = new Map();

/** Distinct approvers of the current digest that count (server: counted_approvals). */
export function countedApprovals(request) {
  const by = request.approvals
    .filter((a) => a.digest === request.digest && (request.self_approval || a.by !== request.author))
    .map((a) => a.by);
  return new Set(by).size;
}

/** Where an op writes: its key, or for a schema op the namespace's entry of graycast.schemas. */
function slotOf(op) {
  return op.op === 'schema.put' ? entryId(SCHEMAS_NAMESPACE, op.namespace) : entryId(op.namespace, op.key);
}

/** Whether the request writes `ns`/`key`. */
export function touches(request, ns, key) {
  return request.ops.some((op) => slotOf(op) === entryId(ns, key));
}

/** The revision a key is at now (0: absent); null for a schema, whose revision the console does not keep. */
function revisionNow(op) {
  if (op.op === 'schema.put') return null;
  return entryOf(op.namespace, op.key)?.revision ?? 0;
}

/** The ops whose key moved since the request was based on it. */
function movedOps(request) {
  return request.ops.filter((op) => {
    const now = revisionNow(op);
    return now !== null && now !== (request.base_revisions[slotOf(op)] ?? 0);
  });
}

const lines = (value) => prettyJson(value).split('\n');

/** What an op changes: a diff against the key's current value, or words when there is none. */
function opChange(op) {
  const entry = op.op === 'schema.put' ? null : entryOf(op.namespace, op.key);
  const currentLines = entry ? lines(entry.value) : [];
  const body = op.body ?? {};
  switch (op.op) {
    case 'put':
      return renderDiff(currentLines, lines(body.value), Boolean(entry), false);
    case 'delete':
      return renderDiff(currentLines, [], Boolean(entry), true);
    case 'gray.start': {
      const { value, ...settings } = body;
      return [
        el('p', { class: 'hint' }, `Starts a gray release (${compactJson(settings)}) of this value:`),
        renderDiff(currentLines, lines(value), Boolean(entry), false),
      ];
    }
    case 'gray.patch': {
      // The release's settings as they are, and as the patch leaves them.
      const gray = entry?.gray ?? {};
      const settings = { percent: gray.percent, allow: gray.allow, deny: gray.deny, rules: gray.rules, paused: gray.paused };
      return [
        el('p', { class: 'hint' }, entry?.gray ? 'Changes the running gray release:' : 'No gray release runs now: applying it will fail.'),
        renderDiff(lines(settings), lines({ ...settings, ...body }), true, false),
      ];
    }
    case 'gray.promote':
      return [
        el('p', { class: 'hint' }, entry?.gray ? 'Promotes the gray value, for every subject:' : 'No gray release runs now: applying it will fail.'),
        entry?.gray && renderDiff(currentLines, lines(entry.gray.value), true, false),
      ];
    case 'gray.abort':
      return el('p', { class: 'hint' }, 'Ends the gray release; the stable value stays.');
    case 'rollback':
      return el('p', { class: 'hint' }, `Restores the value of revision ${body.to_revision}.`);
    case 'schema.put': {
      const current = state.schemas.get(op.namespace);
      return renderDiff(current ? lines(current) : [], lines(body), Boolean(current), false);
    }
    default:
      return el('pre', { class: 'json' }, prettyJson(body));
  }
}

/** "based on r3, now r3" — or, when the key moved since, a warning saying by whom. */
function baseLine(request, op) {
  const base = request.base_revisions[slotOf(op)] ?? 0;
  const now = revisionNow(op);
  const based = base === 0 ? 'made when the key did not exist' : `based on revision ${base}`;
  if (now === null) return el('p', { class: 'hint' }, `${based}.`);
  if (now === base) return el('p', { class: 'hint' }, `${based}; ${base === 0 ? 'the key is still absent' : 'unchanged since'}.`);
  const entry = entryOf(op.namespace, op.key);
  const what = entry ? `now at revision ${now} by ${entry.updated_by}` : 'deleted since';
  return el('p', { class: 'notice', 'data-testid': 'moved' }, `${based}, ${what}: applying it would overwrite a change its approvers never saw, so it will go stale. Rebase it to review it against the value now.`);
}

function buildOp(request, op, index) {
  const target = op.op === 'schema.put' ? `schemas of ${op.namespace}` : entryId(op.namespace, op.key);
  return el('li', { class: 'request-op', 'data-testid': 'request-op' },
    el('p', { class: 'request-op-head' },
      el('span', { class: `op-badge op-${op.op.replace('.', '-')}` }, op.op), ' ',
      el('code', {}, target),
      request.ops.length > 1 && el('span', { class: 'muted' }, ` (op ${index + 1} of ${request.ops.length})`)),
    FINAL_STATES.includes(request.state) ? null : baseLine(request, op),
    FINAL_STATES.includes(request.state) ? el('pre', { class: 'json' }, prettyJson(op.body ?? null)) : opChange(op));
}

/**
 * The actions of a request still moving, and whether each makes sense now: [action,
 * label, why not (null: enabled)]. The server's rules (server/src/routes/requests.rs act)
 * say who may do what.
 */
function actionsOf(request) {
  const me = identity.name;
  const writer = request.ops.every((op) => canWrite(op.namespace));
  const notWriter = writer ? null : 'Your token may not write every namespace this request changes.';
  const mine = me === request.author;
  const approvedByMe = request.approvals.some((a) => a.by === me && a.digest === request.digest);
  const moved = movedOps(request).length > 0;
  const approveWhy = notWriter
    ?? (mine && !request.self_approval ? 'You wrote it: its approvals must come from someone else.' : null)
    ?? (request.state === 'stale' || moved ? 'It is stale: rebase it first, then approve what it does now.' : null)
    ?? (approvedByMe ? 'You approved this content already.' : null);
  return [
    ['approve', 'Approve', approveWhy],
    ['apply', 'Apply', notWriter ?? {
      approved: null,
      stale: 'It is stale: rebase it, and have it approved again.',
      open: `It needs ${plural(request.required, 'approval')} first (${countedApprovals(request)} so far).`,
    }[request.state]],
    ['rebase', 'Rebase', notWriter ?? (request.state === 'stale' || moved ? null : 'No key it writes moved since it was made.')],
    ['reject', 'Reject…', notWriter],
    ['cancel', 'Cancel request…', notWriter ?? (mine || isAdmin() ? null : 'Only its author or an admin cancels it.')],
  ];
}

function buildActions(request, hooks) {
  const actions = actionsOf(request);
  const reasons = actions.filter(([, , why]) => why).map(([action, label, why]) => el('li', { 'data-action': action }, `${label.replace('…', '')}: ${why}`));
  return [
    el('div', { class: 'buttons request-actions' }, actions.map(([action, label, why]) => el('button', {
      type: 'button',
      class: action === 'apply' || action === 'approve' ? 'primary' : action === 'reject' ? 'danger' : null,
      'data-request-action': action,
      disabled: Boolean(why),
      title: why,
      onclick: (event) => act(request, action, event.currentTarget, hooks),
    }, label))),
    reasons.length > 0 && el('details', { class: 'request-why' },
      el('summary', {}, 'Why some actions are off'),
      el('ul', {}, reasons)),
  ];
}

/**
 * Runs an action: its answer (the request's new state) goes to `moved`; a refusal stays
 * shown, and `refused` hears of it (a refused apply may have made the request stale).
 */
async function act(request, action, button, { moved, refused }) {
  const id = request.id;
  const path = `/v1/change-requests/${encodeURIComponent(id)}/${action}`;
  const call = (body) => api('POST', path, { body });
  const done = (answer, text) => {
    refusals.delete(id);
    moved(answer);
    notify(text);
  };
  if (action === 'reject' || action === 'cancel') {
    confirmAction({
      title: action === 'reject' ? `Reject change request ${shortId(id)}?` : `Cancel change request ${shortId(id)}?`,
      text: 'It moves no more: nothing it holds is applied. The comment is kept as the reason.',
      okLabel: action === 'reject' ? 'Reject' : 'Cancel request',
      danger: true,
      opener: button,
      run: async (comment) => {
        const answer = await call(comment ? { reason: comment } : undefined);
        done(answer, `${action === 'reject' ? 'Rejected' : 'Cancelled'} change request ${shortId(id)}.`);
      },
    });
    return;
  }
  await whileBusy(button, async () => {
    try {
      if (action === 'approve') {
        // The digest of the content shown: an edit since is not approved unseen.
        const answer = await call({ digest: request.digest });
        done(answer, `Approved change request ${shortId(id)} (${countedApprovals(answer)}/${answer.required}).`);
      } else if (action === 'apply') {
        const answer = await call();
        done(answer, `Applied change request ${shortId(id)}: ${answer.applied_revisions.length ? `revision ${answer.applied_revisions.join(', ')}` : 'done'}.`);
      } else {
        const answer = await call();
        done(answer, `Rebased change request ${shortId(id)}: it needs its approvals again.`);
      }
    } catch (err) {
      refusals.set(id, refusalOf(err));
      $('#request-error')?.replaceChildren(...refusals.get(id));
      refused();
    }
  });
}

/** A refusal in words; a stale apply lists the keys that moved and what they hold now. */
function refusalOf(err) {
  if (err.code !== 'stale_change_request') return [`Not done: ${describeError(err)}`];
  const moved = (err.details?.current ?? []).map((m) => el('li', {},
    el('code', {}, entryId(m.namespace, m.key)),
    ` moved from revision ${m.base_revision} to ${m.revision}`,
    m.entry ? [` (now ${compactJson(m.entry.value)} by ${m.entry.updated_by})`] : ' (deleted)'));
  return ['Stale: nothing was applied. Rebase it, and have it approved again.', el('ul', {}, moved)];
}

function buildApprovals(request) {
  const current = request.approvals.filter((a) => a.digest === request.digest);
  const rule = request.self_approval ? '' : ' by someone other than its author';
  return el('div', { class: 'request-approvals' },
    el('p', {}, el('strong', {}, `${countedApprovals(request)} of ${request.required}`), ` approval${request.required === 1 ? '' : 's'} needed${rule}.`),
    current.length > 0 && el('ul', { class: 'approvers' }, current.map((a) => el('li', {}, `${a.by} approved `, timeEl(a.at)))));
}

function buildTransitions(request) {
  return el('ol', { class: 'transitions', 'aria-label': 'How it moved' }, request.transitions.map((t) => el('li', {},
    el('strong', {}, t.action), ` by ${t.by} `, timeEl(t.at),
    t.reason && el('span', { class: 'muted' }, `: ${t.reason}`))));
}

/**
 * The detail of `request`, with `notice` (why to read it again) on top; `hooks.moved(answer)`
 * hears of each action's answer, `hooks.refused()` of each refusal.
 */
export function buildRequest(request, { notice, ...hooks }) {
  const stale = request.state === 'stale' || (!FINAL_STATES.includes(request.state) && movedOps(request).length > 0);
  return el('article', { class: 'request', 'data-testid': 'request-detail', 'data-id': request.id, 'data-state': request.state },
    el('h3', { tabindex: '-1' }, `Change request ${shortId(request.id)} `,
      el('span', { class: `state-badge state-${request.state}` }, request.state)),
    el('p', { class: 'request-meta' }, `By ${request.author}, `, timeEl(request.created_at),
      request.apply_at && ` · applies by itself at ${new Date(request.apply_at).toLocaleString()} once approved`),
    request.comment && el('p', { class: 'comment' }, el('span', { class: 'comment-label' }, 'Comment: '), request.comment),
    notice && el('p', { class: 'notice', role: 'status' }, notice),
    stale && el('p', { class: 'notice stale-warning', 'data-testid': 'stale' },
      request.reason ?? 'A key it writes moved since it was made: applying it will fail.'),
    el('ol', { class: 'request-ops' }, request.ops.map((op, i) => buildOp(request, op, i))),
    buildApprovals(request),
    el('p', { class: 'hint digest' }, 'Digest ', el('code', { title: request.digest }, shortId(request.digest)),
      ': an approval names it, so an edit or a rebase needs approving again.'),
    request.applied_revisions?.length > 0 && el('p', {}, `Applied as revision ${request.applied_revisions.join(', ')}.`),
    el('div', { id: 'request-error', class: 'error', role: 'alert' }, refusals.get(request.id) ?? []),
    !FINAL_STATES.includes(request.state) && buildActions(request, hooks),
    el('h4', {}, 'History'),
    buildTransitions(request));
}
