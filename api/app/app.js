// Tributary's explorer: one page, routed by the URL's hash, reading only the public APIs:
// GraphQL at /graphql, and SQL at /sql for time travel. Tables page on the server (cursors),
// the lineage picture asks for one page of the walk, and Merkle proofs are checked here, with
// this file's own keccak-256, against the root read from the chain. The ModelFactory writes a
// training job, previews its snapshot and starts it through GraphQL's mutations, with the
// API token the person gives (kept in this tab's session storage only).
'use strict';

// ---- GraphQL and small helpers ------------------------------------------------------------

async function gql(query, variables = {}, token = null) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  const body = await res.json();
  if (body.errors && body.errors.length) {
    throw new Error(body.errors.map((e) => e.message).join('\n'));
  }
  return body.data;
}

const esc = (v) =>
  String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const short = (id) => (id && id.length > 18 ? `${id.slice(0, 10)}…${id.slice(-6)}` : id ?? '');
const num = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US'));
const pct = (x) => `${(100 * x).toFixed(2)}%`;
/// An exact token amount (a decimal string) with thousands separators, still exact.
const units = (s) => (/^\d+$/.test(String(s ?? '')) ? BigInt(s).toLocaleString('en-US') : (s ?? '—'));
const view = () => document.getElementById('view');

/// The explorer page of a lineage node id (`kind:key`), or of a bare id of that kind.
function href(kind, key) {
  const page = { contribution: 'contribution', adapter: 'adapter', answer: 'answer', inference: 'inference',
    contributor: 'contributor', datanet: 'datanet', batch: 'batch', snapshot: 'lineage', training_run: 'lineage',
    base_model: 'lineage', reward_epoch: 'lineage', validation: 'lineage', revocation: 'lineage' }[kind];
  if (!page) return null;
  return page === 'lineage' ? `#/lineage/${encodeURIComponent(`${kind}:${key}`)}` : `#/${page}/${encodeURIComponent(key)}`;
}

function nodeLink(nodeId, text) {
  const i = nodeId.indexOf(':');
  const target = href(nodeId.slice(0, i), nodeId.slice(i + 1));
  const label = esc(text ?? `${nodeId.slice(0, i)} ${short(nodeId.slice(i + 1))}`);
  return target ? `<a href="${target}">${label}</a>` : label;
}

const link = (kind, key, text) => `<a href="${href(kind, key)}" class="mono">${esc(text ?? short(String(key)))}</a>`;

function facts(rows) {
  return `<dl class="facts">${rows
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`)
    .join('')}</dl>`;
}

function table(headers, rows, testid) {
  const head = headers.map((h) => `<th class="${h.endsWith('#') ? 'num' : ''}">${esc(h.replace(/#$/, ''))}</th>`).join('');
  const body = rows.length
    ? rows.map((r, j) => `<tr>${r.map((c, i) => `<td class="${headers[i].endsWith('#') ? 'num' : ''}"${i + j === 0 ? ` data-testid="${testid}-first"` : ''}>${c}</td>`).join('')}</tr>`).join('')
    : `<tr><td colspan="${headers.length}" class="muted">nothing yet</td></tr>`;
  return `<table data-testid="${testid}"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function showError(e) {
  view().innerHTML = `<h1>Something went wrong</h1><p class="error" data-testid="error">${esc(e.message)}</p>`;
}

// ---- keccak-256 and OpenZeppelin Merkle proofs ----------------------------------------------

const MASK = (1n << 64n) - 1n;
const ROT = [[0, 36, 3, 41, 18], [1, 44, 10, 45, 2], [62, 6, 43, 15, 61], [28, 55, 25, 21, 56], [27, 20, 39, 8, 14]];
const RC = (() => {
  // The round constants from the spec's linear feedback shift register.
  const out = [];
  let r = 1;
  for (let round = 0; round < 24; round++) {
    let rc = 0n;
    for (let j = 0; j < 7; j++) {
      r = ((r << 1) ^ ((r >> 7) * 0x71)) % 256;
      if (r & 2) rc ^= 1n << ((1n << BigInt(j)) - 1n);
    }
    out.push(rc);
  }
  return out;
})();
const rotl = (x, n) => (n === 0 ? x : ((x << BigInt(n)) | (x >> BigInt(64 - n))) & MASK);

function keccakF(a) {
  for (let round = 0; round < 24; round++) {
    const c = [0, 1, 2, 3, 4].map((x) => a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20]);
    for (let x = 0; x < 5; x++) {
      const d = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1);
      for (let y = 0; y < 25; y += 5) a[x + y] ^= d;
    }
    const b = new Array(25);
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(a[x + 5 * y], ROT[x][y]);
    }
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 25; y += 5) a[x + y] = b[x + y] ^ (~b[((x + 1) % 5) + y] & MASK & b[((x + 2) % 5) + y]);
    }
    a[0] ^= RC[round];
  }
}

/// keccak-256 of `bytes` (a Uint8Array), as Ethereum uses it.
function keccak256(bytes) {
  const rate = 136;
  const padded = new Uint8Array(Math.ceil((bytes.length + 1) / rate) * rate);
  padded.set(bytes);
  padded[bytes.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  const a = new Array(25).fill(0n);
  for (let off = 0; off < padded.length; off += rate) {
    for (let i = 0; i < rate / 8; i++) {
      let lane = 0n;
      for (let k = 7; k >= 0; k--) lane = (lane << 8n) | BigInt(padded[off + 8 * i + k]);
      a[i] ^= lane;
    }
    keccakF(a);
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 4; i++) {
    for (let k = 0; k < 8; k++) out[8 * i + k] = Number((a[i] >> BigInt(8 * k)) & 0xffn);
  }
  return out;
}

const hex = (b) => `0x${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
function bytes(h) {
  const s = h.replace(/^0x/, '');
  if (!/^[0-9a-fA-F]*$/.test(s) || s.length % 2) throw new Error(`not hex: ${h}`);
  return Uint8Array.from(s.match(/../g) || [], (x) => parseInt(x, 16));
}

/// OpenZeppelin's StandardMerkleTree leaf of a bytes32 value: keccak(keccak(abi.encode(v))).
const leafOf = (id) => keccak256(keccak256(bytes(id)));

/// Folds `proof` into `leaf`, hashing each pair in ascending order (OpenZeppelin's
/// MerkleProof.verify), and returns the root it leads to.
function fold(leaf, proof) {
  return proof.reduce((node, sibling) => {
    const s = bytes(sibling);
    const [lo, hi] = hex(node) <= hex(s) ? [node, s] : [s, node];
    const pair = new Uint8Array(64);
    pair.set(lo);
    pair.set(hi, 32);
    return keccak256(pair);
  }, leaf);
}

/// The batch's Merkle root as the registry contract holds it (`batch(bytes32)`), read from
/// the chain's RPC in this browser; `null` when the server names no chain.
async function chainRoot(batchId, chainId) {
  const config = await explorerConfig();
  if (!config.rpc || !config.registry) return null;
  const served = await rpcChainId(config.rpc);
  if (served !== chainId) throw new Error(`${config.rpc} serves chain ${served}, not chain ${chainId}`);
  const selector = hex(keccak256(new TextEncoder().encode('batch(bytes32)'))).slice(0, 10);
  const data = selector + batchId.replace(/^0x/, '').padStart(64, '0');
  const res = await fetch(config.rpc, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_call', params: [{ to: config.registry, data }, 'latest'] }),
  });
  const body = await res.json();
  if (body.error) throw new Error(`the chain answered: ${body.error.message}`);
  const words = (body.result ?? '').replace(/^0x/, '');
  if (words.length !== 192) throw new Error(`no registry at ${config.registry} answers batch(bytes32)`);
  const root = `0x${words.slice(64, 128)}`;
  if (/^0x0+$/.test(root)) throw new Error(`the registry holds no batch ${batchId}`);
  return root;
}

/// The chain id the RPC at `url` serves.
async function rpcChainId(url) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
  });
  return Number((await res.json()).result);
}

let configPromise;
const explorerConfig = () => (configPromise ??= fetch('/app/config.json').then((r) => r.json()));

// ---- pages ----------------------------------------------------------------------------------

