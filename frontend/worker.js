// A pipeline worker of the visage browser client (a module worker, started by the page:
// frontend/src/engine/workers.rs). The first message carries the page's compiled wasm module,
// so the wasm (with the models compiled in) is downloaded and compiled once, not once per
// worker; the Rust side (`worker_main`, frontend/src/worker.rs) then answers that message and
// every later one.
import init, { worker_main } from './visage-frontend.js';

self.onmessage = async (event) => {
  self.onmessage = null;
  try {
    const module = event.data && event.data.module;
    await init(module ? { module_or_path: module } : undefined);
    worker_main(event.data);
  } catch (e) {
    self.postMessage({ meta: JSON.stringify({ op: 'failed', error: `the pipeline worker could not start: ${e}` }) });
  }
};
