// The entry editor (create and edit, guarded by If-None-Match and If-Match; a typed key's
// value through the form its schema allows, schema-form.js) and the delete of a key, with
// its Undo.

import { api, ApiError, describeError, keyPath } from './api.js';
import { closeConfirm, confirmAction } from './confirm.js';
import { $, el, whileBusy } from './dom.js';
import { entryId, plural, relativeTime, truncate } from './format.js';
import { commentOf, InputError, NAME_RE } from './forms.js';
import { canWrite, canWriteSomewhere, identity } from './identity.js';
import { prettyJson } from './json.js';
import { notify, showError } from './messages.js';
import { closePanel, openPanel } from './panels.js';
import { requestOffer } from './request-offer.js';
import { createValueEditor, violationsOfError } from './schema-form.js';
import { schemaOf } from './schemas.js';
import { asOwn, entryOf, isReserved, META_NAMESPACE, on, SCHEMAS_NAMESPACE, state } from './state.js';

const editor = {
  mode: 'create', // 'create' sends If-None-Match: *, 'edit' sends If-Match
  baseRevision: null, // the entry's revision when the editor opened
  conflict: null, // the server's entry after a 412, offered by "Reload current value"
  schema: null, // the schema the value field was built for (null: untyped)
  value: null, // the value field (createValueEditor), made by initEditor
};

export function openEditor(entry, opener) {
  const panel = $('#editor');
  setEditorError('');
  $('#editor-notice').textContent = '';
  $('#editor-comment').value = '';
  if (entry) {
    loadIntoEditor(entry);
  } else {
    editor.mode = 'create';
    editor.baseRevision = null;
    $('#editor-ns').value = canWrite(state.selectedNs) ? state.selectedNs : '';
    $('#editor-key').value = '';
    loadValue(null, undefined);
    setEditorNamesLocked(false);
    $('#editor-title').textContent = 'New key';
  }
  const focusTarget = entry ? valueFocus() : $('#editor-ns').value ? $('#editor-key') : $('#editor-ns');
  openPanel(panel, opener, focusTarget);
}

function loadIntoEditor(entry) {
  editor.mode = 'edit';
  editor.baseRevision = entry.revision;
  editor.conflict = null;
  $('#editor-ns').value = entry.namespace;
  $('#editor-key').value = entry.key;
  loadValue(schemaOf(entry.namespace, entry.key), entry.value);
  setEditorNamesLocked(true);
  $('#editor-title').textContent = `Edit ${entryId(entry.namespace, entry.key)} (revision ${entry.revision})`;
}

/** The value field for a key taking `schema` (null: untyped), showing `value`. */
function loadValue(schema, value) {
  editor.schema = schema;
  editor.value.load(schema, value);
  $('#editor-typed').hidden = schema === null;
  $('#editor-typed').textContent = schema === null ? '' : 'Typed: the value must match this key\'s JSON Schema.';
}

/** Where typing the value starts: the form's first field, or the textarea. */
function valueFocus() {
  return $('#editor-schema-form').hidden ? $('#editor-value') : $('#editor-schema-form').querySelector('input, select');
}

/**
 * A new key's name was typed: its value field follows the schema the name takes. A value
 * that cannot be read yet stays as typed, in the JSON editor.
 */
function onNameChange() {
  if (editor.mode !== 'create') return;
  const schema = schemaOf($('#editor-ns').value.trim(), $('#editor-key').value.trim());
  if (schema === editor.schema) return;
  let value;
  try {
    value = editor.value.read();
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    if ($('#editor-value').hidden || $('#editor-value').value.trim() !== '') return;
  }
  loadValue(schema, value);
}

function toggleValueMode() {
  setEditorError('');
  try {
    editor.value.toggle()?.focus();
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    setEditorError(err.message);
  }
}

function setEditorNamesLocked(locked) {
  $('#editor-ns').readOnly = locked;
  $('#editor-key').readOnly = locked;
}

function setEditorError(text) {
  $('#editor-error').textContent = text;
  if (!text) {
    $('#editor-offer').replaceChildren();
    editor.conflict = null;
    $('#editor-reload').hidden = true;
  }
}

