// The Sluice web console's page logic: follows /api/events (a sample every second, alerts as they
// change), draws the charts with uPlot and the tables as plain DOM, runs SQL through /api/sql and
// browses the schema from /api/schema. Served as-is by engine/console/console.ts: no build step.
import uPlot from '/vendor/uPlot.esm.js';

/** Points the charts keep: five minutes at one sample a second. */
const chartPointsMax = 300;
/** The charts show at least this many samples' worth of time. */
const chartWindowSamples = 60;
let sampleIntervalMs = 1000;
const chartWindowSeconds = () => (chartWindowSamples * sampleIntervalMs) / 1000;
/** A queue this deep is drawn as trouble: the partition is falling behind. */
const queueDepthWarn = 10_000;

const $ = (id) => document.getElementById(id);
const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

function formatRate(value) {
  return value >= 100 ? integer.format(value) : value.toFixed(value >= 10 ? 1 : 2).replace(/\.?0+$/, '') || '0';
}

const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });

function formatAxis(value) {
  return value >= 1000 ? compact.format(value) : formatRate(value);
}

function formatMs(value) {
  if (value === null || value === undefined) return '–';
  if (value === 0) return '0';
  if (value < 1) return value.toFixed(3);
  if (value < 10) return value.toFixed(2);
  if (value < 100) return value.toFixed(1);
  return integer.format(value);
}

function formatBytes(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 100 || unit === 0 ? integer.format(value) : value.toFixed(1)} ${units[unit]}`;
}

function formatDuration(ms) {
  const seconds = Math.floor(ms / 1000);
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${minutes}m`;
  if (minutes > 0) return `${minutes}m ${seconds % 60}s`;
  return `${seconds}s`;
}

/** Builds an element: el('td', { class: 'num' }, 'text', child…). */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  return node;
}

/**
 * Fills a table from column specs { title, value(row), numeric?, className?(row) }; an empty
 * row set shows `emptyText` instead.
 */
function fillTable(table, columns, rows, emptyText) {
  table.replaceChildren();
  if (rows.length === 0) {
    table.append(el('tbody', {}, el('tr', {}, el('td', { class: 'empty', colspan: columns.length }, emptyText))));
    return;
  }
  table.append(el('thead', {}, el('tr', {}, ...columns.map((column) => el('th', { class: column.numeric ? 'num' : undefined }, column.title)))));
  const body = el('tbody');
  for (const row of rows) {
    body.append(el('tr', {}, ...columns.map((column) => {
      const classes = [column.numeric ? 'num' : '', column.className ? column.className(row) : ''].filter(Boolean).join(' ');
      return el('td', { class: classes || undefined }, column.value(row));
    })));
  }
  table.append(body);
}

/** A table of arbitrary objects (a section whose fields the console does not know in advance). */
/**
 * A table of arbitrary objects (a section whose fields the console does not know in advance, or
 * alert rows). With `preferred` keys, only those present are shown, in that order: the sections
 * report more than fits in half a page, and /api/statistics has the rest.
 */
function objectTable(container, rows, emptyText, preferred) {
  container.replaceChildren();
  if (!rows || rows.length === 0) {
    container.append(el('div', { class: 'empty' }, emptyText));
    return;
  }
  const present = [...new Set(rows.flatMap((row) => Object.keys(row)))];
  const chosen = preferred ? preferred.filter((key) => present.includes(key)) : [];
  const keys = chosen.length > 0 ? chosen : present;
  const table = el('table', { class: 'data' });
  fillTable(table, keys.map((key) => ({
    title: key,
    numeric: rows.every((row) => typeof row[key] === 'number' || row[key] == null),
    value: (row) => formatField(row[key]),
    className: (row) => (/error/i.test(key) && row[key] ? 'bad' : ''),
  })), rows, emptyText);
  container.append(table);
}

