// The demo page: the <sphinx-chat> element of the sphinx-web package on the models of models.json
// (`make demo` writes one listing the demo model); `?model=URL` opens another manifest. The page
// says when the model is the random-weight demo model.

const chat = document.getElementById('chat');
const params = new URLSearchParams(location.search);
if (params.get('model')) chat.setAttribute('model', params.get('model'));

const demo = new URL(chat.getAttribute('demo-model'), location.href).href;
chat.addEventListener('ready', () => {
  document.getElementById('notice').hidden = chat.model?.manifestUrl !== demo;
  document.body.dataset.ready = 'true';
});
chat.addEventListener('answer', () => {
  document.body.dataset.answered = String(Number(document.body.dataset.answered || 0) + 1);
});

// out/site/ (make demo) has the package beside the page; a checkout served whole has it one level up.
await import('./pkg/sphinx-chat.js').catch(() => import('../pkg/sphinx-chat.js'));
