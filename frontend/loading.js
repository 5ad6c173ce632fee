// index.html's loading message: how much of the app's wasm (the face models are inside it)
// has arrived, and what went wrong if the app cannot start. The app removes #boot when it
// mounts (frontend/src/main.rs). A module file, not an inline script: the service's
// Content-Security-Policy allows no inline script. It runs before the app's boot module
// (module scripts run in document order), so it sees the app's fetch of the wasm.
const boot = document.getElementById('boot');
const bar = document.getElementById('boot-progress');
const detail = document.getElementById('boot-detail');
const mb = (n) => (n / 1e6).toFixed(1);
const say = (text) => { if (boot && boot.isConnected && detail) detail.textContent = text; };

// The wasm's download, counted on a clone of the response: the app gets the response itself
// untouched (so the browser can still stream-compile and cache the compiled module), and
// nothing is downloaded twice.
async function watch(response) {
  // With compression the length header is the compressed size, while the stream gives
  // decompressed bytes: then the total is the wasm's size, which `cargo xtask web` writes into
  // the bar (data-wasm-bytes); without it only the bytes so far are shown.
  const encoding = response.headers.get('content-encoding');
  const total = encoding && encoding !== 'identity'
    ? Number(bar && bar.dataset.wasmBytes) || 0
    : Number(response.headers.get('content-length')) || 0;
  if (total && bar) bar.max = total;
  const reader = response.body.getReader();
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    loaded += value.byteLength;
    if (!boot.isConnected) { reader.cancel(); return; }
    if (total && bar) bar.value = loaded;
    say(total ? `${mb(loaded)} of ${mb(total)} MB downloaded` : `${mb(loaded)} MB downloaded`);
  }
  if (bar) { bar.max = 1; bar.value = 1; }
  say(`${mb(loaded)} MB downloaded; starting the app…`);
}

if (boot && typeof ReadableStream === 'function' && typeof window.fetch === 'function') {
  const fetch0 = window.fetch;
  window.fetch = async function (input, init) {
    const response = await fetch0.call(this, input, init);
    const url = typeof input === 'string' ? input : String((input && (input.url || input.href)) || input);
    if (/\.wasm(\?|#|$)/.test(url) && response.ok && response.body) {
      window.fetch = fetch0; // only the app's own download is watched
      watch(response.clone()).catch(() => {});
    }
    return response;
  };
}

// If the app cannot start (no WebAssembly, a failed download), say so instead of loading forever.
const failed = (what) => {
  if (!boot || !boot.isConnected) return;
  const text = document.getElementById('boot-text');
  if (text) {
    text.textContent = `The app could not start: ${what}. Reload the page; if this persists, this browser may lack WebAssembly support.`;
    text.className = 'error';
  }
  if (bar) bar.remove();
};
if (typeof WebAssembly !== 'object') failed('this browser has no WebAssembly');
window.addEventListener('error', (e) => failed(e.message || 'a script failed'));
window.addEventListener('unhandledrejection', (e) => failed(String((e.reason && e.reason.message) || e.reason)));
