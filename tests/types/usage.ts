// Compiled (not run) by tests/web/types.test.js with `tsc --noEmit --strict`: the package's types
// must describe how the README uses it.
import { loadSphinx, TASKS, taskPrompt, regionText, parseAnswer, explain, OpenAIError } from '../../pkg/index.js';
import type { ChatCompletion, ChatCompletionChunk, Drawing, Task } from '../../pkg/index.js';
import '../../pkg/sphinx-chat.js';

export async function usage(canvas: HTMLCanvasElement): Promise<void> {
  const model = await loadSphinx('models/demo/manifest.json', { onProgress: (e) => console.log(e.phase, e.loaded / e.total) });
  const pixels = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
  const image = await model.encodeImage(pixels);
  const task: Task = { task: 'keypoints', region: { x1: 10, y1: 20, x2: 100, y2: 200 } };
  const prompt: string = await taskPrompt(task, image);
  const box: string = await regionText({ x1: 0, y1: 0, x2: 5, y2: 5 }, { width: 10, height: 10 });
  let answer = '';
  for await (const { text } of model.chat({ system: 'Be brief.', messages: [{ role: 'user', content: `${prompt} ${box}` }], image, temperature: 0, stop: ['\n'] })) answer += text;
  const drawing: Drawing = await parseAnswer(answer, image);
  const rows: string[][] | null = drawing.table;
  console.log(TASKS.map((t) => t.id), rows, explain(new Error('x')).title);
  const whole: ChatCompletion = await model.openai.chat.completions.create({ messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }] });
  console.log(whole.usage.total_tokens);
  const stream = await model.openai.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], stream: true });
  for await (const chunk of stream) {
    const c: ChatCompletionChunk = chunk;
    console.log(c.choices[0]?.delta.content);
  }
  try {
    await model.openai.chat.completions.create({ messages: [] });
  } catch (e) {
    if (e instanceof OpenAIError) console.log(e.status, e.error.param);
  }
  const chat = document.querySelector('sphinx-chat')!;
  chat.addEventListener('answer', (e) => console.log(e.detail.answer, e.detail.drawing.groundings.length));
  await chat.renderAnswer('<p>a</p> [0.1, 0.1, 0.2, 0.2]');
  await image.dispose();
  await model.dispose();
}
