// The shadow DOM of <sphinx-chat>: the model bar, the image panel (input, overlay, region tool,
// list of shapes) and the chat (task picker, question, settings, log). Parts are found by their
// data-* attribute; the styles are sphinx-chat.css beside this file.

const CSS = new URL('./sphinx-chat.css', import.meta.url).href;

export const TEMPLATE = `
<link rel="stylesheet" href="${CSS}">
<div class="sx" part="root">
  <a class="skip" href="#" data-skip>Skip to the chat ↓</a>
  <section class="panel load" part="load" aria-label="Model">
    <div class="row">
      <label class="model-pick" data-model-pick hidden>Model <select data-models></select></label>
      <div class="grow model-line small" data-model-line><span class="muted">Manifest</span> <code data-model-url></code></div>
    </div>
    <progress data-bar max="1" value="0" aria-label="Loading the model"></progress>
    <div data-load-text class="small" role="status" aria-live="polite">Starting…</div>
    <div data-load-error class="error-box" role="alert" hidden>
      <strong data-error-title></strong> <span data-error-help></span>
      <div class="small">Model: <code data-error-url></code></div>
      <details><summary>Details</summary><code data-error-details></code></details>
    </div>
    <div class="row small">
      <button type="button" data-cancel hidden>Cancel loading</button>
      <button type="button" data-retry hidden>Retry</button>
      <button type="button" data-use-demo hidden>Use the demo model</button>
      <span class="grow"></span>
      <span data-cache-size class="muted"></span>
      <button type="button" data-clear hidden>Clear cache…</button>
      <span data-confirm class="confirm" role="group" aria-label="Delete the stored model?" hidden>
        <span data-confirm-text></span>
        <button type="button" class="danger" data-confirm-yes>Delete</button>
        <button type="button" data-confirm-no>Keep</button>
      </span>
    </div>
    <div data-gpu class="muted small"></div>
  </section>
  <div class="main">
    <section class="panel image-panel" aria-label="Image">
      <div class="drop" data-drop tabindex="0" role="button" aria-describedby="drop-help">
        <div class="stack" data-stack hidden>
          <canvas data-image role="img" aria-label="The image" width="0" height="0"></canvas>
          <canvas data-overlay class="overlay" aria-hidden="true" width="0" height="0"></canvas>
          <div data-region-box class="region-box" hidden></div>
        </div>
        <p data-drop-hint id="drop-help" class="muted">Drop an image here, paste one (Ctrl+V), or press Enter to choose a file.</p>
      </div>
      <div class="row center">
        <button type="button" data-choose>Choose a file</button>
        <input type="file" accept="image/*" data-file hidden>
        <button type="button" data-camera>Camera</button>
        <button type="button" data-sample hidden>Sample image</button>
        <button type="button" data-region-tool aria-pressed="false" disabled>Draw a region</button>
      </div>
      <div data-camera-box hidden>
        <video data-video autoplay playsinline muted></video>
        <div class="row center"><button type="button" data-snap>Capture</button><button type="button" data-camera-close>Close</button></div>
      </div>
      <fieldset data-region-fields class="region-fields" hidden>
        <legend>Region in image pixels <span class="muted">(drag a rectangle on the image, or focus the image and use the arrow keys: Shift resizes; or type the pixels)</span></legend>
        <label>x1 <input type="number" data-r="x1" min="0" step="1"></label>
        <label>y1 <input type="number" data-r="y1" min="0" step="1"></label>
        <label>x2 <input type="number" data-r="x2" min="0" step="1"></label>
        <label>y2 <input type="number" data-r="y2" min="0" step="1"></label>
        <button type="button" data-region-insert>Insert into the question</button>
        <button type="button" data-region-clear>Clear</button>
      </fieldset>
      <div data-image-confirm class="confirm image-confirm small" role="group" aria-labelledby="image-confirm-text" hidden>
        <span id="image-confirm-text">A new image starts a new chat: the conversation so far is cleared.</span>
        <button type="button" class="danger" data-image-yes>Use the new image</button>
        <button type="button" data-image-no>Keep this chat</button>
      </div>
      <div data-image-status class="small muted" role="status" aria-live="polite"></div>
      <div data-shapes-box class="shapes" hidden>
        <h2 class="small">Shapes of the shown answer</h2>
        <ol data-shapes id="shapes"></ol>
      </div>
    </section>
    <section class="panel chat-panel" aria-label="Chat" data-chat tabindex="-1">
      <div data-log class="log" role="log" aria-live="off" aria-label="Conversation"></div>
      <div data-announce class="sr-only" aria-live="polite"></div>
      <form data-form>
        <div class="tasks" data-tasks role="group" aria-label="Task"></div>
        <div data-task-fields class="task-fields"></div>
        <label class="sr-only" for="question">Question</label>
        <textarea id="question" data-question rows="3" placeholder="Ask about the image…"></textarea>
        <div class="examples small" data-examples></div>
        <details class="settings small" data-settings>
          <summary>Settings</summary>
          <div class="row">
            <label>Temperature <input type="number" data-temperature min="0" max="2" step="any"></label>
            <label>Top-p <input type="number" data-top-p min="0.01" max="1" step="any"></label>
            <label>Max tokens <input type="number" data-max-tokens min="1" max="8192" step="1"></label>
            <label>Seed <input type="number" data-seed min="0" step="1"></label>
          </div>
        </details>
        <div class="row">
          <span data-reason id="send-reason" class="muted small grow"></span>
          <button type="button" data-new-chat>New chat</button>
          <button type="button" data-stop disabled aria-keyshortcuts="Escape">Stop</button>
          <button type="submit" data-send class="primary" disabled aria-describedby="send-reason">Send</button>
        </div>
      </form>
    </section>
  </div>
</div>`;
