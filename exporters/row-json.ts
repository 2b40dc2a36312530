/**
 * How a stream row looks as JSON when it leaves Sluice through a network target (MQTT, Kafka,
 * HTTP) or a ws subscription: one object per row, column names as keys, in column order. The same
 * mapping everywhere, so a consumer reading several targets sees one shape:
 *
 * | SQL type                               | JSON                                                 |
 * | -------------------------------------- | ---------------------------------------------------- |
 * | TINYINT … BIGINT, FLOAT, DECIMAL       | number (BIGINT is within ±(2^53−1), so it is exact)  |
 * | VARCHAR                                | string                                               |
 * | BOOLEAN                                | true / false                                         |
 * | TIMESTAMP                              | ISO 8601 string in UTC, milliseconds: "2026-11-22T08:15:00.000Z" |
 * | VARBINARY                              | base64 string (RFC 4648, with padding)               |
 * | NULL                                   | null                                                 |
 *
 * TIMESTAMP as text rather than epoch milliseconds: downstream JSON consumers (Kafka Connect,
 * Node-RED, HTTP receivers) parse ISO text without knowing the column's type.
 */
import type { ColumnDef } from '../engine/catalog/schema.ts';
import type { Value } from '../engine/types.ts';

export type JsonValue = number | string | boolean | null;

/** One value in its JSON form (see the table above). */
export function valueToJson(value: Value, column: ColumnDef): JsonValue {
  if (value === null) return null;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (column.type.name === 'TIMESTAMP' && typeof value === 'number') return new Date(value).toISOString();
  return value;
}

/** A row as an object keyed by column name, hidden columns left out. */
export function rowToJson(columns: readonly ColumnDef[], row: readonly Value[]): Record<string, JsonValue> {
  const object: Record<string, JsonValue> = {};
  for (let i = 0; i < columns.length; i++) {
    const column = columns[i];
    if (column.hidden) continue;
    object[column.name] = valueToJson(row[i] ?? null, column);
  }
  return object;
}

/**
 * A value as text inside a topic name or message key: numbers and booleans as JSON spells them,
 * TIMESTAMP and VARBINARY as in the JSON payload, NULL as the empty string.
 */
export function valueToText(value: Value, column: ColumnDef): string {
  const json = valueToJson(value, column);
  return json === null ? '' : String(json);
}
