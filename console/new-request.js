// Filing a request: the policy's payload JSON Schema becomes the form (types, required
// fields, enums, descriptions). The server checks everything again; its field errors
// (`extensions.field`, e.g. `payload.orderId`) land on the field they are about.
import { useMemo, useState } from 'preact/hooks';
import { REQUEST_ROW, sentence, viewerMay } from './api.js';
import { checkAmount, currencyDigits } from './format.js';
import { ErrorText, Field, describedBy, html, useFocusHeading, useMutation } from './ui.js';

const SUBMIT = `mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { replayed request { ${REQUEST_ROW} } } }`;
const CURRENCIES = ['EUR', 'USD', 'GBP', 'CHF', 'JPY', 'SEK', 'NOK', 'DKK', 'PLN', 'KWD'];

export function mayFile(viewer, policy) {
  return viewerMay(viewer, 'REQUEST_SUBMIT', policy.key);
}

function humanise(name) {
  const words = name.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/[_-]+/g, ' ').trim().toLowerCase();
  return words ? words[0].toUpperCase() + words.slice(1) : 'Unnamed field';
}

/**
 * The payload fields a schema describes, in its order; anything not flat is edited as JSON.
 * A field is only ever looked up as an own property (here, in the form's Map and in the
 * payload built with no prototype): a field named `constructor`, `toString` or
 * `__proto__` is a field like any other, not something every object inherits.
 */
function fieldsOf(schema) {
  if (!schema || schema.type !== 'object' || !isObject(schema.properties)) return [];
  const required = new Set(Array.isArray(schema.required) ? schema.required : []);
  return Object.entries(schema.properties).map(([name, described]) => {
    const spec = isObject(described) ? described : {};
    let kind = 'json';
    if (Array.isArray(spec.enum)) kind = 'enum';
    else if (spec.type === 'string') kind = 'string';
    else if (spec.type === 'integer' || spec.type === 'number') kind = spec.type;
    else if (spec.type === 'boolean') kind = 'boolean';
    const title = typeof spec.title === 'string' ? spec.title.trim() : '';
    return { name, spec, kind, required: required.has(name), label: title || humanise(name) };
  });
}

function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function payloadValue(field, raw) {
  if (field.kind === 'boolean') return { value: Boolean(raw) };
  const text = (raw ?? '').toString().trim();
  if (!text) return field.required ? { error: `${field.label} is required.` } : { skip: true };
  if (field.kind === 'integer' || field.kind === 'number') {
    const ok = field.kind === 'integer' ? /^-?\d+$/.test(text) : /^-?\d+(\.\d+)?$/.test(text);
    return ok ? { value: Number(text) } : { error: `${field.label} must be ${field.kind === 'integer' ? 'a whole number' : 'a number'}.` };
  }
  if (field.kind === 'json') {
    try {
      return { value: JSON.parse(text) };
    } catch {
      return { error: `${field.label} must be valid JSON.` };
    }
  }
  if (field.kind === 'enum') {
    const match = field.spec.enum.find((option) => String(option) === text);
    return { value: match };
  }
  return { value: text };
}

