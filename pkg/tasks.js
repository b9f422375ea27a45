// SPHINX's task mix for a page: the tasks (TASKS), the exact upstream prompt of each (taskPrompt),
// a region as the bracket the model reads (regionText), and the shapes and table of an answer
// (parseAnswer). All of it is the engine's (`sphinx::text::tasks`): the table as a module written
// when the package is built, the rest through wasm.

import { engine } from './engine.js';
import { TASK_TABLE } from './wasm/tasks.js';

/** The tasks SPHINX was tuned on, in the order a page lists them: the engine's table
 *  (`sphinx::text::tasks::TASKS`, written to wasm/tasks.js when the package is built). `fields` are
 *  what the task needs besides the image; `shows` is what its answer brings to draw: 'boxes',
 *  'points', 'table' or null (text only). */
export const TASKS = Object.freeze(TASK_TABLE.map((t) => Object.freeze({ ...t, fields: Object.freeze(t.fields.map((f) => Object.freeze(f))) })));

/** {width, height} of a size or SphinxImage; 0 x 0 when none is given. */
function sizeOf(size) {
  if (size == null) return [0, 0];
  const { width, height } = size;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new TypeError('expected the image size as {width, height} (positive integers) or a SphinxImage');
  }
  return [width, height];
}

/** The exact upstream user message of a task: `taskPrompt({task: 'detect', class: 'dogs'})` →
 *  "Detect all dogs shown in the image.". A `region` is in image pixels `{x1, y1, x2, y2}` of an
 *  image of `size` ({width, height} or a SphinxImage), written as padded-square fractions. */
export async function taskPrompt(task, size) {
  if (!task || typeof task.task !== 'string') throw new TypeError("taskPrompt: expected {task: id, ...fields}, e.g. {task: 'detect', class: 'dogs'}");
  const [w, h] = sizeOf(size);
  return (await engine()).taskPrompt(JSON.stringify(task), w, h);
}

/** A region in image pixels `{x1, y1, x2, y2}` as the bracket the model reads, to put into any
 *  question: "[0.10, 0.20, 0.50, 0.60]". */
export async function regionText(region, size) {
  const [w, h] = sizeOf(size);
  if (!w) throw new TypeError('regionText: the image size is needed');
  return (await engine()).regionText(JSON.stringify(region), w, h);
}

/** Boxes, points, key-point skeleton and table of an answer about an image of `size`, in its
 *  pixels, with the UTF-16 ranges of each `<p>phrase</p>` and `[…]` in the answer. */
export async function parseAnswer(answer, size) {
  const [w, h] = sizeOf(size);
  if (!w) throw new TypeError('parseAnswer: the image size is needed');
  return JSON.parse((await engine()).parseAnswer(String(answer), w, h));
}

/** The task ids the engine knows (equal to TASKS' ids). */
export async function taskIds() {
  return JSON.parse((await engine()).taskIds());
}
