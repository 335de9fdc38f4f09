// The schema editor of a namespace (PUT /v1/schemas/{ns}, guarded by If-Match, or
// If-None-Match: * for its first schemas): the schemas as JSON and the mode. A strict
// change that live values break comes back 409 listing them, shown here. Like every
// change, the saved schemas come back from the live data.

import { api, describeError } from './api.js';
import { confirmAction } from './confirm.js';
import { $, whileBusy } from './dom.js';
import { plural } from './format.js';
import { commentOf, InputError, parseJsonField } from './forms.js';
import { canWrite } from './identity.js';
import { prettyJson } from './json.js';
import { notify } from './messages.js';
import { closePanel, onPanelClose, openPanel } from './panels.js';
import { showViolations } from './schema-form.js';
import { asOwn, isOwn, on, SCHEMAS_NAMESPACE } from './state.js';

const schemaView = {
  ns: '',
  revision: null, // the schemas' revision when loaded (null: the namespace had none)
  resources: null, // supplied resources, sent back as they were
  sequence: 0,
};

/** "1 live value of ns breaks", "2 live values of ns break". */
const breaking = (count, ns) => `${plural(count, 'live value')} of ${ns} ${count === 1 ? 'breaks' : 'break'}`;

const schemasPath = (ns, suffix = '') => `/v1/schemas/${encodeURIComponent(ns)}${suffix}`;

export async function openSchemaEditor(ns, opener) {
  const sequence = ++schemaView.sequence;
  schemaView.ns = ns;
  const writable = canWrite(ns);
  $('#schema-title').textContent = `Schemas of ${ns}`;
  $('#schema-readonly').hidden = writable;
  $('#schema-doc').readOnly = !writable;
  $('#schema-mode').disabled = !writable;
  $('#schema-save').hidden = !writable;
  $('#schema-comment').value = '';
  $('#schema-notice').textContent = '';
  setSchemaError('');
  $('#schema-doc').value = '';
  openPanel($('#schema-panel'), opener, $('#schema-doc'));
  try {
    const answer = await api('GET', schemasPath(ns));
    if (sequence !== schemaView.sequence) return;
    load(answer);
  } catch (err) {
    if (sequence !== schemaView.sequence) return;
    if (err.status === 404) load(null);
    else setSchemaError(`Schemas unavailable: ${describeError(err)}`);
  }
}

/** Shows a GET or PUT answer (null: no schemas yet). */
function load(answer) {
  schemaView.revision = answer?.revision ?? null;
  schemaView.resources = answer?.resources ?? null;
  $('#schema-doc').value = answer ? prettyJson(answer.schemas) : '';
  $('#schema-mode').value = answer?.mode ?? 'strict';
  const resources = Object.keys(schemaView.resources ?? {}).length;
  $('#schema-resources').textContent = resources ? `${plural(resources, 'supplied resource')} ($ref targets) kept as they are.` : '';
  $('#schema-remove').hidden = answer === null || !canWrite(schemaView.ns);
  if (!answer) $('#schema-notice').textContent = `${schemaView.ns} has no schemas yet: its values take any JSON.`;
  if (answer?.out_of_schema) {
    $('#schema-notice').textContent = `${breaking(answer.out_of_schema, schemaView.ns)} these schemas (kept by the ratchet).`;
  }
}

function setSchemaError(text, violations = []) {
  $('#schema-error').textContent = text;
  showViolations($('#schema-violations'), violations, { keys: true });
}

function readSchemas() {
  const schemas = parseJsonField($('#schema-doc').value, 'Schemas');
  if (typeof schemas !== 'object' || schemas === null || Array.isArray(schemas)) {
    throw new InputError('Schemas: an object of key names or globs, each with its JSON Schema.');
  }
  return schemas;
}

async function saveSchemas(event) {
  event.preventDefault();
  setSchemaError('');
  const { ns, revision } = schemaView;
  let schemas;
  try {
    schemas = readSchemas();
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    setSchemaError(err.message);
    return;
  }
  const body = { schemas, mode: $('#schema-mode').value };
  if (schemaView.resources) body.resources = schemaView.resources;
  const headers = revision === null ? { 'If-None-Match': '*' } : { 'If-Match': `"${revision}"` };
  await whileBusy($('#schema-save'), async () => {
    try {
      const answer = await asOwn(SCHEMAS_NAMESPACE, ns, 'schema', () => api('PUT', schemasPath(ns), {
        body, headers, comment: commentOf($('#schema-comment')),
      }));
      closePanel($('#schema-panel'));
      const out = answer.out_of_schema ? `; ${plural(answer.out_of_schema, 'live value')} out of schema, kept by the ratchet` : '';
      notify(`Saved the schemas of ${ns} (${answer.mode}) at revision ${answer.revision}${out}.`);
    } catch (err) {
      if (err.status === 409 && err.details?.violations) {
        setSchemaError(`Not saved: ${breaking(err.details.count, ns)} these schemas. Fix them first, or choose ratchet to hold only new writes to the schemas.`, err.details.violations);
      } else if (err.status === 412) {
        setSchemaError(`Not saved: the schemas of ${ns} changed since you opened them. Your text is kept; reopen Schemas to start from the current ones.`);
      } else {
        setSchemaError(`Not saved: ${describeError(err)}`);
      }
    }
  });
}

function confirmRemove(opener) {
  const { ns, revision } = schemaView;
  confirmAction({
    title: `Remove the schemas of ${ns}?`,
    text: `Values of ${ns} are no longer checked: any JSON is accepted again. The schemas stay in their history and can be rolled back.`,
    typeName: ns,
    okLabel: 'Remove',
    danger: true,
    opener,
    run: async (comment) => {
      const answer = await asOwn(SCHEMAS_NAMESPACE, ns, 'schema', () => api('DELETE', schemasPath(ns), {
        headers: { 'If-Match': `"${revision}"` }, comment,
      }));
      closePanel($('#schema-panel'));
      return `Removed the schemas of ${ns} at revision ${answer.revision}.`;
    },
  });
}

/** Someone else changed the schemas being edited: saving now would be refused (412). */
function onChange({ change }) {
  if ($('#schema-panel').hidden || change.namespace !== SCHEMAS_NAMESPACE || change.key !== schemaView.ns) return;
  if (isOwn(change)) return;
  const who = change.entry?.updated_by ?? 'someone';
  $('#schema-notice').textContent = `${who} changed the schemas of ${schemaView.ns} since you opened them (revision ${change.revision}); saving will report a conflict.`;
}

export function initSchemaEditor() {
  on('change', onChange);
  onPanelClose('schema-panel', () => {
    schemaView.sequence += 1;
  });
  $('#schema-form').addEventListener('submit', saveSchemas);
  $('#schema-cancel').addEventListener('click', () => closePanel($('#schema-panel')));
  $('#schema-remove').addEventListener('click', (event) => confirmRemove(event.currentTarget));
}