/** Reads the form; throws an InputError naming what is wrong. */
function readEditor() {
  const ns = $('#editor-ns').value.trim();
  const key = $('#editor-key').value.trim();
  for (const [label, name] of [['Namespace', ns], ['Key', key]]) {
    if (!NAME_RE.test(name)) {
      throw new InputError(`${label} "${name}" is not a valid name: 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit.`);
    }
  }
  if (ns === META_NAMESPACE) {
    throw new InputError(`Namespace "${META_NAMESPACE}" is reserved for namespace descriptions: use Describe on a namespace instead.`);
  }
  if (ns === SCHEMAS_NAMESPACE) {
    throw new InputError(`Namespace "${SCHEMAS_NAMESPACE}" is reserved for the schemas of namespaces.`);
  }
  if (isReserved(ns)) throw new InputError(`Namespace "${ns}" is reserved for the server's own records.`);
  if (!canWrite(ns)) {
    throw new InputError(`Your token (${identity.name}, ${identity.role} on ${identity.patterns.join(', ') || 'nothing'}) may not write namespace "${ns}".`);
  }
  return { ns, key, value: editor.value.read() };
}

async function saveEditor(event) {
  event.preventDefault();
  setEditorError('');
  editor.value.clearViolations();
  let input;
  try {
    input = readEditor();
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    setEditorError(err.message);
    return;
  }
  const { ns, key, value } = input;
  const headers = editor.mode === 'edit'
    ? { 'If-Match': `"${editor.baseRevision}"` }
    : { 'If-None-Match': '*' };
  await whileBusy($('#editor-save'), async () => {
    try {
      const entry = await api('PUT', keyPath(ns, key), { body: { value }, headers, comment: commentOf($('#editor-comment')) });
      state.selectedNs = ns;
      closePanel($('#editor'));
      notify(`Saved ${entryId(ns, key)} at revision ${entry.revision}.`);
    } catch (err) {
      if (err.status === 412) await showConflict(ns, key);
      else {
        const violations = violationsOfError(err);
        // Listed beside the value (and the form's fields) they are about, not repeated here.
        setEditorError(violations.length
          ? `Not saved: the value breaks this key's JSON Schema (${plural(violations.length, 'violation')}, listed under the value).`
          : `Not saved: ${describeError(err)}`);
        editor.value.showViolations(violations);
        const offer = requestOffer(err, {
          ops: [{ op: 'put', namespace: ns, key, body: { value } }],
          comment: commentOf($('#editor-comment')),
          base: { namespace: ns, key, revision: editor.mode === 'edit' ? editor.baseRevision : 0 },
          opened: () => closePanel($('#editor')),
        });
        if (offer) $('#editor-offer').append(offer);
      }
    }
  });
}

/** Explains a 412 with the server's current state; the text in the editor is kept. */
async function showConflict(ns, key) {
  const label = entryId(ns, key);
  let current;
  try {
    current = await api('GET', keyPath(ns, key));
  } catch (err) {
    current = err.status === 404 ? null : entryOf(ns, key) ?? null;
  }
  if (!current) {
    // Edited key deleted meanwhile: saving again would create it anew, which is
    // what a second click on Save now does, knowingly.
    editor.mode = 'create';
    editor.baseRevision = null;
    $('#editor-title').textContent = `Re-create ${label}`;
    $('#editor-error').textContent = `Edit conflict: ${label} was deleted since you opened it; nothing was saved. Save again to create it anew.`;
    return;
  }
  const verb = editor.mode === 'edit' ? 'Edit conflict: someone changed' : 'Create conflict: someone already created';
  $('#editor-error').textContent = `${verb} ${label}; it is now at revision ${current.revision} by ${current.updated_by} (${relativeTime(current.updated_at)}). Nothing was saved; your text is kept.`;
  editor.conflict = current;
  $('#editor-reload').hidden = false;
}