export function NewRequest({ session, policies }) {
  const heading = useFocusHeading('new');
  const usable = policies.filter((p) => mayFile(session.viewer, p));
  const [policyKey, setPolicyKey] = useState(usable.length === 1 ? usable[0].key : '');
  const [values, setValues] = useState({ title: '', amount: '', currency: 'EUR', description: '' });
  const [payload, setPayload] = useState(() => new Map());
  const [errors, setErrors] = useState({});
  const mutation = useMutation(session);
  const policy = usable.find((p) => p.key === policyKey);
  const fields = useMemo(() => fieldsOf(policy && policy.payloadSchema), [policy]);

  if (usable.length === 0) {
    return html`<section><h1 tabindex="-1" ref=${heading}>New request</h1><p>You may not file requests under any policy.</p></section>`;
  }
  const set = (name) => (e) => setValues({ ...values, [name]: e.target.value });
  const setField = (name, value) => setPayload(new Map(payload).set(name, value));

  const filed = (outcome) => {
    if (outcome.data) {
      location.hash = `#/requests/${outcome.data.submitRequest.request.id}`;
      return;
    }
    const err = outcome.error;
    if (err && err.field && document.getElementById(fieldId(err.field))) {
      mutation.setError(null);
      setErrors({ [err.field]: sentence(err) });
      // After the form is enabled again (it is disabled while the call runs).
      setTimeout(() => document.getElementById(fieldId(err.field))?.focus(), 0);
    }
  };

  const submit = async (e) => {
    e.preventDefault();
    if (mutation.uncertain) return;
    const found = {};
    if (!policy) found.policy = 'Choose a policy.';
    if (!values.title.trim()) found.title = 'Give the request a title.';
    const currency = values.currency.trim().toUpperCase();
    if (!/^[A-Z]{3}$/.test(currency)) found.currency = 'Enter a three-letter currency code such as EUR.';
    else {
      const problem = checkAmount(values.amount, currency);
      if (problem) found.amount = problem;
    }
    const body = Object.create(null);
    for (const field of fields) {
      const result = payloadValue(field, payload.get(field.name));
      if (result.error) found[`payload.${field.name}`] = result.error;
      else if (!result.skip) body[field.name] = result.value;
    }
    setErrors(found);
    mutation.setError(null);
    if (Object.keys(found).length) {
      const first = document.getElementById(fieldId(Object.keys(found)[0]));
      if (first) first.focus();
      return;
    }
    const input = { policy: policy.key, title: values.title.trim(), amount: values.amount.trim(), currency,
      description: values.description.trim() || null, payload: body };
    filed(await mutation.run(SUBMIT, input));
  };

  const digits = currencyDigits(values.currency);
  const input = (name, props = {}) => html`<input id=${fieldId(name)} value=${values[name]} onInput=${set(name)}
    aria-invalid=${errors[name] ? 'true' : 'false'} aria-describedby=${describedBy(fieldId(name), props.hint, errors[name])} ...${props.attrs || {}} />`;

  return html`<section aria-labelledby="new-heading">
    <h1 id="new-heading" tabindex="-1" ref=${heading}>New request</h1>
    <form class="new-request" onSubmit=${submit} noValidate>
      <fieldset class="bare" disabled=${mutation.busy || Boolean(mutation.uncertain)}>
      <${Field} id="new-policy" label="Policy" error=${errors.policy} hint=${policy && policy.description}>
        <select id="new-policy" value=${policyKey} onChange=${(e) => { setPolicyKey(e.target.value); setPayload(new Map()); setErrors({}); }}
          aria-invalid=${errors.policy ? 'true' : 'false'} aria-describedby=${describedBy('new-policy', policy && policy.description, errors.policy)}>
          <option value="">Choose a policy…</option>
          ${usable.map((p) => html`<option value=${p.key}>${p.name}</option>`)}
        </select>
      </${Field}>
      <${Field} id="new-title" label="Title (required)" error=${errors.title}>${input('title', { attrs: { maxLength: 200 } })}</${Field}>
      <div class="pair">
        <${Field} id="new-amount" label="Amount (required)" error=${errors.amount} hint=${`${digits} digit${digits === 1 ? '' : 's'} after the point`}>
          ${input('amount', { hint: true, attrs: { inputMode: 'decimal', autocomplete: 'off', placeholder: digits ? `0.${'0'.repeat(digits)}` : '0' } })}
        </${Field}>
        <${Field} id="new-currency" label="Currency" error=${errors.currency}>
          ${input('currency', { attrs: { list: 'currencies', maxLength: 3, autocomplete: 'off' } })}
          <datalist id="currencies">${CURRENCIES.map((c) => html`<option value=${c} />`)}</datalist>
        </${Field}>
      </div>
      <${Field} id="new-description" label="Description" error=${errors.description}>
        <textarea id="new-description" value=${values.description} onInput=${set('description')}
          aria-invalid=${errors.description ? 'true' : 'false'} aria-describedby=${describedBy('new-description', false, errors.description)}></textarea>
      </${Field}>
      ${fields.length > 0 && html`<fieldset><legend>${policy.name} details</legend>
        ${fields.map((field) => html`<${PayloadField} key=${field.name} field=${field} value=${payload.get(field.name)}
          error=${errors[`payload.${field.name}`]} onChange=${(v) => setField(field.name, v)} />`)}
      </fieldset>`}
      </fieldset>
      <${ErrorText} error=${mutation.error} />
      ${mutation.uncertain
        // The request may have been filed: only the same request again, never an edited one.
        ? html`<p>It is not known whether the request was filed. Try again: it will be filed once at most.</p>
          <button type="button" disabled=${mutation.busy} onClick=${async () => filed(await mutation.retry())}>Try again</button>`
        : html`<button type="submit" disabled=${mutation.busy}>File request</button>`}
    </form>
  </section>`;
}

function fieldId(field) {
  return field.startsWith('payload.') ? `payload-${field.slice(8).replace(/[^A-Za-z0-9_-]/g, '_')}` : `new-${field}`;
}

function PayloadField({ field, value, error, onChange }) {
  const id = fieldId(`payload.${field.name}`);
  const hint = field.spec.description;
  const label = `${field.label}${field.required ? ' (required)' : ''}`;
  const common = { id, 'aria-invalid': error ? 'true' : 'false', 'aria-describedby': describedBy(id, hint, error), required: field.required };
  let control;
  if (field.kind === 'boolean') {
    control = html`<input type="checkbox" ...${common} checked=${Boolean(value)} onChange=${(e) => onChange(e.target.checked)} />`;
  } else if (field.kind === 'enum') {
    control = html`<select ...${common} value=${value ?? ''} onChange=${(e) => onChange(e.target.value)}>
      <option value="">Choose…</option>
      ${field.spec.enum.map((option) => html`<option value=${String(option)}>${String(option)}</option>`)}
    </select>`;
  } else if (field.kind === 'json') {
    control = html`<textarea ...${common} value=${value ?? ''} onInput=${(e) => onChange(e.target.value)} placeholder="JSON"></textarea>`;
  } else {
    const numeric = field.kind === 'integer' || field.kind === 'number';
    control = html`<input ...${common} value=${value ?? ''} inputMode=${numeric ? 'decimal' : undefined}
      maxLength=${field.spec.maxLength} onInput=${(e) => onChange(e.target.value)} />`;
  }
  return html`<${Field} id=${id} label=${label} hint=${hint} error=${error}>${control}</${Field}>`;
}