async function home() {
  const d = await gql(`{ chainId datanets { id name domain owner block } }`);
  const rows = d.datanets.map((n) => [
    link('datanet', n.id, n.id), `<a href="#/datanet/${n.id}">${esc(n.name)}</a>`, esc(n.domain),
    link('contributor', n.owner), num(n.block),
  ]);
  view().innerHTML = `<h1>Datanets <span class="muted">on chain ${d.chainId}</span></h1>
    ${table(['id', 'name', 'domain', 'owner', 'block#'], rows, 'datanets')}`;
}

/// A Relay-connection table paged and sorted on the server: `fetchPage(after, order)` gives
/// `{ nodes, pageInfo }`; earlier cursors are kept for "Previous"; the order select starts over.
function pager(el, fetchPage, render) {
  const cursors = [null];
  let asked = 0;
  const show = async () => {
    const mine = ++asked;
    const after = cursors[cursors.length - 1];
    el.querySelector('.rows').innerHTML = '<p class="muted">Loading…</p>';
    el.querySelector('.prev').disabled = true;
    el.querySelector('.next').disabled = true;
    try {
      const page = await fetchPage(after, el.querySelector('[name=order]').value);
      if (mine !== asked) return; // a later question (a filter changed) answers instead
      el.querySelector('.rows').innerHTML = render(page.nodes);
      el.querySelector('.prev').disabled = cursors.length === 1;
      const next = el.querySelector('.next');
      next.disabled = !page.pageInfo.hasNextPage;
      next.onclick = () => { cursors.push(page.pageInfo.endCursor); show(); };
      el.querySelector('.where').textContent = `page ${cursors.length}`;
    } catch (e) {
      if (mine === asked) el.querySelector('.rows').innerHTML = `<p class="error">${esc(e.message)}</p>`;
    }
  };
  el.querySelector('.prev').onclick = () => { cursors.pop(); show(); };
  const reset = () => { cursors.length = 1; return show(); };
  el.querySelector('[name=order]').onchange = reset;
  return { reset };
}

const pagerHtml = (controls = '') => `<div class="paged"><div class="controls">${controls}
  <select name="order" data-testid="order"><option value="OLDEST_FIRST">oldest first</option><option value="NEWEST_FIRST">newest first</option></select>
  <button class="prev" type="button">Previous</button><button class="next" type="button" data-testid="next">Next</button>
  <span class="where muted"></span></div><div class="rows"></div></div>`;

const PAGE = 25;
const CONTRIBUTION_FIELDS = 'id contributor license status block batch';
const contributionRows = (nodes) =>
  table(['contribution', 'contributor', 'license', 'status', 'block#'], nodes.map((c) => [
    link('contribution', c.id), link('contributor', c.contributor), esc(c.license),
    `<span class="pill ${c.status === 'REVOKED' ? 'bad' : 'good'}">${c.status.toLowerCase()}</span>`, num(c.block),
  ]), 'contributions');

