// How amounts, times and people read on screen. Amounts arrive as decimal strings and are
// shown as they are, never through a float.

// ISO 4217 currencies whose minor unit is not 2 digits (the rest use 2).
const DIGITS = { BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3, CLF: 4, UYW: 4,
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0,
  UYI: 0, VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0 };

export function currencyDigits(currency) {
  const code = (currency || '').toUpperCase();
  return code in DIGITS ? DIGITS[code] : 2;
}

/** "5000.00" EUR → "5,000.00 EUR", grouping the whole part of the decimal string. */
export function money(amount, currency) {
  const [whole, fraction] = String(amount).split('.');
  const negative = whole.startsWith('-');
  const digits = negative ? whole.slice(1) : whole;
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${negative ? '-' : ''}${grouped}${fraction !== undefined ? `.${fraction}` : ''} ${currency}`;
}

/** A decimal string the currency accepts, or a sentence saying why not. */
export function checkAmount(text, currency) {
  const digits = currencyDigits(currency);
  const value = text.trim();
  const pattern = digits === 0 ? /^\d+$/ : new RegExp(`^\\d+(\\.\\d{1,${digits}})?$`);
  if (!pattern.test(value)) {
    return digits === 0
      ? `Enter a whole amount: ${currency} has no fraction digits.`
      : `Enter an amount such as 1250.${'0'.repeat(digits)}, with at most ${digits} digits after the point.`;
  }
  if (/^0+(\.0+)?$/.test(value)) return 'The amount must be greater than zero.';
  return null;
}

export function when(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** "3 h 20 min left", "expired 5 min ago". */
export function timeLeft(iso, now = Date.now()) {
  const ms = new Date(iso).getTime() - now;
  const text = span(Math.abs(ms));
  return ms >= 0 ? `${text} left` : `expired ${text} ago`;
}

function span(ms) {
  const minutes = Math.floor(ms / 60000);
  if (minutes < 1) return 'under a minute';
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} days ${hours % 24} h`;
}

export function person(user) {
  if (!user) return '';
  return user.name ? `${user.name} (${user.subject})` : user.subject;
}

const STATUS = { PENDING: 'Pending', APPROVED: 'Approved', REJECTED: 'Rejected', CANCELLED: 'Cancelled', EXPIRED: 'Expired' };

export function statusLabel(status) {
  return STATUS[status] || status;
}
