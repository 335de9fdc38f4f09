// A value edited through a form built from its JSON Schema, where the form can say all the
// schema says: an object of scalar properties (string, number, integer, boolean, enum),
// or one scalar. Anything else (nested objects, arrays, combinators, references) is
// edited as JSON, which is also one click away. And the server's refusals (422
// schema_violation) shown beside the field they are about.

import { el } from './dom.js';
import { InputError, parseJsonField } from './forms.js';
import { compactJson, JsonNumber, parseJson, prettyJson, sameJson } from './json.js';

// The first violations of a refusal shown; the rest are counted.
const MAX_SHOWN_VIOLATIONS = 5;
// Keywords a field renders, or that constrain a value without changing its shape (the
// server judges those). A schema with any other keyword is left to the JSON editor, so
// the form never hides a rule.
const FIELD_KEYWORDS = new Set(['type', 'enum', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum',
  'multipleOf', 'minLength', 'maxLength', 'pattern', 'format', 'title', 'description', 'default', 'examples',
  'deprecated', '$comment']);
const OBJECT_KEYWORDS = new Set(['type', 'properties', 'required', 'additionalProperties', 'title', 'description',
  'default', 'examples', '$comment', '$schema', '$id']);
const SCALAR_TYPES = new Set(['string', 'number', 'integer', 'boolean']);
const NUMBER_TEXT_RE = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonNumber);
const onlyKeywords = (schema, allowed) => Object.keys(schema).every((k) => allowed.has(k));

/** One field's plan ({kind, schema}), or null when the form cannot render the schema. */
function planField(schema) {
  if (!isObject(schema) || !onlyKeywords(schema, FIELD_KEYWORDS)) return null;
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return { kind: 'enum', schema };
  if (typeof schema.type === 'string' && SCALAR_TYPES.has(schema.type)) return { kind: schema.type, schema };
  return null;
}

/**
 * How the form renders `schema`: {fields: [{name, kind, schema, required}]} for an
 * object ({name: null} for a scalar), or null: edit the JSON.
 */
export function planForm(schema) {
  const scalar = planField(schema);
  if (scalar) return { object: false, fields: [{ name: null, required: true, ...scalar }] };
  if (!isObject(schema) || schema.type !== 'object' || !isObject(schema.properties)) return null;
  if (!onlyKeywords(schema, OBJECT_KEYWORDS)) return null;
  const required = new Set(Array.isArray(schema.required) ? schema.required : []);
  const fields = [];
  for (const [name, property] of Object.entries(schema.properties)) {
    const field = planField(property);
    if (!field) return null;
    fields.push({ name, required: required.has(name), ...field });
  }
  return fields.length > 0 ? { object: true, fields } : null;
}

const isNumber = (v) => typeof v === 'number' || v instanceof JsonNumber;

function fits(field, value) {
  if (value === undefined) return true;
  switch (field.kind) {
    case 'enum': return field.schema.enum.some((option) => sameJson(option, value));
    case 'string': return typeof value === 'string';
    case 'boolean': return typeof value === 'boolean';
    default: return isNumber(value);
  }
}

/** Whether the form can show `value` (undefined: a new key) without losing any of it. */
function formFits(plan, value) {
  if (!plan.object) return fits(plan.fields[0], value);
  if (value === undefined) return true;
  return isObject(value) && plan.fields.every((field) => fits(field, value[field.name]));
}

/** A JSON Pointer's token for a property name (RFC 6901). */
const pointerToken = (name) => name.replaceAll('~', '~0').replaceAll('/', '~1');

/**
 * The list of a refusal's violations: path, keyword and message of the first few, and
 * with `keys` the key and variant (a schema change refused for the values it breaks).
 */
export function violationList(violations, { keys = false } = {}) {
  const shown = violations.slice(0, MAX_SHOWN_VIOLATIONS).map((v) => el('li', {},
    keys && el('strong', {}, `${v.key}${v.variant === 'gray' ? ' (gray)' : ''} `),
    el('code', { class: 'violation-path' }, v.path || '(the value)'), ' ',
    el('span', { class: 'violation-keyword' }, v.keyword), ': ', v.message));
  const rest = violations.length - shown.length;
  return rest > 0 ? [...shown, el('li', { class: 'muted' }, `and ${rest} more`)] : shown;
}