async function sql(statement) {
  const res = await fetch('/sql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: statement }) });
  const text = await res.text();
  if (!res.ok) throw new Error(text || `POST /sql answered ${res.status}`);
  return JSON.parse(text).rows;
}

/// The Datanet as of one Delta version of the `contributions` table: the versions its batches
/// were committed at (from the `batches` table) on a slider, and the counts at the chosen one,
/// read by SQL time travel (`"contributions@vN"`).
async function asOf(el, id, chosen) {
  let versions;
  try {
    versions = await sql(`SELECT lake_version AS v, CAST(anchored_at AS VARCHAR) AS at, count FROM batches WHERE datanet_id = ${id} ORDER BY lake_version`);
  } catch (e) {
    el.innerHTML = `<p class="muted" data-testid="asof-unavailable">Time travel reads the SQL endpoint (POST /sql), which this server does not answer: ${esc(e.message)}</p>`;
    return;
  }
  if (!versions.length) {
    el.innerHTML = '<p class="muted">no batches yet</p>';
    return;
  }
  let i = versions.findIndex((r) => String(r.v) === chosen);
  if (i < 0) i = versions.length - 1;
  const v = versions[i];
  const at = `"contributions@v${Number(v.v)}"`;
  let counts;
  let licenses;
  try {
    [counts] = await sql(`SELECT COUNT(*) AS contributions, COUNT(DISTINCT contributor) AS contributors FROM ${at} WHERE datanet_id = ${id}`);
    licenses = await sql(`SELECT license, COUNT(*) AS n FROM ${at} WHERE datanet_id = ${id} GROUP BY license ORDER BY n DESC, license LIMIT 5`);
  } catch (e) {
    el.innerHTML = `<p class="error" data-testid="asof-failed">Reading version ${num(v.v)}: ${esc(e.message)}</p>`;
    return;
  }
  el.innerHTML = `<div class="controls"><input type="range" min="0" max="${versions.length - 1}" value="${i}" data-testid="version" style="flex:1">
      <span>Delta version <b data-testid="asof-version">${num(v.v)}</b>, ${esc(v.at)} (batch ${i + 1} of ${versions.length})</span></div>
    <div class="cards"><div class="card">contributions<b data-testid="asof-contributions">${num(counts.contributions)}</b></div>
      <div class="card">contributors<b data-testid="asof-contributors">${num(counts.contributors)}</b></div>
      <div class="card">licenses<b>${licenses.map((l) => `${esc(l.license)} ${num(l.n)}`).join(', ') || '—'}</b></div></div>`;
  el.querySelector('input').onchange = (e) => {
    location.hash = `#/datanet/${id}?v=${versions[Number(e.target.value)].v}`;
  };
}

async function datanet(id, params) {
  const d = await gql(`query($id: Int!) { datanet(id: $id) { id name domain owner schemaHash txHash block } }`, { id: Number(id) });
  const n = d.datanet;
  if (!n) throw new Error(`no Datanet ${id} is indexed`);
  view().innerHTML = `<h1 data-testid="title">Datanet ${esc(n.name)}</h1>
    ${facts([['id', n.id], ['domain', esc(n.domain)], ['owner', link('contributor', n.owner, n.owner)],
      ['schema hash', `<span class="mono">${esc(n.schemaHash)}</span>`],
      ['created in', `block ${num(n.block)}, tx <span class="mono">${esc(n.txHash)}</span>`],
      ['lineage', `<a href="#/lineage/${encodeURIComponent(`datanet:${n.id}`)}?dir=down">what was built from it</a>`]])}
    <h2>Rules</h2><div id="rules" data-testid="rules">Checking…</div>
    <h2>Over time</h2><div id="stats" data-testid="stats">Loading…</div>
    <h2>As of a version</h2><div id="asof" data-testid="asof">Loading…</div>
    <h2>Contributions</h2>
    ${pagerHtml(`<input name="contributor" placeholder="contributor address" data-testid="filter-contributor">
      <select name="status" data-testid="filter-status"><option value="">any status</option><option value="ANCHORED">anchored</option><option value="REVOKED">revoked</option></select>`)}`;
  const el = view().querySelector('.paged');
  const input = el.querySelector('[name=contributor]');
  const status = el.querySelector('[name=status]');
  const p = pager(el, async (after, order) => {
    const q = `query($id: Int!, $after: String, $who: String, $status: ContributionStatus, $order: Order) {
      datanet(id: $id) { contributions(first: ${PAGE}, after: $after, contributor: $who, status: $status, order: $order) {
        nodes { ${CONTRIBUTION_FIELDS} } pageInfo { hasNextPage endCursor } } } }`;
    const r = await gql(q, { id: n.id, after, who: input.value.trim() || null, status: status.value || null, order });
    return r.datanet.contributions;
  }, contributionRows);
  input.onchange = () => p.reset();
  status.onchange = () => p.reset();
  await Promise.all([p.reset(), asOf(document.getElementById('asof'), n.id, params.get('v')), rules(n.id),
    overTime(document.getElementById('stats'), n.id)]);
}

/// The Datanet day by day (SQL's `datanet_stats_over_time`: records accepted and rejected,
/// contributors, the total to date, drawn as a curve) and its largest contributors, both
/// counted by the SQL endpoint over the lake.
async function overTime(el, id) {
  let days;
  let top;
  try {
    [days, top] = await Promise.all([
      sql(`SELECT CAST(day AS VARCHAR) AS day, accepted, rejected, contributors, accepted_to_date
        FROM datanet_stats_over_time WHERE datanet_id = ${Number(id)} ORDER BY day DESC LIMIT 60`),
      sql(`SELECT contributor, COUNT(*) AS n FROM contributions WHERE datanet_id = ${Number(id)}
        GROUP BY contributor ORDER BY n DESC, contributor LIMIT 10`),
    ]);
  } catch (e) {
    el.innerHTML = `<p class="muted">Stats over time read the SQL endpoint (POST /sql): ${esc(e.message)}</p>`;
    return;
  }
  if (!days.length) {
    el.innerHTML = '<p class="muted">nothing ingested yet</p>';
    return;
  }
  const curve = days.slice().reverse().map((d, i) => [i + 1, Number(d.accepted_to_date)]);
  el.innerHTML = `<p>${num(days[0].accepted_to_date)} records accepted to date
      (<b data-testid="stats-total">${num(days[0].accepted_to_date)}</b>), over ${num(days.length)} day${days.length === 1 ? '' : 's'}${days.length === 60 ? ' shown (the latest 60)' : ''}.</p>
    ${curve.length > 1 ? lineChart(curve, 'records accepted to date', { y: 'records', x: 'days', testid: 'stats-curve', digits: 0 }) : ''}
    ${table(['day', 'accepted#', 'rejected#', 'contributors#', 'to date#'], days.slice(0, 14).map((d) => [esc(d.day.slice(0, 10)),
      num(d.accepted), num(d.rejected), num(d.contributors), num(d.accepted_to_date)]), 'stats-days')}
    <h3>Largest contributors</h3>
    ${table(['contributor', 'records#'], top.map((t) => [link('contributor', t.contributor, t.contributor), num(t.n)]), 'top-contributors')}`;
}

/// The Datanet's manifest (asked apart: a lake without it fails this box, not the page),
/// which the API has checked against the schema hash on chain.
async function rules(id) {
  const box = document.getElementById('rules');
  try {
    const d = await gql('query($id: Int!) { datanet(id: $id) { manifest } }', { id });
    const m = JSON.parse(d.datanet.manifest);
    const field = ([name, f]) => [esc(name), esc(f.type), f.required ? 'yes' : 'no',
      esc([f.min_length !== undefined ? `at least ${f.min_length}` : '', f.max_length !== undefined ? `at most ${f.max_length}` : '']
        .filter(Boolean).join(', ') || '—'),
      f.pattern ? `<code>${esc(f.pattern)}</code>` : (f.labels?.length ? esc(f.labels.join(', ')) : '—')];
    const access = m.access ?? {};
    const submitters = typeof access.submitters === 'string' ? access.submitters : JSON.stringify(access.submitters ?? 'anyone');
    box.innerHTML = `${m.description ? `<p>${esc(m.description)}</p>` : ''}
      ${facts([['licenses', `<span data-testid="rules-licenses">${esc((m.licenses ?? []).join(', '))}</span>`],
        ['largest record', `${num(m.max_record_bytes)} bytes`],
        ['duplicates', esc(m.dedup ? `exact ${m.dedup.exact ? 'refused' : 'allowed'}${m.dedup.near_threshold ? `, near (similarity ≥ ${m.dedup.near_threshold}) refused` : ''}` : '—')],
        ['who may submit', esc(submitters)], ['validators', num((access.validators ?? []).length)],
        ['manifest', '<span class="pill good">hashes to the schema hash on chain</span>']])}
      ${table(['field', 'type', 'required', 'length', 'pattern or labels'], Object.entries(m.fields ?? {}).map(field), 'rules-fields')}`;
  } catch (e) {
    box.innerHTML = `<p class="muted">rules not shown: ${esc(e.message)}</p>`;
  }
}

async function contribution(id) {
  const d = await gql(`query($id: String!) { chainId contribution(id: $id) {
      id contributor contentHash license status block txHash batch nodeId
      datanet { id name }
      anchor { id merkleRoot count block txHash verified availability } } }`, { id });
  const c = d.contribution;
  if (!c) throw new Error(`no contribution ${id} is indexed`);
  const a = c.anchor;
  view().innerHTML = `<h1 data-testid="title">Contribution <span class="mono">${esc(c.id)}</span></h1>
    ${facts([['contributor', link('contributor', c.contributor, c.contributor)],
      ['Datanet', c.datanet ? link('datanet', c.datanet.id, c.datanet.name) : '—'],
      ['license', esc(c.license)],
      ['status', `<span class="pill ${c.status === 'REVOKED' ? 'bad' : 'good'}" data-testid="status">${c.status.toLowerCase()}</span>`],
      ['content hash', `<span class="mono">${esc(c.contentHash)}</span>`],
      ['anchored in', a ? `batch ${link('batch', a.id)} (${num(a.count)} contributions), block ${num(a.block)}, tx <span class="mono">${esc(a.txHash)}</span>` : '—'],
      ['validation', a ? (a.verified ? '<span class="pill good">batch verified</span>' : '<span class="pill bad">batch not verified</span>') + ` <span class="muted">manifest ${esc(a.availability)}</span>` : '—'],
      ['lineage', `<a href="#/lineage/${encodeURIComponent(c.nodeId)}?dir=down">answers and adapters it shaped</a>`]])}
    <h2>Merkle proof, checked in this browser</h2>
    <div id="proof" data-testid="proof">Checking…</div>
    <h2>Content, checked against the hash its contributor signed</h2>
    <div id="content" data-testid="content">Checking…</div>`;
  await Promise.all([proofBox(c, a, d.chainId), contentBox(c)]);
}

/// The contribution's content as the lake holds it (SQL), with keccak-256 of its canonical
/// bytes computed here and compared with the signed content hash.
async function contentBox(c) {
  const box = document.getElementById('content');
  try {
    if (!/^0x[0-9a-fA-F]{64}$/.test(c.id)) throw new Error(`${c.id} is not a contribution id`);
    const rows = await sql(`SELECT content FROM contributions WHERE contribution_id = '${c.id}'`);
    if (!rows.length) throw new Error('the lake holds no row for this contribution');
    const text = rows[0].content;
    const hash = hex(keccak256(new TextEncoder().encode(text)));
    const ok = hash === c.contentHash.toLowerCase();
    let pretty = text;
    try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* shown as stored */ }
    box.innerHTML = `<p><span class="pill ${ok ? 'good' : 'bad'}" data-testid="content-check">${ok ? 'matches' : 'does not match'}</span>
      keccak-256 of the lake's canonical content, computed in this browser (<span class="mono">${esc(hash)}</span>),
      ${ok ? 'equals' : 'differs from'} the content hash in the signed contribution.</p>
      <pre class="spec" data-testid="content-text">${esc(pretty)}</pre>`;
  } catch (e) {
    box.innerHTML = `<p class="muted" data-testid="content-check">content not shown: ${esc(e.message)}</p>`;
  }
}

/// The Merkle proof of `c` in its batch `a`, folded here and compared with the root on chain.
async function proofBox(c, a, chainId) {
  const id = c.id;
  const out = document.getElementById('proof');
  try {
    // Asked apart: a missing manifest fails the proof, not the page.
    const p = await gql(`query($id: String!) { contribution(id: $id) { merkleProof { proof } } }`, { id });
    const proof = p.contribution.merkleProof.proof;
    const leaf = leafOf(c.id);
    const root = hex(fold(leaf, proof));
    let onChain = null;
    let source = 'the root the indexer recorded from the chain';
    try {
      onChain = await chainRoot(c.batch, chainId);
      if (onChain) source = 'the root read just now from the registry contract over the chain RPC';
    } catch (e) {
      source = `the indexer's root (the chain RPC did not answer: ${esc(e.message)})`;
    }
    const expected = (onChain ?? a?.merkleRoot ?? '').toLowerCase();
    const ok = expected !== '' && root.toLowerCase() === expected;
    out.innerHTML = `<p><span class="pill ${ok ? 'good' : 'bad'}" data-testid="proof-result">${ok ? 'valid' : 'invalid'}</span>
      ${ok ? 'The contribution id, hashed as a leaf and folded with the proof the lake holds, gives' : 'The proof does not lead to'} ${source}.</p>
      ${facts([['leaf', `<span class="mono">${hex(leaf)}</span>`], ['computed root', `<span class="mono" data-testid="computed-root">${root}</span>`],
        ['expected root', `<span class="mono" data-testid="expected-root">${esc(expected || 'none')}</span>`],
        ['proof', proof.map((x) => `<div class="mono">${esc(x)}</div>`).join('') || '<span class="muted">(the batch has one leaf)</span>']])}`;
  } catch (e) {
    out.innerHTML = `<span class="pill bad" data-testid="proof-result">invalid</span> <span class="error">${esc(e.message)}</span>`;
  }
}

