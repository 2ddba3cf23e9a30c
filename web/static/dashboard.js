// Small client-side state for the dashboard (loaded before Alpine starts).
document.addEventListener('alpine:init', () => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || '';

  // Drag-and-drop / file-picker upload with a progress bar. The server answers with an
  // HTML fragment (module status, or the error) that is placed in #upload-result.
  Alpine.data('uploader', (url) => ({
    dragging: false,
    progress: null,
    error: '',
    pick(e) { this.send(e.target.files[0]); e.target.value = ''; },
    drop(e) { this.dragging = false; this.send(e.dataTransfer.files[0]); },
    send(file) {
      if (!file) return;
      this.error = '';
      const result = document.getElementById('upload-result');
      result.innerHTML = '';
      const xhr = new XMLHttpRequest();
      xhr.open('POST', `${url}?name=${encodeURIComponent(file.name)}`);
      xhr.setRequestHeader('x-csrf-token', csrf());
      xhr.setRequestHeader('content-type', 'application/wasm');
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) this.progress = Math.round(100 * e.loaded / e.total); };
      xhr.onload = () => {
        this.progress = null;
        result.innerHTML = xhr.responseText;
        if (window.htmx) htmx.process(result);
      };
      xhr.onerror = () => { this.progress = null; this.error = 'The upload failed: the connection to the server was lost.'; };
      this.progress = 0;
      xhr.send(file);
    },
  }));

  // Live log lines over Server-Sent Events, newest first, capped at 500.
  Alpine.data('logStream', (query) => ({
    connected: false,
    source: null,
    init() {
      this.source = new EventSource(`/logs/stream?${query}`);
      this.source.onopen = () => { this.connected = true; };
      this.source.onerror = () => { this.connected = false; };
      this.source.onmessage = (e) => {
        const list = document.getElementById('log-lines');
        if (!list) return;
        list.querySelector('[data-empty]')?.remove();
        list.insertAdjacentHTML('afterbegin', e.data);
        while (list.children.length > 500) list.lastElementChild.remove();
      };
    },
    destroy() { this.source?.close(); },
  }));
});