/** Shows a refusal's violations in `list` (a <ul>), or hides it when there are none. */
export function showViolations(list, violations, options) {
  list.replaceChildren(...violationList(violations ?? [], options));
  list.hidden = !violations?.length;
}

/** The violations of a failed write, when the schema refused it. */
export function violationsOfError(err) {
  return err?.code === 'schema_violation' && Array.isArray(err.details) ? err.details : [];
}

function fieldInput(field, id) {
  const { kind, schema, required } = field;
  const common = { id, 'aria-required': required ? 'true' : null };
  if (kind === 'enum') {
    return el('select', common,
      el('option', { value: '' }, required ? 'Choose…' : '(not set)'),
      schema.enum.map((option, i) => el('option', { value: String(i) }, compactJson(option))));
  }
  if (kind === 'boolean') {
    if (required) return el('input', { ...common, type: 'checkbox' });
    return el('select', common, el('option', { value: '' }, '(not set)'),
      el('option', { value: 'true' }, 'true'), el('option', { value: 'false' }, 'false'));
  }
  if (kind === 'string') {
    return el('input', {
      ...common, type: 'text', autocomplete: 'off', spellcheck: 'false',
      minlength: schema.minLength, maxlength: schema.maxLength,
    });
  }
  return el('input', {
    ...common, type: 'number', inputmode: 'decimal', step: kind === 'integer' ? 1 : 'any',
    min: schema.minimum, max: schema.maximum,
  });
}

function fillInput(field, input, value) {
  if (field.kind === 'enum') {
    const index = value === undefined ? -1 : field.schema.enum.findIndex((option) => sameJson(option, value));
    input.value = index < 0 ? '' : String(index);
  } else if (input.type === 'checkbox') {
    input.checked = value === true;
  } else {
    input.value = value === undefined ? '' : String(value);
  }
}

/** A field's value as typed, or undefined when left empty (and allowed to be). */
function readInput(field, input, present) {
  const label = field.name ?? 'The value';
  const missing = () => {
    if (field.required) throw new InputError(`${label} is required.`);
    return undefined;
  };
  if (field.kind === 'enum') return input.value === '' ? missing() : field.schema.enum[Number(input.value)];
  if (input.type === 'checkbox') return input.checked;
  if (field.kind === 'boolean') return input.value === '' ? missing() : input.value === 'true';
  if (field.kind === 'string') return input.value === '' && !present ? missing() : input.value;
  if (input.validity.badInput) throw new InputError(`${label} must be a number.`);
  const text = input.value.trim();
  if (text === '') return missing();
  if (!NUMBER_TEXT_RE.test(text)) throw new InputError(`${label}: "${text}" is not a JSON number.`);
  // Parsed as a value: every digit typed is kept (12345678901234567890 stays as typed).
  return parseJson(text, { exact: true });
}

/**
 * The value field of an editor: a form from the key's schema when it can render it,
 * else (or at a click on the toggle) the JSON textarea. `parts`: {textarea, formSlot,
 * toggle, note, violations, labelEl, label, jsonOnly (shown with the textarea), idPrefix}.
 */