async function contributor(address) {
  const d = await gql(`query($a: String!) { contributor(address: $a) { address nodeId influence
      rewards { epoch amount share block claim { block txHash } } } }`, { a: address });
  const c = d.contributor;
  const rewards = c.rewards.map((r) => [num(r.epoch), `<span class="mono">${esc(r.amount ?? '—')}</span>`, pct(r.share), num(r.block), claimHtml(r.claim)]);
  view().innerHTML = `<h1 data-testid="title">Contributor <span class="mono">${esc(c.address)}</span></h1>
    ${facts([['influence', `<span data-testid="influence">${c.influence.toFixed(4)}</span> <span class="muted">(measured share of credit across answers)</span>`],
      ['lineage', `<a href="#/lineage/${encodeURIComponent(c.nodeId)}?dir=down">what their data shaped</a>`]])}
    <h2>Rewards (token units, claimable by Merkle proof)</h2>
    ${table(['epoch#', 'amount', 'share#', 'block#', 'claim'], rewards, 'rewards')}
    <h2>Contributions</h2>${pagerHtml()}`;
  const p = pager(view().querySelector('.paged'), async (after, order) => {
    const r = await gql(`query($a: String!, $after: String, $order: Order) { contributor(address: $a) {
      contributions(first: ${PAGE}, after: $after, order: $order) { nodes { ${CONTRIBUTION_FIELDS} } pageInfo { hasNextPage endCursor } } } }`,
    { a: address, after, order });
    return r.contributor.contributions;
  }, contributionRows);
  await p.reset();
}

/// A reward's claim: when it was claimed, or that it is still to claim.
const claimHtml = (claim) => (claim
  ? `<span data-testid="claim"><span class="pill good">claimed</span> block ${num(claim.block)}, tx <span class="mono">${esc(short(claim.txHash))}</span></span>`
  : '<span data-testid="claim"><span class="pill warn">to claim</span> <code>tributary rewards claim</code></span>');

