// One answer in the chat log: the text with each `<p>phrase</p>` as a coloured chip and each `[…]`
// as a small marker, both linked to their shapes (data-g = grounding index, in reading order), a
// chart→table answer as a table (its raw rows left out of the text), and the answer's figures (time to first token, tokens, speed,
// how it ended).

import { colourOf, describeShape } from './overlay.js';

function chip(g, i) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'chip';
  b.dataset.g = String(i);
  b.style.setProperty('--c', colourOf(i));
  b.textContent = g.phrase;
  b.setAttribute('aria-label', `${g.phrase}: ${g.shapes.map(describeShape).join('; ') || 'no shape'}`);
  return b;
}

function coords(g, i, focusable) {
  const el = document.createElement(focusable ? 'button' : 'span');
  if (focusable) el.type = 'button';
  el.className = 'coords';
  el.dataset.g = String(i);
  el.style.setProperty('--c', colourOf(i));
  el.textContent = `#${i + 1}`;
  el.title = g.shapes.map(describeShape).join('; ') || 'no shape';
  if (focusable) el.setAttribute('aria-label', `shape ${i + 1}: ${el.title}`);
  else el.setAttribute('aria-hidden', 'true');
  return el;
}

/** The answer text as nodes: plain text between phrase chips and coordinate markers. */
export function answerNodes(text, drawing) {
  const marks = [];
  drawing?.groundings.forEach((g, i) => {
    if (g.phraseRange) marks.push({ at: g.phraseRange, node: () => chip(g, i) });
    marks.push({ at: g.bracketRange, node: () => coords(g, i, !g.phraseRange) });
  });
  marks.sort((a, b) => a.at[0] - b.at[0]);
  const out = [];
  let pos = 0;
  for (const m of marks) {
    if (m.at[0] < pos) continue; // overlapping ranges cannot come from the parser; be safe
    if (m.at[0] > pos) out.push(document.createTextNode(text.slice(pos, m.at[0])));
    out.push(m.node());
    pos = m.at[1];
  }
  if (pos < text.length) out.push(document.createTextNode(text.slice(pos)));
  return out;
}

/** The text of a chart→table answer without its table: the longest run of lines holding a `|`
 *  (rows may also be split by DePlot's `<0x0A>` or by `&&&`), as the engine's parse_table finds
 *  it; the text before and after it stays. */
export function withoutTable(text) {
  const lines = text.replace(/<0x0A>|&&&/g, '\n').split('\n');
  let best = [0, 0];
  let start = -1;
  lines.concat('').forEach((line, i) => {
    if (line.includes('|')) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      if (i - start > best[1] - best[0]) best = [start, i];
      start = -1;
    }
  });
  return [...lines.slice(0, best[0]), ...lines.slice(best[1])].join('\n').trim();
}

/** A table element of rows of cells (the first row as the header); short rows are padded. */
export function tableNode(rows) {
  const width = Math.max(...rows.map((r) => r.length));
  const table = document.createElement('table');
  table.className = 'answer-table';
  rows.forEach((r, k) => {
    const tr = table.insertRow();
    for (let c = 0; c < width; c++) {
      const cell = document.createElement(k === 0 ? 'th' : 'td');
      cell.textContent = r[c] ?? '';
      tr.append(cell);
    }
  });
  return table;
}

const FINISH = {
  stop: () => 'finished',
  length: (n) => `stopped at the ${n}-token limit (raise Max tokens in Settings for longer answers)`,
  aborted: () => 'stopped by you',
};

/** The figures of an answer: "0.8 s to the first token · 24 tokens · 12.1 tokens/s · finished". */
export function statsText({ firstTokenMs, tokens, totalMs, finish, maxTokens }) {
  const parts = [];
  if (firstTokenMs != null) parts.push(`${(firstTokenMs / 1000).toFixed(1)} s to the first token`);
  parts.push(`${tokens} token${tokens === 1 ? '' : 's'}`);
  const decodeMs = firstTokenMs != null && tokens > 1 ? totalMs - firstTokenMs : 0;
  if (decodeMs > 0) parts.push(`${((tokens - 1) / (decodeMs / 1000)).toFixed(1)} tokens/s`);
  parts.push((FINISH[finish] ?? (() => finish))(maxTokens));
  return parts.join(' · ');
}
