import type { DownloadStatus, StatusSnapshot, TagRow, UpstreamEvent, UpstreamStatus } from '../../status/types.js';
import { formatBytes } from '../../format-bytes.js';
import { html, SafeHtml } from '../html.js';

export interface StatusPageView {
  /** Of this response's Content-Security-Policy: only the page's own style and script run. */
  nonce: string;
  /** Milliseconds between the page's refreshes of its live part, while downloads run and otherwise. */
  refreshActiveMs: number;
  refreshIdleMs: number;
  /** The repository page shown: for the pager's links. */
  limit: number;
  after: string | undefined;
  /** Some namespaces were left out because the request carries no credentials they accept. */
  hiddenProtected: boolean;
}

/**
 * The status page: plain server-rendered HTML (complete without JavaScript), inline CSS, and a small
 * inline script that re-fetches the page every few seconds and swaps in its `#live` part. Every value
 * goes through the escaping `html` template.
 */
export function renderStatusPage(s: StatusSnapshot, view: StatusPageView): string {
  const now = Date.parse(s.generatedAt);
  const page = html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>oci-registry status</title>
        <link rel="icon" href="data:," />
        <style nonce="${view.nonce}">
          ${STYLE}
        </style>
      </head>
      <body>
        <header>
          <h1>oci-registry <span class="dim">status</span></h1>
          <p class="meta">
            version ${s.version} · ${s.cache.storage} cache${s.cache.offline ? html` · <span class="badge warn">offline</span>` : ''} · up
            since ${time(s.startedAt, now)}
          </p>
          ${view.hiddenProtected ? html`<p class="note">Namespaces that require client authentication are not shown. <a href="/?login=1">Sign in</a> to see them.</p>` : ''}
          <p id="manual-refresh" class="note">Without JavaScript this page does not refresh itself: reload it.</p>
        </header>
        <main>${renderLive(s, view, now)} ${renderRepositories(s, view, now)}</main>
        <script nonce="${view.nonce}">
          ${SCRIPT};
        </script>
      </body>
    </html> `;
  return page.value;
}

/** Only the part the page's script refreshes (`/?part=live`): no head, so no style or script to parse. */
export function renderLivePart(s: StatusSnapshot, view: StatusPageView): string {
  return renderLive(s, view, Date.parse(s.generatedAt)).value;
}

/** The part the page's script refreshes: cache, traffic, downloads, upstreams. */
function renderLive(s: StatusSnapshot, view: StatusPageView, now: number): SafeHtml {
  const refresh = s.downloads.running.length > 0 || s.downloads.waiting > 0 ? view.refreshActiveMs : view.refreshIdleMs;
  return html`<div id="live" data-refresh="${refresh}">
    <p class="meta">updated <time id="updated" datetime="${s.generatedAt}">${s.generatedAt.slice(11, 19)} UTC</time></p>
    <div class="cards">${renderCache(s, now)} ${renderTraffic(s)}</div>
    ${renderDownloads(s)} ${renderUpstreams(s.upstreams, now)}
  </div>`;
}

function renderCache(s: StatusSnapshot, now: number): SafeHtml {
  const c = s.cache;
  const size = c.blobBytes === null ? html`<span class="dim">being measured…</span>` : html`${formatBytes(c.blobBytes)}`;
  const limit =
    c.limitBytes === null
      ? html`<p class="dim">no size limit</p>`
      : html`<p>
            of ${formatBytes(c.limitBytes)}${c.blobBytes === null ? '' : html` (${percent(c.blobBytes / c.limitBytes)})`}; eviction down to
            ${formatBytes(c.lowWaterBytes ?? c.limitBytes)}
          </p>
          <meter
            id="cache-meter"
            min="0"
            max="${c.limitBytes}"
            low="${c.lowWaterBytes ?? c.limitBytes}"
            high="${c.lowWaterBytes ?? c.limitBytes}"
            optimum="0"
            value="${c.blobBytes ?? 0}"
          ></meter>`;
  return html`<section id="cache" class="card">
    <h2>Cache</h2>
    <p class="big" id="cache-size">${size}</p>
    ${limit}
    ${c.blobs === null ? '' : html`<p>${c.blobs} blob${c.blobs === 1 ? '' : 's'}, ${c.manifests ?? 0} manifest${c.manifests === 1 ? '' : 's'} (${formatBytes(c.manifestBytes ?? 0)})</p>`}
    <p class="dim">${c.measuredAt === null ? 'listing the cache…' : html`measured ${time(c.measuredAt, now)}`}</p>
  </section>`;
}

function renderTraffic(s: StatusSnapshot): SafeHtml {
  const t = s.traffic;
  const lookups = Object.entries(t.lookups).sort(([a], [b]) => (a < b ? -1 : 1));
  const total = lookups.reduce((sum, [, n]) => sum + n, 0);
  const served = t.bytesFromCache + t.bytesFromUpstream;
  return html`<section id="traffic" class="card">
    <h2>Since start</h2>
    <p class="big" id="hit-ratio">
      ${t.hitRatio === null ? html`<span class="dim">no pulls yet</span>` : html`${percent(t.hitRatio)} <span class="unit">hit ratio</span>`}
    </p>
    <p>
      ${total} cache
      lookup${total === 1 ? '' : 's'}${lookups.length ? html`: ${lookups.map(([k, n], i) => html`${i ? ', ' : ''}${n} ${k}`)}` : ''}
    </p>
    <p>
      Served <strong id="bytes-cache">${formatBytes(t.bytesFromCache)}</strong> from the cache,
      <strong id="bytes-upstream">${formatBytes(t.bytesFromUpstream)}</strong> from upstream
    </p>
    ${served > 0 ? html`<meter min="0" max="${served}" value="${t.bytesFromCache}" title="share served from the cache"></meter>` : ''}
  </section>`;
}

function renderDownloads(s: StatusSnapshot): SafeHtml {
  const d = s.downloads;
  const waiting = d.waiting > 0 ? html`<p class="dim">${d.waiting} more waiting for the upstream's answer</p>` : '';
  if (d.running.length === 0) {
    return html`<section id="downloads">
      <h2>Downloads in progress</h2>
      <p class="dim">None running.</p>
      ${waiting}
    </section>`;
  }
  return html`<section id="downloads">
    <h2>Downloads in progress <span class="count">${d.running.length}</span></h2>
    <table>
      <thead>
        <tr>
          <th>Namespace</th>
          <th>Digest</th>
          <th>Progress</th>
          <th class="num">Received</th>
          <th class="num">Clients</th>
        </tr>
      </thead>
      <tbody>
        ${d.running.map(downloadRow)}
      </tbody>
    </table>
    ${waiting}
  </section>`;
}

