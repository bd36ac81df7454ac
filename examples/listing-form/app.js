// The host's glue: the widget asks this function for a fresh JWT whenever it calls qrupload
// (the host's own session cookie proves who is signed in; the JWT never goes into a URL).
const panel = document.querySelector('qrupload-panel');
panel.tokenProvider = async () => {
  const res = await fetch('/token', { method: 'POST' });
  if (!res.ok) throw new Error('signed out');
  return (await res.json()).token;
};

// What the form would react to: the ordered ids on every change, the end of the session.
window.qruploadEvents = [];
for (const type of ['qrupload:change', 'qrupload:complete', 'qrupload:expired']) {
  document.addEventListener(type, (event) => window.qruploadEvents.push({ type, detail: event.detail }));
}
