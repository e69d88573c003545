// What both pages of the tidings web app use: DOM helpers and the JSON call to this process.
// Text is only ever inserted as text (textContent), never as markup.

export const $ = (sel) => document.querySelector(sel);

// A time (Unix seconds) as the clock on this machine shows it.
export const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

// POST params as JSON to path; the answer's result, or throw its error (message, code, data).
export async function post(path, params = {}) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(params),
  });
  const answer = await response.json();
  if (answer.error) throw Object.assign(new Error(answer.error.message), answer.error);
  return answer.result;
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}