export function createValueEditor(parts) {
  const view = { plan: null, fields: [], base: undefined, asJson: true };

  function renderForm(value) {
    view.base = value;
    view.fields = view.plan.fields.map((field) => {
      const id = `${parts.idPrefix}-${field.name ?? 'value'}`;
      const input = fieldInput(field, id);
      fillInput(field, input, field.name === null ? value : value?.[field.name]);
      const error = el('p', { class: 'error field-violation', 'aria-live': 'polite' });
      const hint = field.schema.description && el('p', { class: 'hint', id: `${id}-hint` }, field.schema.description);
      if (hint) input.setAttribute('aria-describedby', `${id}-hint`);
      // A scalar value is always there: only members are marked required.
      const mark = field.required && field.name !== null && el('span', { class: 'required-mark' }, ' (required)');
      const wrap = el('div', { class: `field schema-field kind-${field.kind}`, 'data-field': field.name ?? '' },
        input.type === 'checkbox'
          ? el('label', { class: 'check', for: id }, input, ' ', field.name ?? parts.label, mark)
          : [el('label', { for: id }, field.name ?? parts.label, mark), input],
        hint, error);
      return { ...field, input, error, wrap };
    });
    parts.formSlot.replaceChildren(...view.fields.map((f) => f.wrap));
  }

  function setMode(asJson) {
    view.asJson = asJson;
    parts.formSlot.hidden = asJson;
    parts.textarea.hidden = !asJson;
    parts.toggle.hidden = !view.plan;
    parts.toggle.textContent = asJson ? 'Edit as form' : 'Edit as JSON';
    parts.toggle.setAttribute('aria-pressed', String(asJson));
    // The label names what takes the value: the textarea, or the form's first field.
    parts.labelEl.textContent = asJson ? `${parts.label} (JSON)` : parts.label;
    parts.labelEl.htmlFor = asJson ? parts.textarea.id : view.fields[0].input.id;
    for (const node of parts.jsonOnly) node.hidden = !asJson;
  }

  /** The value the form holds; throws an InputError naming what to fix. */
  function readForm() {
    if (!view.plan.object) return readInput(view.fields[0], view.fields[0].input, view.base !== undefined);
    // Members the form does not show (allowed by the schema) are kept, in their order.
    const out = isObject(view.base) ? { ...view.base } : {};
    for (const field of view.fields) {
      const value = readInput(field, field.input, isObject(view.base) && Object.hasOwn(view.base, field.name));
      if (value === undefined) delete out[field.name];
      else out[field.name] = value;
    }
    return out;
  }

  function clearViolations() {
    showViolations(parts.violations, []);
    for (const field of view.fields) field.error.textContent = '';
  }

  return {
    /** Shows `value` (undefined: none yet) for a key taking `schema` (null: untyped). */
    load(schema, value) {
      view.plan = schema === null ? null : planForm(schema);
      clearViolations();
      parts.textarea.value = value === undefined ? '' : prettyJson(value);
      parts.note.replaceChildren();
      if (schema !== null && !view.plan) {
        parts.note.append('The schema of this key is beyond the form (nested values, arrays, combinators or references): edit the JSON. ',
          el('details', { class: 'schema-peek' }, el('summary', {}, 'Show the schema'), el('pre', { class: 'json' }, prettyJson(schema))));
      }
      const formable = view.plan && formFits(view.plan, value);
      if (view.plan && !formable) parts.note.append('The current value does not fit the schema\'s form: edit the JSON.');
      if (formable) renderForm(value);
      else parts.formSlot.replaceChildren();
      setMode(!formable);
    },

    /** The value to write; throws an InputError. */
    read() {
      return view.asJson ? parseJsonField(parts.textarea.value, parts.label) : readForm();
    },

    /** Form to JSON and back; throws an InputError when the other side cannot take the value. */
    toggle() {
      if (!view.asJson) {
        const value = readForm();
        parts.textarea.value = prettyJson(value);
        setMode(true);
        return parts.textarea;
      }
      const text = parts.textarea.value;
      const value = text.trim() === '' ? undefined : parseJsonField(text, parts.label);
      if (!formFits(view.plan, value)) throw new InputError('This value does not fit the form (a type or member the schema does not have there): keep editing the JSON.');
      renderForm(value);
      setMode(false);
      return view.fields[0]?.input;
    },

    /** A refusal's violations below the value, and each beside the form field it is about. */
    showViolations(violations) {
      clearViolations();
      showViolations(parts.violations, violations);
      if (view.asJson) return;
      for (const field of view.fields) {
        const path = field.name === null ? '' : `/${pointerToken(field.name)}`;
        const own = violations.filter((v) => v.path === path);
        field.error.textContent = own.map((v) => `${v.keyword}: ${v.message}`).join('; ');
      }
    },

    clearViolations,
  };
}
