// How figures are shown. A figure the server does not know (null) shows as a dash,
// never as 0: a rate with no traffic is 0, a latency with no request is unknown.
export function fixed(value, digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return value.toFixed(digits);
}

export function integer(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return String(Math.round(value));
}

export function percent(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return `${(value * 100).toFixed(1)}%`;
}

export function ago(seconds) {
  if (seconds < 90) return `${seconds}s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}min ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}

// Makes an element: el('div', {class: 'x'}, child, 'text'). Text is always text (no HTML).
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'class') node.className = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
