// The demo page: the <sphinx-chat> element of the sphinx-web package on the models of models.json
// (`make demo` writes one listing the demo model); `?model=URL` opens another manifest, `?device=`
// auto, gpu or cpu picks where it runs. The page says when the model is the random-weight demo
// model, from the moment it starts loading.

const chat = document.getElementById('chat');
const params = new URLSearchParams(location.search);
if (params.get('model')) chat.setAttribute('model', params.get('model'));
if (params.get('device')) chat.setAttribute('device', params.get('device'));

const demo = new URL(chat.getAttribute('demo-model'), location.href).href;
chat.addEventListener('loading', (e) => {
  document.getElementById('notice').hidden = e.detail.url !== demo;
  delete document.body.dataset.ready;
});
chat.addEventListener('ready', () => {
  document.body.dataset.ready = 'true';
});
chat.addEventListener('answer', () => {
  document.body.dataset.answered = String(Number(document.body.dataset.answered || 0) + 1);
});

// out/site/ (make demo) has the package beside the page; a checkout served whole has it one level up.
await import('./pkg/sphinx-chat.js').catch(() => import('../pkg/sphinx-chat.js'));