function downloadRow(d: DownloadStatus): SafeHtml {
  const bar =
    d.sizeBytes === null ? html`<progress></progress>` : html`<progress max="${d.sizeBytes}" value="${d.receivedBytes}"></progress>`;
  const share = d.sizeBytes ? html` <span class="dim">${percent(d.receivedBytes / d.sizeBytes)}</span>` : '';
  return html`<tr class="download" data-digest="${d.digest}">
    <td>${d.namespace}</td>
    <td><code title="${d.digest}">${shortDigest(d.digest)}</code></td>
    <td>
      ${bar}${share}${d.state === 'downloading' ? '' : html` <span class="badge${d.state === 'failed' ? ' bad' : ''}">${d.state}</span>`}
    </td>
    <td class="num">${formatBytes(d.receivedBytes)}${d.sizeBytes === null ? '' : html` / ${formatBytes(d.sizeBytes)}`}</td>
    <td class="num">${d.clients}</td>
  </tr>`;
}

function renderUpstreams(upstreams: UpstreamStatus[], now: number): SafeHtml {
  if (upstreams.length === 0)
    return html`<section id="upstreams">
      <h2>Upstreams</h2>
      <p class="dim">None.</p>
    </section>`;
  return html`<section id="upstreams">
    <h2>Upstreams</h2>
    <table>
      <thead>
        <tr>
          <th>Namespace</th>
          <th>Fetched from</th>
          <th>Last success</th>
          <th>Last error</th>
        </tr>
      </thead>
      <tbody>
        ${upstreams.map((u) => upstreamRow(u, now))}
      </tbody>
    </table>
  </section>`;
}

function upstreamRow(u: UpstreamStatus, now: number): SafeHtml {
  // The newer of the two decides the row's colour: an error after the last success is a current problem.
  const failing = u.lastError !== null && (u.lastSuccess === null || u.lastError.at > u.lastSuccess.at);
  return html`<tr class="upstream${failing ? ' failing' : ''}" data-namespace="${u.namespace}">
    <td>
      ${u.namespace}${u.configured ? '' : html` <span class="badge">unlisted</span>`}${u.clientAuth ? html` <span class="badge">client auth</span>` : ''}
    </td>
    <td><code>${u.tls ? 'https' : 'http'}://${u.host}</code></td>
    <td class="last-success">${upstreamEvent(u.lastSuccess, now)}</td>
    <td class="last-error">${upstreamEvent(u.lastError, now)}</td>
  </tr>`;
}

function upstreamEvent(e: UpstreamEvent | null, now: number): SafeHtml {
  if (!e) return html`<span class="dim">–</span>`;
  return html`${time(e.at, now)}<br /><span class="msg">${e.message}</span>`;
}

function renderRepositories(s: StatusSnapshot, view: StatusPageView, now: number): SafeHtml {
  const page = s.repositories;
  const next = page.next === null ? '' : html`<a rel="next" href="${pageLink(view.limit, page.next)}">Next page →</a>`;
  const first = view.after === undefined ? '' : html`<a href="${pageLink(view.limit, undefined)}">← First page</a>`;
  const pager = first || next ? html`<nav class="pager">${first} ${next}</nav>` : '';
  if (page.rows.length === 0) {
    return html`<section id="repositories">
      <h2>Cached repositories and tags</h2>
      <p class="dim">${view.after === undefined ? 'Nothing cached yet.' : 'No more tags.'}</p>
      ${pager}
    </section>`;
  }
  let previous = '';
  const rows = page.rows.map((r) => {
    const name = `${r.namespace}/${r.repository}`;
    const repeated = name === previous;
    previous = name;
    return tagRow(r, repeated, now);
  });
  return html`<section id="repositories">
    <h2>Cached repositories and tags</h2>
    <table>
      <thead>
        <tr>
          <th>Repository</th>
          <th>Tag</th>
          <th>Digest</th>
          <th class="num">Size</th>
          <th class="num">Blobs</th>
          <th>Last access</th>
          <th>Checked upstream</th>
        </tr>
      </thead>
      <tbody>
        ${rows}
      </tbody>
    </table>
    ${pager}
  </section>`;
}

