/**
 * Topic templates of the MQTT target: `alerts/{region}/{meter_id}` names a topic per row, each
 * `{column}` replaced by that row's value (as exporters/row-json.ts renders it for text). A
 * template is checked twice: against the streams known when the target is created (a placeholder
 * naming a column a stream lacks is a configuration error at start-up), and against a batch's
 * columns the first time a stream is seen (a stream added later by a schema change).
 *
 * A value could otherwise change the topic's shape, so the characters MQTT gives a meaning in
 * topic names are percent-encoded inside values: `/` (level separator), `+` and `#` (wildcards,
 * not allowed when publishing), NUL, and `%` itself. NULL becomes an empty level.
 */
import type { ColumnDef } from '../engine/catalog/schema.ts';
import type { Value } from '../engine/types.ts';
import { valueToText } from './row-json.ts';

/** Longest topic MQTT allows, in UTF-8 bytes. */
export const topicBytesMax = 65_535;

type Part = string | { readonly column: string };

export class TopicTemplate {
  readonly text: string;
  readonly parts: readonly Part[];

  /** Parses `text`; throws an Error saying what is wrong with it. */
  constructor(text: string) {
    this.text = text;
    const parts: Part[] = [];
    const pattern = /\{([^{}]*)\}/g;
    let last = 0;
    for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
      const literal = text.slice(last, match.index);
      checkLiteral(literal, text);
      if (literal !== '') parts.push(literal);
      const column = match[1].trim().toLowerCase();
      if (!/^[a-z_][a-z0-9_$]*$/.test(column)) throw new Error(`placeholder {${match[1]}} in topic template "${text}" is not a column name`);
      parts.push({ column });
      last = pattern.lastIndex;
    }
    const tail = text.slice(last);
    checkLiteral(tail, text);
    if (tail !== '') parts.push(tail);
    if (parts.length === 0) throw new Error('the topic template is empty');
    this.parts = parts;
  }

  get columns(): string[] {
    return this.parts.filter((part): part is { column: string } => typeof part !== 'string').map((part) => part.column);
  }

  /**
   * The topic function for rows with these columns; throws an Error naming the placeholder and the
   * stream's columns when one does not exist.
   */
  bind(stream: string, columns: readonly ColumnDef[]): (row: readonly Value[]) => string {
    const steps = this.parts.map((part) => {
      if (typeof part === 'string') return part;
      const column = columns.find((candidate) => candidate.name.toLowerCase() === part.column && !candidate.hidden);
      if (column === undefined) {
        throw new Error(`topic template "${this.text}" names column {${part.column}}, which stream ${stream} does not have (its columns: ${columns.filter((c) => !c.hidden).map((c) => c.name).join(', ')})`);
      }
      return column;
    });
    if (steps.every((step) => typeof step === 'string')) {
      const fixed = steps.join('');
      return () => fixed;
    }
    return (row) => {
      let topic = '';
      for (const step of steps) topic += typeof step === 'string' ? step : escapeLevel(valueToText(row[step.position] ?? null, step));
      if (Buffer.byteLength(topic) > topicBytesMax) throw new Error(`topic for a row of ${stream} is longer than ${topicBytesMax} bytes`);
      return topic;
    };
  }
}

function checkLiteral(literal: string, text: string): void {
  if (/[+#\0]/.test(literal)) throw new Error(`topic template "${text}" contains a wildcard (+ or #) or NUL; a published topic cannot`);
  if (/[{}]/.test(literal)) throw new Error(`topic template "${text}" has an unmatched brace`);
}

function escapeLevel(value: string): string {
  return value.replace(/[%/+#\0]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}
