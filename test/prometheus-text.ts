/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), for tests of
 * `/metrics`: every line must be a HELP or TYPE comment or a well-formed sample of a declared
 * family, TYPE at most once per family and before its samples. Throws naming the line that is
 * wrong; returns the samples for comparing figures.
 */

export interface PrometheusSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PrometheusExposition {
  types: Map<string, string>;
  samples: PrometheusSample[];
  /** The value of the one sample with this name and exactly these labels; undefined when absent. */
  value(name: string, labels?: Record<string, string>): number | undefined;
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const metricTypes = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const sampleSuffixes: Record<string, string[]> = { histogram: ['_bucket', '_sum', '_count'], summary: ['', '_sum', '_count'] };

export function parsePrometheusText(text: string): PrometheusExposition {
  const types = new Map<string, string>();
  const sampled = new Set<string>();
  const samples: PrometheusSample[] = [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] !== '') throw new Error('the exposition must end with a newline');
  lines.pop();
  lines.forEach((line, index) => {
    const where = `line ${index + 1} (${JSON.stringify(line.slice(0, 80))})`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const comment = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (comment === null) return; // other comments are allowed
      const [, kind, name, rest] = comment;
      if (!metricName.test(name)) throw new Error(`${where}: bad metric name`);
      if (kind === 'TYPE') {
        if (!metricTypes.has(rest)) throw new Error(`${where}: unknown type ${rest}`);
        if (types.has(name)) throw new Error(`${where}: second TYPE for ${name}`);
        if (sampled.has(name)) throw new Error(`${where}: TYPE after samples of ${name}`);
        types.set(name, rest);
      }
      return;
    }
    const sample = parseSample(line, where);
    const family = familyOf(sample.name, types);
    if (family === undefined) throw new Error(`${where}: sample of undeclared metric ${sample.name}`);
    sampled.add(family);
    samples.push(sample);
  });
  return {
    types,
    samples,
    value(name, labels = {}) {
      const wanted = JSON.stringify(Object.entries(labels).sort());
      const found = samples.filter((sample) => sample.name === name && JSON.stringify(Object.entries(sample.labels).sort()) === wanted);
      if (found.length > 1) throw new Error(`${found.length} samples of ${name} ${wanted}`);
      return found[0]?.value;
    },
  };
}

function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name) && !sampleSuffixes[types.get(name)!]) return name;
  for (const [family, type] of types) {
    for (const suffix of sampleSuffixes[type] ?? []) if (name === family + suffix) return family;
  }
  return undefined;
}

function parseSample(line: string, where: string): PrometheusSample {
  const head = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
  if (head === null) throw new Error(`${where}: a sample starts with a metric name`);
  const name = head[1];
  let at = name.length;
  const labels: Record<string, string> = {};
  if (line[at] === '{') {
    at++;
    while (line[at] !== '}') {
      const label = /^([^=]+)="/.exec(line.slice(at));
      if (label === null || !labelName.test(label[1])) throw new Error(`${where}: bad label at column ${at + 1}`);
      at += label[0].length;
      let value = '';
      while (line[at] !== '"') {
        if (at >= line.length) throw new Error(`${where}: unterminated label value`);
        if (line[at] === '\\') {
          const escaped = line[at + 1];
          if (escaped === 'n') value += '\n';
          else if (escaped === '\\' || escaped === '"') value += escaped;
          else throw new Error(`${where}: bad escape \\${escaped}`);
          at += 2;
        } else value += line[at++];
      }
      at++;
      if (labels[label[1]] !== undefined) throw new Error(`${where}: label ${label[1]} twice`);
      labels[label[1]] = value;
      if (line[at] === ',') at++;
      else if (line[at] !== '}') throw new Error(`${where}: expected , or } at column ${at + 1}`);
    }
    at++;
  }
  const rest = /^ (\S+)( -?\d+)?$/.exec(line.slice(at));
  if (rest === null) throw new Error(`${where}: expected " value [timestamp]" after the name and labels`);
  // Values are what Go's strconv.ParseFloat reads (Prometheus's own parser): NaN and Inf in any case.
  const text = rest[1];
  const special = text.toLowerCase().replace(/^\+/, '');
  const value = special === 'inf' ? Infinity : special === '-inf' ? -Infinity : special === 'nan' ? NaN : Number(text);
  if (Number.isNaN(value) && special !== 'nan') throw new Error(`${where}: value ${text} is not a number`);
  return { name, labels, value };
}