function tagRow(r: TagRow, repeated: boolean, now: number): SafeHtml {
  const blobs =
    r.blobs === null ? '–' : r.missingBlobs ? html`${r.blobs} <span class="dim">(+${r.missingBlobs} not cached)</span>` : html`${r.blobs}`;
  return html`<tr class="tag">
    <td class="${repeated ? 'repo dim' : 'repo'}">${r.namespace}/${r.repository}</td>
    <td><strong>${r.tag}</strong></td>
    <td><code title="${r.digest}">${shortDigest(r.digest)}</code></td>
    <td class="num">${r.size === null ? '–' : formatBytes(r.size)}</td>
    <td class="num">${blobs}</td>
    <td>${r.lastAccess === null ? html`<span class="dim">–</span>` : time(r.lastAccess, now)}</td>
    <td>${time(r.checkedAt, now)}</td>
  </tr>`;
}

function pageLink(limit: number, after: string | undefined): string {
  const q = new URLSearchParams({ n: String(limit) });
  if (after !== undefined) q.set('last', after);
  return `/?${q.toString()}`;
}

function time(iso: string, now: number): SafeHtml {
  return html`<time datetime="${iso}" title="${iso}">${ago(now - Date.parse(iso))}</time>`;
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

function percent(ratio: number): string {
  return `${(ratio * 100).toFixed(ratio >= 0.995 || ratio === 0 ? 0 : 1)} %`;
}

function shortDigest(digest: string): string {
  const i = digest.indexOf(':');
  return `${digest.slice(0, i + 1)}${digest.slice(i + 1, i + 13)}`;
}

// Constants of ours, inserted as they are (escaping would break the CSS and the script).
const STYLE = new SafeHtml(`
:root { color-scheme: light dark; --fg: #1d2430; --dim: #6b7280; --bg: #f6f7f9; --card: #fff; --line: #e3e6ea; --accent: #2563eb; --bad: #b91c1c; --warn: #b45309; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8eb; --dim: #9aa3af; --bg: #111418; --card: #1a1f25; --line: #2b323a; --accent: #60a5fa; --bad: #f87171; --warn: #fbbf24; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header, main { max-width: 1200px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 15px; margin: 22px 0 8px; }
.card h2 { margin-top: 0; }
.meta, .dim { color: var(--dim); }
.meta { margin: 0 0 6px; }
.note { background: var(--card); border-left: 3px solid var(--accent); padding: 6px 10px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 14px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
.card p { margin: 4px 0; }
.big { font-size: 26px; font-weight: 600; }
.unit { font-size: 14px; font-weight: 400; color: var(--dim); }
.count { background: var(--accent); color: #fff; border-radius: 10px; padding: 0 7px; font-size: 12px; vertical-align: 2px; }
meter, progress { width: 100%; height: 12px; }
td progress { width: 180px; vertical-align: middle; }
table { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--dim); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
tr:last-child td { border-bottom: 0; }
.num { text-align: right; white-space: nowrap; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
.badge { display: inline-block; font-size: 11px; border: 1px solid var(--line); border-radius: 4px; padding: 0 5px; color: var(--dim); }
.badge.warn { color: var(--warn); border-color: var(--warn); }
.badge.bad, tr.failing .last-error { color: var(--bad); }
.msg { font-size: 12px; word-break: break-word; }
.pager { margin: 10px 0 30px; display: flex; gap: 16px; }
a { color: var(--accent); }
`);

/**
 * Fetches the page's #live part again (`?part=live`: no repository listing) and swaps it in, as often as that part
 * asks (faster while downloads run), only while the tab is visible. DOMParser documents run no scripts.
 */
const SCRIPT = new SafeHtml(`
(function () {
  document.getElementById('manual-refresh').hidden = true;
  function schedule() {
    var live = document.getElementById('live');
    var ms = Number(live && live.getAttribute('data-refresh')) || 5000;
    setTimeout(refresh, ms);
  }
  function refresh() {
    if (document.visibilityState === 'hidden') return schedule();
    fetch(location.pathname + '?part=live', { cache: 'no-store', credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error(String(r.status))); })
      .then(function (text) {
        var next = new DOMParser().parseFromString(text, 'text/html').getElementById('live');
        var live = document.getElementById('live');
        if (next && live) live.replaceWith(document.adoptNode(next));
      })
      .catch(function () { /* the mirror is restarting or unreachable: try again later */ })
      .then(schedule);
  }
  schedule();
})();
`);
