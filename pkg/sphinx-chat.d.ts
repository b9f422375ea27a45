// Types of <sphinx-chat> (sphinx-chat.js): importing the module defines the element.

import type { Drawing, ModelInfo, Region, SphinxImage, SphinxModel, TaskId } from './index.js';

export interface SphinxChatAnswer {
  question: string;
  answer: string;
  finish: 'stop' | 'length';
  stats: { finish: string; tokens: number; promptTokens: number; firstTokenMs: number | null; totalMs: number };
  drawing: Drawing;
}

export interface SphinxChatError {
  kind: string;
  title: string;
  help: string;
  details: string;
}

/** Attributes: model, models (models.json URL), demo-model, sample-image, task, device (auto, gpu
 *  or cpu), temperature, top-p, max-tokens (1 to 8192), seed. */
export class SphinxChat extends HTMLElement {
  readonly model: SphinxModel | null;
  readonly image: SphinxImage | null;
  /** The region drawn on the image, in image pixels. */
  readonly region: Region | null;
  /** The picked task ('ask' = a free question). */
  readonly task: TaskId | 'ask' | null;
  selectTask(id: TaskId | 'ask'): Promise<void>;
  setImage(source: Blob | string): Promise<void>;
  ask(question?: string): Promise<void>;
  /** Shows `text` as an answer (with its shapes drawn); resolves to its drawing. */
  renderAnswer(text: string, options?: { question?: string }): Promise<Drawing>;
  addEventListener(type: 'loading', listener: (e: CustomEvent<{ url: string }>) => void): void;
  addEventListener(type: 'ready', listener: (e: CustomEvent<ModelInfo>) => void): void;
  addEventListener(type: 'answer', listener: (e: CustomEvent<SphinxChatAnswer>) => void): void;
  addEventListener(type: 'error', listener: (e: CustomEvent<SphinxChatError>) => void): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
}

declare global {
  interface HTMLElementTagNameMap {
    'sphinx-chat': SphinxChat;
  }
}