function reloadEditorFromConflict() {
  const current = editor.conflict;
  if (!current) return;
  loadIntoEditor(current);
  setEditorError('');
  $('#editor-notice').textContent = '';
  valueFocus().focus();
}

/** Warns, before Save, that the key being edited changed underneath. */
function editorKeyChanged(id) {
  if ($('#editor').hidden || editor.mode !== 'edit') return;
  if (entryId($('#editor-ns').value, $('#editor-key').value) !== id) return;
  const entry = state.entries.get(id);
  const notice = $('#editor-notice');
  if (!entry) notice.textContent = 'This key was deleted since you opened it.';
  else if (entry.revision !== editor.baseRevision) {
    notice.textContent = `Changed since you opened it: now revision ${entry.revision} by ${entry.updated_by}. Saving will report a conflict.`;
  } else notice.textContent = '';
}

/** Delete, guarded by If-Match; the message offers an Undo until dismissed. */
export function confirmDelete(entry, opener) {
  const { namespace: ns, key, revision } = entry;
  const label = entryId(ns, key);
  confirmAction({
    title: `Delete ${label}?`,
    text: `The key and its value (revision ${revision}) go away for every client. Undo stays offered in the message until you dismiss it.`,
    extra: el('pre', { class: 'confirm-value' }, truncate(prettyJson(entry.value), 2000)),
    typeName: key,
    okLabel: 'Delete',
    danger: true,
    opener,
    offer: (err, comment) => requestOffer(err, {
      ops: [{ op: 'delete', namespace: ns, key }],
      comment,
      base: { namespace: ns, key, revision },
      opened: closeConfirm,
    }),
    run: async (comment) => {
      try {
        const result = await asOwn(ns, key, 'delete', () => api('DELETE', keyPath(ns, key), {
          headers: { 'If-Match': `"${revision}"` }, comment,
        }));
        return {
          text: `Deleted ${label} at revision ${result.revision}.`,
          options: { kind: 'undo', action: { label: 'Undo', run: () => undoDelete(ns, key, revision) } },
        };
      } catch (err) {
        if (err.status === 412) {
          const now = entryOf(ns, key);
          const where = now ? ` It is now at revision ${now.revision} by ${now.updated_by}.` : '';
          throw new ApiError(412, 'revision_mismatch', `${label} changed after revision ${revision}; nothing was deleted.${where}`);
        }
        throw err;
      }
    },
  });
}

async function undoDelete(ns, key, revision) {
  const label = entryId(ns, key);
  try {
    const entry = await api('POST', keyPath(ns, key, '/rollback'), {
      body: { to_revision: revision }, comment: `undo the delete of ${label}`,
    });
    notify(`Restored ${label} at revision ${entry.revision} (the value of revision ${revision}).`);
  } catch (err) {
    showError(`Undo of the delete of ${label} failed: ${describeError(err)}`);
  }
}

export function initEditor() {
  editor.value = createValueEditor({
    textarea: $('#editor-value'),
    formSlot: $('#editor-schema-form'),
    toggle: $('#editor-as-json'),
    note: $('#editor-schema-note'),
    violations: $('#editor-violations'),
    labelEl: $('#editor-value-label'),
    label: 'Value',
    jsonOnly: [$('#editor-hint')],
    idPrefix: 'editor-field',
  });
  on('change', ({ change }) => editorKeyChanged(entryId(change.namespace, change.key)));
  on('replace', () => {
    if (state.synced) editorKeyChanged(entryId($('#editor-ns').value, $('#editor-key').value));
  });
  on('rights', () => {
    if (!canWriteSomewhere()) closePanel($('#editor'));
  });
  $('#new-key').addEventListener('click', (event) => openEditor(null, event.currentTarget));
  $('#editor-form').addEventListener('submit', saveEditor);
  $('#editor-cancel').addEventListener('click', () => closePanel($('#editor')));
  $('#editor-reload').addEventListener('click', reloadEditorFromConflict);
  $('#editor-as-json').addEventListener('click', toggleValueMode);
  $('#editor-ns').addEventListener('change', onNameChange);
  $('#editor-key').addEventListener('change', onNameChange);
}