/** Integers as they are (ids, counts: no grouping that would garble a meter id), fractions to 2 places. */
function formatField(value) {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toFixed(2);
  if (Array.isArray(value)) return value.join(', ');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

const targetColumns = ['target', 'name', 'type', 'streams', 'rowsPending', 'rowsDelivered', 'lagSeconds', 'failures', 'partitionsFull', 'lastError'];
const importerColumns = ['importer', 'name', 'type', 'state', 'messagesPerSecond', 'received', 'applied', 'deadLettered', 'errors', 'lag', 'paused'];

// --- charts -----------------------------------------------------------------------------------

function makeChart(container, series) {
  const opts = {
    width: Math.max(200, container.clientWidth),
    height: container.clientHeight - 30,
    series: [{}, ...series],
    axes: [
      { stroke: '#6b7285', grid: { stroke: '#eef0f4' }, ticks: { stroke: '#e3e6ec' } },
      { stroke: '#6b7285', grid: { stroke: '#eef0f4' }, ticks: { stroke: '#e3e6ec' }, size: 56, values: (_u, values) => values.map(formatAxis) },
    ],
    scales: {
      // At least the last minute, so a young chart grows from the right instead of stretching.
      x: { time: true, range: (_u, min, max) => [Math.min(min ?? max, max - chartWindowSeconds()), max] },
      y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
    },
    // The card titles name the series; uPlot's own legend row would only repeat them.
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
  };
  const data = [[], ...series.map(() => [])];
  const chart = new uPlot(opts, data, container);
  new ResizeObserver(() => chart.setSize({ width: Math.max(200, container.clientWidth), height: container.clientHeight - 30 })).observe(container);
  return { chart, data };
}

const throughputChart = makeChart($('chart-throughput'), [
  { label: 'calls/s', stroke: '#2f6fdb', width: 2, fill: 'rgba(47, 111, 219, 0.08)', value: (_u, v) => (v === null ? '–' : formatRate(v)) },
]);
const latencyChart = makeChart($('chart-latency'), [
  { label: 'p50 ms', stroke: '#2f6fdb', width: 2, value: (_u, v) => (v === null ? '–' : formatMs(v)) },
  { label: 'p99 ms', stroke: '#d9822b', width: 2, value: (_u, v) => (v === null ? '–' : formatMs(v)) },
]);

function addPoint(point) {
  const at = point.at / 1000;
  const t = throughputChart.data;
  const l = latencyChart.data;
  if (t[0].length > 0 && at <= t[0][t[0].length - 1]) return;
  t[0].push(at);
  t[1].push(point.callsPerSecond);
  l[0].push(at);
  l[1].push(point.p50_ms);
  l[2].push(point.p99_ms);
  for (const data of [t, l]) if (data[0].length > chartPointsMax) for (const column of data) column.shift();
}

function redrawCharts() {
  throughputChart.chart.setData(throughputChart.data);
  latencyChart.chart.setData(latencyChart.data);
}

// --- live figures -----------------------------------------------------------------------------

let info = null;

function renderFacts(sample) {
  if (!info) return;
  const facts = $('facts');
  facts.replaceChildren(
    'version ', el('b', {}, info.version),
    ' · ', el('b', {}, info.partitions), info.partitions === 1 ? ' partition' : ' partitions',
    ' · ', el('b', {}, info.procedures.length), ' procedures',
    ' · up ', el('b', { id: 'uptime' }, formatDuration((sample ? sample.at : Date.now()) - info.startedAt)),
  );
}

function renderSample(sample) {
  $('kpi-throughput').textContent = formatRate(sample.callsPerSecond);
  $('kpi-p50').textContent = sample.latency.count > 0 ? formatMs(sample.latency.p50_ms) : '–';
  $('kpi-p99').textContent = sample.latency.count > 0 ? formatMs(sample.latency.p99_ms) : '–';
  $('kpi-aborts').textContent = formatRate(sample.abortsPerSecond);
  $('kpi-failures').textContent = formatRate(sample.failuresPerSecond);
  $('kpi-calls').textContent = integer.format(sample.callsTotal);
  renderFacts(sample);
  if (sample.intervalMs > 0) {
    addPoint({ at: sample.at, callsPerSecond: sample.callsPerSecond, p50_ms: sample.latency.p50_ms, p99_ms: sample.latency.p99_ms });
    redrawCharts();
  }
  renderPartitions(sample.partitions);
  const procedures = [...sample.procedures].sort((a, b) => (a.procedure.startsWith('@') - b.procedure.startsWith('@')) || b.calls - a.calls);
  fillTable($('procedures'), [
    { title: 'procedure', value: (r) => r.procedure, className: () => 'name' },
    { title: 'calls', numeric: true, value: (r) => integer.format(r.calls) },
    { title: 'calls/s', numeric: true, value: (r) => formatRate(r.callsPerSecond) },
    { title: 'aborts', numeric: true, value: (r) => integer.format(r.aborts) },
    { title: 'failures', numeric: true, value: (r) => integer.format(r.failures), className: (r) => (r.failures > 0 ? 'bad' : '') },
    { title: 'p50 ms', numeric: true, value: (r) => formatMs(r.p50_ms) },
    { title: 'p99 ms', numeric: true, value: (r) => formatMs(r.p99_ms) },
    { title: 'p99 ms now', numeric: true, value: (r) => formatMs(r.recentP99_ms) },
  ], procedures, 'no calls yet');
  fillTable($('tables'), [
    { title: 'name', value: (r) => r.table, className: () => 'name' },
    { title: 'kind', value: (r) => r.kind },
    { title: 'rows', numeric: true, value: (r) => integer.format(r.rows) },
    { title: 'memory (estimate)', numeric: true, value: (r) => formatBytes(r.bytesEstimate) },
  ], sample.tables, 'no tables');
  objectTable($('targets'), sample.targets, sample.targets ? 'no export targets configured' : 'export targets are not reported by this server', targetColumns);
  objectTable($('importers'), sample.importers, sample.importers ? 'no importers configured' : 'importers are not reported by this server', importerColumns);
}

function renderPartitions(partitions) {
  const container = $('partitions');
  container.replaceChildren();
  const busiest = Math.max(1, ...partitions.map((p) => p.transactionsPerSecond));
  for (const p of partitions) {
    const bar = el('span');
    bar.style.width = `${(100 * p.transactionsPerSecond) / busiest}%`;
    container.append(el('div', { class: 'partition', 'data-partition': p.partition },
      el('div', { class: 'muted' }, `P${p.partition}`),
      el('div', { class: 'bar' }, bar),
      el('div', { class: 'figures' },
        el('b', {}, formatRate(p.transactionsPerSecond)), ' tx/s · queue ',
        el('b', { class: p.queueDepth >= queueDepthWarn ? 'queue-high' : undefined }, integer.format(p.queueDepth))),
    ));
  }
}

function renderAlerts(state) {
  const container = $('alerts');
  container.replaceChildren();
  $('alerts-title').replaceChildren('Alerts', ...(state.title ? [el('small', {}, state.title)] : []));
  if (!state.available) {
    container.append(el('div', { class: 'empty' }, 'no alert stream'));
    return;
  }
  if (state.error) container.append(el('div', { class: 'sql-error' }, state.error));
  if (state.rows.length === 0) {
    container.append(el('div', { class: 'empty' }, 'no alerts yet'));
    return;
  }
  container.append(el('div', { class: 'muted' }, `${integer.format(state.total)} seen; newest first`));
  objectTableInto(container, state.rows);
}

function objectTableInto(container, rows) {
  const holder = el('div');
  objectTable(holder, rows, '');
  container.append(holder);
}

function setLive(state, text) {
  $('live').dataset.state = state;
  $('live-text').textContent = text;
}

function follow() {
  const events = new EventSource('/api/events');
  events.addEventListener('open', () => setLive('live', 'live'));
  events.addEventListener('sample', (event) => {
    setLive('live', 'live');
    renderSample(JSON.parse(event.data));
  });
  events.addEventListener('alerts', (event) => renderAlerts(JSON.parse(event.data)));
  events.addEventListener('error', () => setLive('down', 'reconnecting…'));
}

// --- SQL --------------------------------------------------------------------------------------

function formatCell(value) {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

async function runSql(event) {
  event?.preventDefault();
  const input = $('sql-input');
  const sql = input.value.trim();
  if (sql === '') return;
  const button = $('sql-run');
  const status = $('sql-status');
  const result = $('sql-result');
  button.disabled = true;
  status.textContent = 'running…';
  try {
    const response = await fetch('/api/sql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: input.value }) });
    const answer = await response.json();
    result.replaceChildren();
    if (answer.error) {
      status.textContent = '';
      showSqlError(result, input, answer.error);
      return;
    }
    status.textContent = `${integer.format(answer.rowCount)} row${answer.rowCount === 1 ? '' : 's'} · ${formatMs(answer.elapsedMs)} ms${answer.truncated ? ` · showing the first ${answer.rows.length}` : ''}`;
    const table = el('table', { class: 'data', id: 'sql-table' });
    fillTable(table, answer.columns.map((name, i) => ({
      title: name,
      numeric: answer.rows.length > 0 && answer.rows.every((row) => typeof row[i] === 'number' || row[i] === null),
      value: (row) => formatCell(row[i]),
      className: (row) => (row[i] === null ? 'null' : ''),
    })), answer.rows, '(no rows)');
    result.append(table);
  } catch (error) {
    status.textContent = '';
    showSqlError(result, input, { code: 'NETWORK', message: `the console did not answer: ${error.message}` });
  } finally {
    button.disabled = false;
  }
}

/** Shows the database's error; with a position, marks it in the box and under the statement's line. */
function showSqlError(container, input, error) {
  const box = el('div', { class: 'sql-error', id: 'sql-error' }, el('span', { class: 'code' }, error.code), error.message);
  const position = error.position;
  if (position && typeof position.offset === 'number') {
    const line = input.value.split('\n')[position.line - 1] ?? '';
    box.append(el('pre', {}, `${line}\n${' '.repeat(Math.max(0, position.column - 1))}^`));
    input.focus();
    input.setSelectionRange(position.offset, Math.min(input.value.length, position.offset + 1));
  }
  container.append(box);
}

// --- schema -----------------------------------------------------------------------------------

function renderSchema(schema) {
  const container = $('schema');
  container.replaceChildren();
  const groups = [
    ['Tables', schema.tables.filter((t) => t.kind === 'table')],
    ['Views', schema.tables.filter((t) => t.kind === 'view')],
    ['Streams', schema.tables.filter((t) => t.kind === 'stream')],
  ];
  for (const [title, tables] of groups) {
    const group = el('div', { class: 'schema-group' }, el('h3', {}, `${title} (${tables.length})`));
    if (tables.length === 0) group.append(el('div', { class: 'empty' }, 'none'));
    for (const table of tables) group.append(tableEntry(table));
    container.append(group);
  }
  const procedures = el('div', { class: 'schema-group' }, el('h3', {}, `Procedures (${schema.procedures.length})`));
  if (schema.procedures.length === 0) procedures.append(el('div', { class: 'empty' }, 'none'));
  for (const procedure of schema.procedures) procedures.append(procedureEntry(procedure));
  container.append(procedures);
  const first = schema.tables.find((t) => t.kind !== 'stream');
  if (first && $('sql-input').value === '') $('sql-input').value = `SELECT * FROM ${first.name} LIMIT 20`;
}

function tableEntry(table) {
  const keys = new Set(table.primaryKey ?? []);
  const partitionTag = table.partitioning === 'partitioned'
    ? el('span', { class: 'tag partitioned' }, table.partitionColumn ? `partitioned on ${table.partitionColumn}` : 'partitioned')
    : el('span', { class: 'tag' }, 'replicated');
  const name = el('span', { class: 'object', title: 'query this table', onclick: (event) => {
    event.preventDefault();
    $('sql-input').value = `SELECT * FROM ${table.name} LIMIT 100`;
    void runSql();
  } }, table.name);
  const columns = el('ul', {}, ...table.columns.map((column) => el('li', {},
    el('span', { class: keys.has(column.name) || column.name === table.partitionColumn ? 'key' : undefined }, column.name),
    el('span', { class: 'type' }, `${column.type}${column.nullable ? '' : ' NOT NULL'}`))));
  const notes = [];
  if (table.primaryKey) notes.push(`primary key (${table.primaryKey.join(', ')})`);
  for (const index of table.indexes) notes.push(`${index.unique ? 'unique ' : ''}${index.kind} index ${index.name} (${index.columns.join(', ')})`);
  if (table.source) notes.push(`aggregates ${table.source}`);
  if (table.exportTarget) notes.push(`exports to ${table.exportTarget}`);
  if (table.ttl) notes.push(`TTL ${table.ttl.minutes} min on ${table.ttl.column}`);
  const summary = el('summary', {}, el('div', { class: 'head' }, name, el('span', { class: 'muted count' }, `${table.columns.length} columns`)), el('div', { class: 'tags' }, partitionTag));
  return el('details', { 'data-object': table.name }, summary, columns, ...notes.map((note) => el('div', { class: 'note' }, note)));
}

function procedureEntry(procedure) {
  const tag = procedure.scope === 'single'
    ? el('span', { class: 'tag partitioned' }, `single-partition: ${procedure.partitioning.table}.${procedure.partitioning.column} = param ${procedure.partitioning.parameter}`)
    : el('span', { class: 'tag' }, 'multi-partition');
  const source = procedure.source.kind === 'file' ? `from ${procedure.source.path}` : procedure.source.sql;
  return el('details', { 'data-object': procedure.name }, el('summary', {}, el('div', { class: 'head' }, el('span', { class: 'object' }, procedure.name)), el('div', { class: 'tags' }, tag)), el('div', { class: 'note' }, source));
}

// --- start ------------------------------------------------------------------------------------

async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

$('sql-form').addEventListener('submit', runSql);
$('sql-input').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) void runSql(event);
});

try {
  const [information, schema, history] = await Promise.all([getJson('/api/info'), getJson('/api/schema'), getJson('/api/history')]);
  info = information;
  renderFacts(null);
  renderSchema(schema);
  sampleIntervalMs = history.intervalMs;
  for (const point of history.points) addPoint(point);
  redrawCharts();
} catch (error) {
  setLive('down', `cannot load: ${error.message}`);
}
follow();
