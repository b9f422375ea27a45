// Shapes of an answer over the image: boxes and points in the colour of their grounding, labels on
// a solid background, the key-point skeleton, one grounding highlighted (hover/focus of its chip);
// and the same shapes as a text list (also the image's accessible description).

/** Colours of the groundings, in reading order; white text is readable on each. */
export const PALETTE = ['#d7263d', '#1b998b', '#2e5eaa', '#c05a00', '#7b2cbf', '#008080', '#b5179e', '#4a7c00'];
const SKELETON = '#ffd000';

export const colourOf = (i) => PALETTE[i % PALETTE.length];

/** Groundings in reading order (the engine gives the demo's right-to-left order). */
export function readingOrder(drawing) {
  const gs = [...(drawing?.groundings ?? [])].sort((a, b) => a.bracketRange[0] - b.bracketRange[0]);
  return { groundings: gs, skeleton: drawing?.skeleton ?? [], table: drawing?.table ?? null };
}

const round = (v) => Math.round(v);

/** A shape in words: "box (12, 40)–(100, 200) px" / "point (40, 30) px". */
export function describeShape(s) {
  return s.kind === 'box' ? `box (${round(s.x1)}, ${round(s.y1)})–(${round(s.x2)}, ${round(s.y2)}) px` : `point (${round(s.x)}, ${round(s.y)}) px`;
}

/** A label on a solid background at the top-left of a box, kept inside the canvas. */
function label(ctx, text, x, y, colour, scale) {
  const pad = 3 * scale;
  const h = 16 * scale;
  const w = ctx.measureText(text).width + 2 * pad;
  x = Math.max(0, Math.min(x, ctx.canvas.width - w));
  const top = Math.min(Math.max(0, y - h), ctx.canvas.height - h);
  ctx.fillStyle = colour;
  ctx.fillRect(x, top, w, h);
  ctx.fillStyle = '#fff';
  ctx.fillText(text, x + pad, top + h - 4 * scale);
}

function drawShape(ctx, s, colour, name, scale, strong) {
  ctx.strokeStyle = colour;
  ctx.fillStyle = colour;
  ctx.lineWidth = (strong ? 6 : 2) * scale;
  if (s.kind === 'box') {
    ctx.strokeRect(s.x1, s.y1, s.x2 - s.x1, s.y2 - s.y1);
    label(ctx, name, s.x1, s.y1, colour, scale);
  } else {
    ctx.beginPath();
    ctx.arc(s.x, s.y, (strong ? 7 : 5) * scale, 0, 2 * Math.PI);
    ctx.fill();
    ctx.lineWidth = 1.5 * scale;
    ctx.strokeStyle = '#fff';
    ctx.stroke();
  }
}

/** Draws `drawing` (reading order) on the overlay canvas; `highlight` is a grounding index or -1. */
export function drawOverlay(canvas, drawing, highlight = -1) {
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!drawing) return;
  // Canvas pixels per CSS pixel: line widths and labels look the same at any image size.
  const shown = canvas.getBoundingClientRect().width || canvas.width;
  const scale = Math.max(1, canvas.width / shown);
  ctx.font = `600 ${12 * scale}px system-ui, sans-serif`;
  ctx.lineJoin = 'round';
  ctx.globalAlpha = 1;
  ctx.strokeStyle = SKELETON;
  ctx.lineWidth = 2 * scale;
  for (const [[x1, y1], [x2, y2]] of drawing.skeleton) {
    ctx.beginPath();
    ctx.moveTo(x1, y1);
    ctx.lineTo(x2, y2);
    ctx.stroke();
  }
  drawing.groundings.forEach((g, i) => {
    if (i === highlight) return;
    ctx.globalAlpha = highlight >= 0 ? 0.45 : 1;
    for (const s of g.shapes) drawShape(ctx, s, colourOf(i), g.phrase ?? `#${i + 1}`, scale, false);
  });
  ctx.globalAlpha = 1;
  const g = drawing.groundings[highlight];
  if (g) for (const s of g.shapes) drawShape(ctx, s, colourOf(highlight), g.phrase ?? `#${highlight + 1}`, scale, true);
}

/** The shapes as list items (`data-g` = grounding index) in `list`; returns their count. */
export function listShapes(list, drawing) {
  list.replaceChildren();
  let n = 0;
  drawing?.groundings.forEach((g, i) => {
    for (const s of g.shapes) {
      const li = document.createElement('li');
      li.dataset.g = String(i);
      li.style.setProperty('--c', colourOf(i));
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.setAttribute('aria-hidden', 'true');
      li.append(sw, `${g.phrase ?? `#${i + 1}`}: ${describeShape(s)}`);
      list.append(li);
      n++;
    }
  });
  return n;
}