/// A small SVG line chart of [x, y] `points`: `what` names the curve, `y` and `x` its axes.
function lineChart(points, what = 'evaluation loss', { y = 'loss', x = 'steps', testid = 'loss-curve', digits = 3 } = {}) {
  if (!points.length) return `<p class="muted">no ${what} was recorded</p>`;
  const [w, h, m] = [560, 200, 36];
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => m + ((x - x0) / (x1 - x0 || 1)) * (w - 2 * m);
  const sy = (y) => h - m + 10 - ((y - y0) / (y1 - y0 || 1)) * (h - 2 * m);
  const path = points.map((p, i) => `${i ? 'L' : 'M'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ');
  return `<svg class="chart" data-testid="${testid}" width="${w}" height="${h}" role="img" aria-label="${what} by ${x}">
    <path d="${path}" fill="none" stroke="#0b6bcb" stroke-width="2"/>
    <text x="${m}" y="14" font-size="11">${y} ${y1.toFixed(digits)}</text><text x="${m}" y="${h - 4}" font-size="11">${y} ${y0.toFixed(digits)} · ${x} ${x0}–${x1}</text>
  </svg>`;
}

async function adapter(id) {
  const d = await gql(`query($id: String!) { adapter(id: $id) { id version line uri weightsHash configHash nodeId block txHash
      baseModel { id architecture }
      training { steps tokens seconds baseEvalLoss evalLoss perplexity device evalLossCurve }
      parents { id version } children { id version } versions { id version block }
      snapshot { id count contributionsRoot datanets { id name } } } }`, { id });
  const a = d.adapter;
  if (!a) throw new Error(`no adapter ${id} is indexed`);
  const t = a.training;
  const list = (xs) => xs.map((x) => link('adapter', x.id, `${x.version} ${short(x.id)}`)).join(', ') || '—';
  view().innerHTML = `<h1 data-testid="title">Adapter ${esc(a.version)}</h1>
    ${facts([['id', `<span class="mono">${esc(a.id)}</span>`], ['base model', a.baseModel ? `${esc(a.baseModel.architecture)} <span class="mono">${esc(short(a.baseModel.id))}</span>` : '—'],
      ['trained on', a.snapshot ? `snapshot <a href="#/lineage/${encodeURIComponent(`snapshot:${a.snapshot.id}`)}" class="mono">${esc(short(a.snapshot.id))}</a>: ${num(a.snapshot.count)} contributions from ${a.snapshot.datanets.map((n) => link('datanet', n.id, n.name)).join(', ')}` : '—'],
      ['parents', list(a.parents)], ['children', list(a.children)], ['versions of the line', list(a.versions)],
      ['weights', `<span class="mono">${esc(a.uri)}</span> (hash <span class="mono">${esc(short(a.weightsHash))}</span>)`],
      ['published', `block ${num(a.block)}, tx <span class="mono">${esc(a.txHash)}</span>`],
      ['lineage', `<a href="#/lineage/${encodeURIComponent(a.nodeId)}">ancestry</a> · <a href="#/lineage/${encodeURIComponent(a.nodeId)}?dir=down">answers served</a>`]])}
    <h2>Training</h2>
    ${t ? `<div class="cards">
      <div class="card">steps<b>${num(t.steps)}</b></div><div class="card">tokens<b>${num(t.tokens)}</b></div>
      <div class="card">held-out loss<b data-testid="eval-loss">${t.evalLoss?.toFixed(4) ?? '—'}</b><span class="muted">base model: ${t.baseEvalLoss?.toFixed(4) ?? '—'}</span></div>
      <div class="card">perplexity<b>${t.perplexity?.toFixed(2) ?? '—'}</b></div>
      <div class="card">device<b>${esc(t.device)}</b>${t.seconds ? `${t.seconds.toFixed(1)} s` : ''}</div></div>
      <h2>Held-out loss during training</h2>${lineChart(t.evalLossCurve)}` : '<p class="muted">no training record</p>'}`;
}

/// An attribution's contributions and contributors, with where each share's money goes.
function attributionHtml(at) {
  const who = at.contributors.map((c) => [link('contributor', c.address, c.address), pct(c.share), num(c.contributions)]);
  const what = at.contributions.slice(0, 50).map((c) => [link('contribution', c.id), link('contributor', c.contributor), pct(c.share)]);
  return `<p class="muted">method: ${esc(at.method)}</p>
    <h2>Who shaped it</h2>${table(['contributor', 'share#', 'contributions#'], who, 'attribution-contributors')}
    <h2>Which contributions</h2>${table(['contribution', 'contributor', 'share#'], what, 'attribution-contributions')}
    ${at.contributions.length > 50 ? `<p class="muted">and ${num(at.contributions.length - 50)} more</p>` : ''}`;
}

async function answer(id) {
  const d = await gql(`query($id: String!) { answer(id: $id) { id nodeId tokens fee requestHash responseHash attributionRoot block txHash
      adapter { id line version } batch { id }
      attribution { method contributors { address share contributions } contributions { id contributor share } } } }`, { id });
  const a = d.answer;
  if (!a) throw new Error(`no answer ${id} is indexed (an answer appears once the batch that recorded it is indexed)`);
  view().innerHTML = `<h1 data-testid="title">Answer <span class="mono">${esc(short(a.id))}</span></h1>
    ${facts([['served by', a.adapter ? link('adapter', a.adapter.id, a.adapter.version) : '—'],
      ['recorded in', a.batch ? link('inference', a.batch.id) : '—'], ['tokens', num(a.tokens)], ['fee', `<span class="mono">${esc(a.fee ?? '—')}</span>`],
      ['request / response hash', `<span class="mono">${esc(a.requestHash)}</span><br><span class="mono">${esc(a.responseHash)}</span>`],
      ['attribution root', `<span class="mono">${esc(a.attributionRoot)}</span>`],
      ['recorded', `block ${num(a.block)}, tx <span class="mono">${esc(a.txHash)}</span>`],
      ['lineage', `<a href="#/lineage/${encodeURIComponent(a.nodeId)}">its ancestry</a>`],
      ['money', `<a href="#/money/${encodeURIComponent(a.id)}" data-testid="follow-money">follow the money</a>: its fee to the contributions it credits, to their contributors' claims`]])}
    ${attributionHtml(a.attribution)}`;
}

/// Follow the money: an answer's fee, the contributors' part of it under the epoch's policy,
/// divided by the answer's recorded credit; per contribution, what its row in the epoch paid
/// (`reward_allocations`, over SQL: every answer of the epoch that credited it); per
/// contributor, the epoch's leaf they claim against and whether they have claimed it.
async function money(id) {
  const d = await gql(`query($id: String!) { answer(id: $id) { id fee tokens adapter { id version }
      batch { id settledIn { epoch block txHash policy { contributors } } }
      attribution { contributors { address share } contributions { id contributor share } } } }`, { id });
  const a = d.answer;
  if (!a) throw new Error(`no answer ${id} is indexed (an answer appears once the batch that recorded it is indexed)`);
  const epoch = a.batch?.settledIn;
  const fee = BigInt(a.fee ?? '0');
  const head = `<h1 data-testid="title">Follow the money: answer <span class="mono">${esc(short(a.id))}</span></h1>`;
  if (!epoch) {
    view().innerHTML = `${head}${facts([['fee', `<span class="mono">${esc(a.fee ?? '—')}</span>`]])}
      <p class="muted" data-testid="money-epoch">not settled yet: its batch is paid out by the next <code>tributary rewards settle</code></p>
      ${attributionHtml(a.attribution)}`;
    return;
  }
  const bps = epoch.policy?.contributors;
  const part = bps === undefined ? null : (fee * BigInt(bps)) / 10000n;
  const shown = a.attribution.contributions.slice(0, 50);
  // What each credited contribution's row paid in the epoch, and each contributor's leaf.
  let rows = [];
  let sqlNote = '';
  try {
    const ids = shown.map((c) => `'${c.id.toLowerCase().replace(/[^0-9a-fx]/g, '')}'`).join(', ');
    rows = ids ? await sql(`SELECT contribution_id AS contribution, CAST(SUM(amount) AS VARCHAR) AS amount, SUM(inferences) AS answers
      FROM reward_allocations WHERE epoch = ${Number(epoch.epoch)} AND role = 'contributor' AND contribution_id IN (${ids})
      GROUP BY contribution_id`) : [];
  } catch (e) {
    sqlNote = `<p class="muted">per-contribution rows need the SQL endpoint (POST /sql): ${esc(e.message)}</p>`;
  }
  const paid = new Map(rows.map((r) => [String(r.contribution).toLowerCase(), r]));
  // The credited contributors' rewards in one query, one alias each (an epoch's allocations
  // can be every contributor it paid; an answer credits far fewer).
  const people = [...new Set(a.attribution.contributors.map((c) => c.address.toLowerCase()))];
  const vars = Object.fromEntries(people.map((p, i) => [`a${i}`, p]));
  const leaves = people.length ? await gql(`query(${people.map((_, i) => `$a${i}: String!`).join(', ')}) {
      ${people.map((_, i) => `c${i}: contributor(address: $a${i}) { rewards { epoch amount claim { block txHash } } }`).join('\n')} }`, vars) : {};
  const leaf = new Map(people.map((p, i) => [p, leaves[`c${i}`].rewards.find((r) => r.epoch === epoch.epoch)]));
  const fromAnswer = (x) => (part === null ? '—' : `≈ ${num(Math.round(Number(part) * x))}`);
  const what = shown.map((c) => {
    const r = paid.get(c.id.toLowerCase());
    return [link('contribution', c.id), link('contributor', c.contributor), pct(c.share), fromAnswer(c.share),
      r ? `${esc(units(r.amount))} <span class="muted">over ${num(r.answers)} answer${Number(r.answers) === 1 ? '' : 's'}</span>` : '—'];
  });
  const who = a.attribution.contributors.map((c) => {
    const l = leaf.get(c.address.toLowerCase());
    return [link('contributor', c.address, c.address), pct(c.share), fromAnswer(c.share),
      esc(units(l?.amount)), l ? claimHtml(l.claim) : '—'];
  });
  view().innerHTML = `${head}
    ${facts([['served by', a.adapter ? link('adapter', a.adapter.id, a.adapter.version) : '—'],
      ['fee', `<span data-testid="money-fee">${esc(units(a.fee))}</span> token units`],
      ['settled in', `<span data-testid="money-epoch">epoch ${num(epoch.epoch)}</span>, block ${num(epoch.block)}, tx <span class="mono">${esc(short(epoch.txHash))}</span>`],
      ['contributors\' part', bps === undefined ? '—' : `<span data-testid="money-part">${esc(units(part))}</span> (${(bps / 100).toFixed(2)}% of the fee under the epoch's policy), divided by the answer's credit`]])}
    <h2>Contributions credited</h2>
    ${table(['contribution', 'contributor', 'credit#', 'from this answer#', 'the epoch paid for it#'], what, 'money-contributions')}
    ${a.attribution.contributions.length > 50 ? `<p class="muted">and ${num(a.attribution.contributions.length - 50)} more</p>` : ''}${sqlNote}
    <h2>Contributors</h2>
    ${table(['contributor', 'credit#', 'from this answer#', 'epoch total (their leaf)#', 'claim'], who, 'money-contributors')}
    <p class="muted">An answer's part is exact only over the epoch: each row is rounded once, over every answer it sums
    (see <code>tributary rewards show</code>).</p>`;
}

async function inference(id) {
  const d = await gql(`query($id: String!) { inference(id: $id) { id count tokens fees verified merkleRoot block txHash nodeId
      adapters { id line version } answers { id tokens adapter { id } }
      attribution { method contributors { address share contributions } contributions { id contributor share } } } }`, { id });
  const b = d.inference;
  if (!b) throw new Error(`no inference batch ${id} is indexed`);
  view().innerHTML = `<h1 data-testid="title">Inference batch <span class="mono">${esc(short(b.id))}</span></h1>
    ${facts([['answers', num(b.count)], ['tokens', num(b.tokens)], ['fees', `<span class="mono">${esc(b.fees ?? '—')}</span>`],
      ['verified', b.verified ? '<span class="pill good">yes</span>' : '<span class="pill bad">no</span>'],
      ['adapters', b.adapters.map((x) => link('adapter', x.id, x.version)).join(', ')],
      ['recorded', `block ${num(b.block)}, tx <span class="mono">${esc(b.txHash)}</span>`]])}
    <h2>Answers</h2>${table(['answer', 'tokens#'], b.answers.map((x) => [link('answer', x.id), num(x.tokens)]), 'answers')}
    ${attributionHtml(b.attribution)}`;
}

async function listPage(title, field, fields, row, headers) {
  view().innerHTML = `<h1>${esc(title)}</h1>${pagerHtml()}`;
  const p = pager(view().querySelector('.paged'), async (after, order) => {
    const r = await gql(`query($after: String, $order: Order) { ${field}(first: ${PAGE}, after: $after, order: $order) { nodes { ${fields} } pageInfo { hasNextPage endCursor } } }`, { after, order });
    return r[field];
  }, (nodes) => table(headers, nodes.map(row), field));
  await p.reset();
}

const adapters = () => listPage('Adapters', 'adapters', 'id line version block training { evalLoss }',
  (a) => [link('adapter', a.id), esc(a.version), a.training?.evalLoss?.toFixed(4) ?? '—', num(a.block)],
  ['adapter', 'version', 'held-out loss#', 'block#']);
const inferences = () => listPage('Inference batches', 'inferences', 'id count tokens block',
  (b) => [link('inference', b.id), num(b.count), num(b.tokens), num(b.block)], ['batch', 'answers#', 'tokens#', 'block#']);

async function batch(id) {
  const d = await gql(`query($id: String!) { batch(id: $id) { id nodeId count merkleRoot manifestUri verified availability block txHash datanet { id name } } }`, { id });
  const b = d.batch;
  if (!b) throw new Error(`no batch ${id} is indexed`);
  view().innerHTML = `<h1 data-testid="title">Batch <span class="mono">${esc(short(b.id))}</span></h1>
    ${facts([['Datanet', b.datanet ? link('datanet', b.datanet.id, b.datanet.name) : '—'], ['contributions', num(b.count)],
      ['Merkle root', `<span class="mono">${esc(b.merkleRoot)}</span>`], ['manifest', `<span class="mono">${esc(b.manifestUri)}</span> (${esc(b.availability)})`],
      ['verified', b.verified ? '<span class="pill good">yes</span>' : '<span class="pill bad">no</span>'],
      ['anchored', `block ${num(b.block)}, tx <span class="mono">${esc(b.txHash)}</span>`]])}
    <h2>Contributions</h2>${pagerHtml()}`;
  const p = pager(view().querySelector('.paged'), async (after, order) => {
    const r = await gql(`query($id: String!, $after: String, $order: Order) { batch(id: $id) { contributions(first: ${PAGE}, after: $after, order: $order) {
      nodes { ${CONTRIBUTION_FIELDS} } pageInfo { hasNextPage endCursor } } } }`, { id, after, order });
    return r.batch.contributions;
  }, contributionRows);
  await p.reset();
}

// ---- the lineage picture --------------------------------------------------------------------

const LINEAGE_FIRST = 250;

async function lineage(nodeId, params) {
  const dir = params.get('dir') === 'down' ? 'down' : 'up';
  const depth = Math.min(Math.max(Number(params.get('depth')) || 1, 1), 6);
  const kinds = params.get('kinds') ? params.get('kinds').split(',') : null;
  const field = dir === 'up' ? 'ancestry' : 'descendants';
  const d = await gql(`query($id: String!, $depth: Int!, $kinds: [String!]) {
      page: ${field}(id: $id, depth: $depth, first: ${LINEAGE_FIRST}, kinds: $kinds) {
        seq totalCount edgeCount nodes { id kind depth } edges { src dst kind weight }
        pageInfo { hasNextPage } summary { byKind { kind count } topContributors { address share contributions } } }
      all: ${field}(id: $id, depth: $depth, first: 1) { summary { byKind { kind count } } } }`,
  { id: nodeId, depth, kinds });
  const page = d.page;
  const url = (p) => {
    const q = new URLSearchParams({ dir, depth, ...(kinds ? { kinds: kinds.join(',') } : {}), ...p });
    if (q.get('kinds') === '') q.delete('kinds');
    return `#/lineage/${encodeURIComponent(nodeId)}?${q}`;
  };
  const summary = page.summary.byKind.map((k) => `${num(k.count)} ${esc(k.kind.replace('_', ' '))}${k.count === 1 ? '' : 's'}`).join(', ');
  const top = page.summary.topContributors.slice(0, 5).map((c) => `${link('contributor', c.address)} ${pct(c.share)}`).join(', ');
  const kindBoxes = d.all.summary.byKind.map((k) => {
    const on = !kinds || kinds.includes(k.kind);
    const next = on ? (kinds ?? d.all.summary.byKind.map((x) => x.kind)).filter((x) => x !== k.kind) : [...(kinds ?? []), k.kind];
    return `<a href="${url({ kinds: next.join(',') })}" class="pill ${on ? 'good' : ''}" data-testid="kind-${esc(k.kind)}">${on ? '☑' : '☐'} ${esc(k.kind)}</a>`;
  }).join(' ');
  view().innerHTML = `<h1 data-testid="title">Lineage of ${nodeLink(nodeId, nodeId)}</h1>
    <div class="controls">
      <a href="${url({ dir: 'up' })}" class="pill ${dir === 'up' ? 'good' : ''}" data-testid="dir-up">upstream (what it came from)</a>
      <a href="${url({ dir: 'down' })}" class="pill ${dir === 'down' ? 'good' : ''}" data-testid="dir-down">downstream (what came of it)</a>
      <label>depth <select id="depth" data-testid="depth">${[1, 2, 3, 4, 5, 6].map((n) => `<option ${n === depth ? 'selected' : ''}>${n}</option>`).join('')}</select></label>
    </div>
    <div class="controls">kinds: ${kindBoxes}</div>
    <p data-testid="lineage-summary">${num(page.totalCount)} nodes and ${num(page.edgeCount)} edges within ${depth} hop${depth === 1 ? '' : 's'}${summary ? `: ${summary}` : ''}${top ? `; top contributors: ${top}` : ''}.
      <span class="muted">(answer of index operation ${page.seq})</span></p>
    ${page.pageInfo.hasNextPage ? `<p class="muted">The picture shows the first ${num(page.nodes.length)} nodes of the walk; narrow the kinds or the depth to see the rest, or export all with SQL <code>ancestry()</code>.</p>` : ''}
    <div id="graph" data-testid="graph"></div><p id="lit" class="error" data-testid="lit"></p>`;
  document.getElementById('depth').onchange = (e) => { location.hash = url({ depth: e.target.value }); };
  draw(nodeId, page, kinds, (kind) => url({ kinds: kind }));
}

/// Lays the walk out with dagre (a layered DAG layout) and draws it as SVG: the centre node
/// highlighted; hovering a node lights what it reaches upstream (orange) and downstream
/// (green); clicking one opens its page.
const GROUP_OVER = 8;

function draw(center, page, kinds, kindUrl) {
  const box = document.getElementById('graph');
  if (typeof dagre === 'undefined') {
    box.innerHTML = '<p class="error">The graph layout library (dagre) did not load: run scripts/setup.sh on the server.</p>';
    return;
  }
  // A kind with more nodes than a picture can show is one box saying how many the whole walk
  // holds ("163 contributions"), unless it is the only kind asked for; clicking it asks for it.
  const byKind = new Map();
  for (const n of page.nodes) if (n.id !== center) (byKind.get(n.kind) ?? byKind.set(n.kind, []).get(n.kind)).push(n.id);
  const members = new Map();
  const groupOf = new Map();
  for (const [kind, ids] of byKind) {
    if (ids.length <= GROUP_OVER || (kinds && kinds.length === 1)) continue;
    members.set(`group:${kind}`, ids);
    for (const id of ids) groupOf.set(id, `group:${kind}`);
  }
  const total = new Map(page.summary.byKind.map((k) => [k.kind, k.count]));
  const shown = new Map([[center, { id: center, kind: center.split(':')[0], depth: 0 }]]);
  for (const n of page.nodes) {
    const group = groupOf.get(n.id);
    if (group) shown.set(group, { id: group, kind: n.kind, count: total.get(n.kind) ?? members.get(group).length });
    else shown.set(n.id, n);
  }
  const edges = [];
  const drawn = new Set();
  for (const e of page.edges) {
    const [src, dst] = [groupOf.get(e.src) ?? e.src, groupOf.get(e.dst) ?? e.dst];
    const key = `${src} ${dst} ${e.kind}`;
    if (!shown.has(src) || !shown.has(dst) || src === dst || drawn.has(key)) continue;
    drawn.add(key);
    edges.push({ ...e, src, dst });
  }
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: 'LR', nodesep: 14, ranksep: 60, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  const label = (n) => (n.count !== undefined
    ? `${num(n.count)} ${n.kind.replace('_', ' ')}s`
    : `${n.kind.replace('_', ' ')} ${short(n.id.slice(n.id.indexOf(':') + 1))}`);
  for (const n of shown.values()) g.setNode(n.id, { width: Math.max(110, 7 * label(n).length), height: 28 });
  edges.forEach((e, i) => g.setEdge(e.src, e.dst, {}, `e${i}`));
  dagre.layout(g);
  const { width, height } = g.graph();
  const svgEdges = edges.map((e, i) => {
    const pts = g.edge({ v: e.src, w: e.dst, name: `e${i}` }).points;
    const path = pts.map((p, j) => `${j ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
    const mid = pts[Math.floor(pts.length / 2)];
    return `<g class="edge" data-src="${esc(e.src)}" data-dst="${esc(e.dst)}"><path d="${path}" marker-end="url(#arrow)"/>
      <text x="${mid.x.toFixed(1)}" y="${(mid.y - 3).toFixed(1)}">${esc(e.kind)}</text></g>`;
  }).join('');
  const svgNodes = [...shown.values()].map((n) => {
    const p = g.node(n.id);
    return `<g class="node${n.id === center ? ' center' : ''}${n.count !== undefined ? ' group' : ''}" data-id="${esc(n.id)}" data-testid="node" transform="translate(${(p.x - p.width / 2).toFixed(1)},${(p.y - p.height / 2).toFixed(1)})">
      <rect width="${p.width}" height="${p.height}"/><text x="8" y="18">${esc(label(n))}</text><title>${esc(n.id)}</title></g>`;
  }).join('');
  box.innerHTML = `<svg width="${width}" height="${height}"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#94a3b8"/></marker></defs>${svgEdges}${svgNodes}</svg>`;

  // What a node reaches upstream and downstream is the API's own walk of it (edge kinds
  // point either way: `contributed` from the contributor, `in` to the Datanet), asked once per
  // node and kept.
  const reached = new Map();
  const reach = (id) => reached.get(id) ?? reached.set(id, gql(`query($id: String!) {
      up: ancestry(id: $id, depth: 6, first: 1000) { nodes { id } }
      down: descendants(id: $id, depth: 6, first: 1000) { nodes { id } } }`, { id })
    .then((d) => ({ up: new Set(d.up.nodes.map((n) => n.id)), down: new Set(d.down.nodes.map((n) => n.id)) }))).get(id);
  const svg = box.querySelector('svg');
  let hovered = null;
  for (const el of svg.querySelectorAll('.node')) {
    const id = el.dataset.id;
    const group = members.get(id);
    el.onclick = () => {
      const i = id.indexOf(':');
      location.hash = group ? kindUrl(id.slice(i + 1))
        : href(id.slice(0, i), id.slice(i + 1)) ?? `#/lineage/${encodeURIComponent(id)}`;
    };
    if (group) continue;
    el.onmouseenter = async () => {
      hovered = id;
      let walks;
      try {
        walks = await reach(id);
      } catch (e) {
        document.getElementById('lit').textContent = `could not walk from ${id}: ${e.message}`;
        return;
      }
      const { up, down } = walks;
      if (hovered !== id) return;
      const side = (k) => {
        const ids = members.get(k) ?? [k];
        return k === id ? 'self' : ids.some((m) => up.has(m)) ? 'up' : ids.some((m) => down.has(m)) ? 'down' : null;
      };
      for (const n of svg.querySelectorAll('.node')) {
        const s = side(n.dataset.id);
        n.classList.toggle('up', s === 'up');
        n.classList.toggle('down', s === 'down');
        n.classList.toggle('dim', s === null);
      }
      for (const e of svg.querySelectorAll('.edge')) {
        const [a, b] = [side(e.dataset.src), side(e.dataset.dst)];
        const on = (x) => (a === x || a === 'self') && (b === x || b === 'self');
        e.classList.toggle('up', on('up'));
        e.classList.toggle('down', on('down'));
        e.classList.toggle('dim', !on('up') && !on('down'));
      }
      svg.dataset.lit = id;
    };
    el.onmouseleave = () => {
      hovered = null;
      delete svg.dataset.lit;
      svg.querySelectorAll('.up,.down,.dim').forEach((x) => x.classList.remove('up', 'down', 'dim'));
    };
  }
}

// ---- ModelFactory: a training job from a form -------------------------------------------------

const TOKEN_KEY = 'tributary-api-token';
const tomlString = (v) => JSON.stringify(String(v)); // TOML basic strings take JSON's escapes
const tomlFloat = (v) => (Number.isInteger(Number(v)) ? `${Number(v)}.0` : String(Number(v)));

/// The `[[jobs]]` table the form describes, as a worker's tributary.toml would hold it.
function jobToml(f) {
  const targets = f.targets.value.split(/[\s,]+/).filter(Boolean);
  const datanets = [...f.querySelectorAll('input[name=datanet]:checked')].map((c) => c.value);
  return [
    `name = ${tomlString(f.name.value.trim())}`,
    `line = ${tomlString(f.line.value.trim())}`,
    `datanets = [${datanets.map(tomlString).join(', ')}]`,
    `use = ${tomlString(f.use.value)}`,
    `base_model = ${tomlString(f.base.value.trim())}`,
    `cron = ${tomlString(f.cron.value.trim())}`,
    `min_new_contributions = ${Number(f.minNew.value)}`,
    '',
    '[lora]',
    `rank = ${Number(f.rank.value)}`,
    `alpha = ${tomlFloat(f.alpha.value)}`,
    `targets = [${targets.map(tomlString).join(', ')}]`,
    '',
    '[train]',
    `max_steps = ${Number(f.steps.value)}`,
    `learning_rate = ${tomlFloat(f.lr.value)}`,
    `batch_size = ${Number(f.batch.value)}`,
    `seq_len = ${Number(f.seqLen.value)}`,
    `eval_every = ${Math.max(1, Math.round(Number(f.steps.value) / 10))}`,
    `patience = ${Number(f.patience.value)}`,
  ].join('\n');
}

function previewHtml(p) {
  const rows = p.licenses.map((l) => [esc(l.license), num(l.contributions),
    l.allowed ? '<span class="pill good">allowed</span>' : `<span class="pill bad">refused</span> ${esc(l.reason)}`]);
  return `<p><b data-testid="preview-contributions">${num(p.contributions)}</b> contributions from
    <b data-testid="preview-contributors">${num(p.contributors)}</b> contributors would be frozen now.</p>
    ${table(['license', 'contributions#', 'for this use'], rows, 'preview-licenses')}
    ${p.allowed ? '<p class="pill good" data-testid="preview-verdict">every license allows this use</p>'
      : `<p class="error" data-testid="preview-refusal">${esc(p.refusal)}</p>`}`;
}

async function factory() {
  const d = await gql('{ datanets { id name domain } }');
  const field = (label, input) => `<label>${esc(label)} ${input}</label>`;
  const number = (name, value, step = 1) => `<input name="${name}" type="number" min="0" step="${step}" value="${value}" data-testid="${name}">`;
  const stamp = new Date().toISOString().slice(0, 10).replaceAll('-', '');
  view().innerHTML = `<h1>ModelFactory</h1>
    <p class="muted">Train a LoRA adapter on Datanets without writing TOML: the form writes the training job
    (the <code>[[jobs]]</code> table a worker's tributary.toml would hold), previews the snapshot it would freeze,
    and starts it. A scheduler worker of this server trains it; its loss is shown as it trains.</p>
    <form id="factory" class="form" autocomplete="off">
      <fieldset><legend>What to train</legend>
        ${field('job name', `<input name="name" value="factory-${stamp}" data-testid="name" required>`)}
        ${field('model line', `<input name="line" value="factory" data-testid="line" required>`)}
        <div class="choices" data-testid="datanets">Datanets: ${d.datanets.map((n, i) => `<label><input type="checkbox" name="datanet" value="${esc(n.name)}" data-testid="datanet-${n.id}"${i ? '' : ' checked'}> ${esc(n.name)} <span class="muted">(${esc(n.domain)})</span></label>`).join(' ')}</div>
        ${field('for', `<select name="use" data-testid="use"><option value="commercial">commercial use</option><option value="research">research only</option></select>`)}
        ${field('base model', `<input name="base" value="tiny" data-testid="base" title="tiny, or a Hugging Face checkpoint folder on the worker">`)}
      </fieldset>
      <fieldset><legend>LoRA</legend>
        ${field('rank', number('rank', 8))} ${field('alpha', number('alpha', 16, 'any'))}
        ${field('targets', '<input name="targets" value="q, v, o, up, down" data-testid="targets">')}
      </fieldset>
      <fieldset><legend>Training</legend>
        ${field('steps', number('steps', 150))} ${field('learning rate', number('lr', 0.003, 'any'))}
        ${field('batch', number('batch', 8))} ${field('sequence length', number('seqLen', 128))}
        ${field('stop after evaluations without improvement (0: never)', number('patience', 3))}
      </fieldset>
      <fieldset><legend>Schedule (after the first run)</legend>
        ${field('cron (UTC, seconds first)', '<input name="cron" value="0 0 3 * * *" data-testid="cron">')}
        ${field('new contributions needed', number('minNew', 1))}
      </fieldset>
      <h2>The job it writes</h2><pre class="spec" data-testid="spec"></pre>
      <div class="controls"><button type="button" data-testid="preview">Preview the snapshot</button></div>
      <div data-testid="preview-result"></div>
      <div class="controls">
        ${field('API token', '<input name="token" type="password" data-testid="token" placeholder="the server\'s api-token">')}
        <button type="submit" data-testid="create">Create and start</button></div>
      <div data-testid="create-result"></div>
    </form>`;
  const f = document.getElementById('factory');
  f.token.value = sessionStorage.getItem(TOKEN_KEY) ?? '';
  const spec = f.querySelector('[data-testid=spec]');
  const update = () => { spec.textContent = jobToml(f); };
  f.addEventListener('input', update);
  f.addEventListener('change', update);
  update();
  const datanets = () => [...f.querySelectorAll('input[name=datanet]:checked')].map((c) => c.value);
  const out = (name) => f.querySelector(`[data-testid=${name}]`);
  const busy = async (work) => {
    view().setAttribute('aria-busy', 'true');
    try { await work(); } finally { view().setAttribute('aria-busy', 'false'); }
  };
  f.querySelector('[data-testid=preview]').onclick = () => busy(async () => {
    try {
      const r = await gql(`query($d: [String!]!, $u: String) { snapshotPreview(datanets: $d, use: $u) {
          contributions contributors allowed refusal licenses { license contributions allowed reason } } }`,
      { d: datanets(), u: f.use.value });
      out('preview-result').innerHTML = previewHtml(r.snapshotPreview);
      out('preview-result').scrollIntoView({ block: 'nearest' });
    } catch (e) {
      out('preview-result').innerHTML = `<p class="error" data-testid="preview-error">${esc(e.message)}</p>`;
    }
  });
  f.onsubmit = (e) => {
    e.preventDefault();
    return busy(async () => {
      const token = f.token.value.trim();
      sessionStorage.setItem(TOKEN_KEY, token);
      try {
        const r = await gql('mutation($s: String!) { createJob(spec: $s, start: true) { name } }', { s: jobToml(f) }, token);
        location.hash = `#/job/${encodeURIComponent(r.createJob.name)}`;
      } catch (err) {
        out('create-result').innerHTML = `<p class="error" data-testid="create-error">${esc(err.message)}</p>`;
      }
    });
  };
}

const JOB_FIELDS = `name cron line spec paused nextDue createdBy requested lastCheck
  runs(first: 10) { seq trigger status startedAt finishedAt contributions newContributions adapterId version
    evalLoss currentLoss message requestedBy losses { step loss } }`;

/// A job and its runs; while a run trains (or one is asked for) the page asks again each second
/// and redraws the latest run's loss curve.
async function job(name) {
  const here = location.hash;
  const draw = (j, workers) => {
    const run = j.runs[0];
    // A run asked for waits while the latest one runs; after that it is what comes next.
    const waiting = j.requested && run?.status !== 'running';
    const status = waiting ? 'requested' : (run ? run.status : 'no run yet');
    const live = status === 'running' || status === 'requested';
    const points = run ? run.losses.map((p) => [p.step, p.loss]) : [];
    const rows = j.runs.map((r) => [num(r.seq), esc(r.trigger), `<span class="pill ${r.status === 'failed' ? 'bad' : 'good'}">${esc(r.status)}</span>`,
      esc(r.startedAt), r.adapterId ? link('adapter', r.adapterId, r.version) : esc(r.version ?? '—'),
      r.evalLoss?.toFixed(4) ?? '—', esc(r.message)]);
    view().innerHTML = `<h1 data-testid="title">Job ${esc(j.name)}</h1>
      ${facts([['model line', esc(j.line)], ['schedule', `<code>${esc(j.cron)}</code>, next ${esc(j.nextDue)}${j.paused ? ' (paused)' : ''}`],
        ['made by', esc(j.createdBy ?? 'a worker\'s tributary.toml')], ['asked for', esc(j.requested ?? '—')],
        ['last check', esc(j.lastCheck ?? '—')]])}
      <h2>Latest run: <span class="pill ${status === 'failed' ? 'bad' : 'good'}" data-testid="run-status">${esc(status)}</span></h2>
      ${live && !workers.length ? `<p class="error" data-testid="no-worker">No scheduler worker has swept this server's job
        store in the last minute, so nothing will start or finish this run: start one (<code>tributary serve</code>, or
        <code>tributary serve --only scheduler</code> on the same store).</p>` : ''}
      ${run ? `<p data-testid="run-message">${esc(run.message)}</p>
        ${run.adapterId ? `<p>adapter ${link('adapter', run.adapterId, `${run.version} ${short(run.adapterId)}`)}</p>` : ''}
        <p class="muted" data-testid="loss-points">${num(points.length)} training steps recorded${run.requestedBy ? `; asked for by ${esc(run.requestedBy)}` : ''}</p>
        ${lineChart(points, 'training loss')}` : ''}
      <h2>Runs</h2>${table(['run#', 'trigger', 'status', 'started', 'adapter', 'held-out loss#', 'what happened'], rows, 'runs')}
      <details><summary>Its full definition</summary><pre class="spec">${esc(JSON.stringify(JSON.parse(j.spec), null, 2))}</pre></details>`;
    return live;
  };
  const load = async () => {
    const d = await gql(`query($n: String!) { job(name: $n) { ${JOB_FIELDS} } schedulerWorkers { name } }`, { n: name });
    if (!d.job) throw new Error(`no job named ${name}`);
    return [d.job, d.schedulerWorkers];
  };
  const poll = async () => {
    let live = true;
    while (live && location.hash === here) {
      await new Promise((r) => setTimeout(r, 1000));
      if (location.hash !== here) return;
      try {
        live = draw(...(await load()));
      } catch (e) {
        // a missed poll: the next one tries again
      }
    }
  };
  if (draw(...(await load()))) poll(); // the page is shown; it keeps itself current from here
}

async function jobs() {
  const d = await gql('{ jobs { name line cron createdBy requested runs(first: 1) { status version } } }');
  const rows = d.jobs.map((j) => [`<a href="#/job/${encodeURIComponent(j.name)}">${esc(j.name)}</a>`, esc(j.line),
    `<code>${esc(j.cron)}</code>`, esc(j.createdBy ?? 'tributary.toml'),
    esc(j.runs[0]?.status ?? (j.requested ? 'requested' : '—')), esc(j.runs[0]?.version ?? '—')]);
  view().innerHTML = `<h1>Training jobs</h1><p><a href="#/factory">New job (ModelFactory)</a></p>
    ${table(['job', 'line', 'schedule', 'made by', 'latest run', 'version'], rows, 'jobs')}`;
}

// ---- routing --------------------------------------------------------------------------------

const ROUTES = { '': home, datanet, contribution, contributor, adapter, answer, inference, batch, adapters, inferences, lineage,
  money, factory, job, jobs };

async function route() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  const [page, ...rest] = path.split('/');
  const render = ROUTES[page];
  view().setAttribute('aria-busy', 'true');
  try {
    if (!render) throw new Error(`no page "${page}"`);
    await render(decodeURIComponent(rest.join('/')), new URLSearchParams(query || ''));
    window.scrollTo(0, 0);
  } catch (e) {
    showError(e);
  } finally {
    view().setAttribute('aria-busy', 'false');
  }
}

/// The search box: a contributor address, a Datanet number, a `kind:key` node id, or a hash
/// (tried as a contribution, an adapter, an answer and an inference batch, in that order).
async function search(q) {
  q = q.trim();
  if (/^\d+$/.test(q)) return `#/datanet/${q}`;
  if (/^0x[0-9a-fA-F]{40}$/.test(q)) return `#/contributor/${q}`;
  if (/^[a-z_]+:/.test(q)) return `#/lineage/${encodeURIComponent(q)}`;
  const d = await gql(`query($q: String!) { contribution(id: $q) { id } adapter(id: $q) { id } answer(id: $q) { id } inference(id: $q) { id } }`, { q });
  for (const kind of ['contribution', 'adapter', 'answer', 'inference']) if (d[kind]) return `#/${kind}/${encodeURIComponent(q)}`;
  throw new Error(`nothing indexed has the id ${q}`);
}

document.getElementById('search').onsubmit = async (e) => {
  e.preventDefault();
  try {
    location.hash = await search(e.target.q.value);
  } catch (err) {
    showError(err);
  }
};
window.addEventListener('hashchange', route);
route();
