/**
 * Exports as the server sees them: the pipeline (pipeline.ts) and the end-of-day jobs (daily.ts)
 * opened from the deployment's `exports` section under `<data>/export`, and attached to the router
 * — committed stream rows in, backpressure out, `@ExportRun` and the `exports` part of
 * `@Statistics`. engine/server/server.ts only opens, attaches and closes this.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import { applyDdl, emptyCatalog } from '../engine/catalog/ddl.ts';
import type { Catalog } from '../engine/catalog/schema.ts';
import { ErrorCode, SluiceError } from '../engine/errors.ts';
import type { ExportHold, Router, RouterOptions } from '../engine/execution/router.ts';
import { Op, errorPayload } from '../engine/execution/messages.ts';
import type { Value } from '../engine/types.ts';
import { decodeStreamRows, streamChunkStride } from '../engine/storage/stream-chunk.ts';
import { parseExportsConfig, type ExportsConfig } from './config.ts';
import { DailyJobs, type DailyRunResult } from './daily.ts';
import { ExportPipeline, type PartitionHold, type TargetStatistics } from './pipeline.ts';

export interface ExportsOptions {
  ddl: string;
  /** The data directory; the export buffer is `<data>/export`. */
  data: string | undefined;
  /** The deployment file's `exports` section, unparsed. */
  config: unknown;
  partitions: number;
  logger?: Logger;
  env?: Record<string, string | undefined>;
}

/** Where committed stream rows go besides the export pipeline: live subscriptions (engine/server/subscriptions.ts). */
export interface StreamRowsSubscriber {
  /** Whether anyone reads this stream's rows: a stream nobody has subscribed to is not cut into rows. */
  wants(stream: string): boolean;
  /** Values per row of the stream as the partitions encode them (its columns in the catalog in force). */
  valuesPerRow(stream: string): number;
  publish(stream: string, partition: number, firstSequence: number, rows: readonly (readonly Value[])[]): void;
}

/**
 * The router options that bring committed stream rows to the main thread: every stream's rows
 * (worker.ts takeCommitted chunks), those of streams added by live updates too, go to the export
 * pipeline, which keeps those with a target, and to the subscriptions (as rows, for the streams
 * they want). At each version switch the pipeline follows the router's new catalog, before the
 * first row of a stream the version adds can arrive.
 */
export function streamRowsOptions(exports: ServerExports | undefined, subscriber: () => StreamRowsSubscriber | undefined): Pick<RouterOptions, 'sendStreamRows' | 'onStreamRows' | 'onVersionSwitched'> {
  const pipeline = exports?.pipeline;
  return {
    sendStreamRows: true,
    onStreamRows: (partition, chunks) => {
      pipeline?.accept(partition, chunks);
      const to = subscriber();
      if (to === undefined) return;
      for (let i = 0; i < chunks.length; i += streamChunkStride) {
        const stream = chunks[i] as string;
        if (!to.wants(stream)) continue;
        const first = chunks[i + 1] as number;
        to.publish(stream, partition, first, decodeStreamRows(chunks[i + 4] as Uint8Array, to.valuesPerRow(stream)));
      }
    },
    onVersionSwitched: pipeline === undefined ? undefined : (catalog) => pipeline.adoptCatalog(catalog),
  };
}

export class ServerExports {
  readonly pipeline: ExportPipeline;
  readonly daily: DailyJobs;

  private constructor(pipeline: ExportPipeline, daily: DailyJobs) {
    this.pipeline = pipeline;
    this.daily = daily;
  }

  /**
   * Opens the pipeline, or returns undefined when there is nothing to export to disk: no data
   * directory (then exported streams keep their rows in memory, bounded, with a warning).
   */
  static async open(options: ExportsOptions): Promise<ServerExports | undefined> {
    const config: ExportsConfig = parseExportsConfig(options.config, options.env);
    const catalog: Catalog = applyDdl(options.ddl, emptyCatalog);
    if (options.data === undefined) {
      if (!config.empty) throw new SluiceError(ErrorCode.EXPORT_CONFIG, 'exports: the export buffer needs a data directory (--data <dir>, or "data" in the deployment file)', { path: ['exports'] });
      const exported = [...catalog.tables.values()].filter((table) => table.kind === 'stream' && table.exportTarget !== undefined);
      if (exported.length > 0) {
        options.logger?.warn({ streams: exported.map((table) => table.name) }, 'streams with EXPORT TO TARGET but no data directory: their rows stay in memory (bounded) and are not exported; start with --data to export them');
      }
      return undefined;
    }
    const pipeline = await ExportPipeline.open({ exportDir: path.join(path.resolve(options.data), 'export'), catalog, config, partitions: options.partitions, logger: options.logger, env: options.env });
    const daily = new DailyJobs({ config, pipeline, logger: options.logger });
    return new ServerExports(pipeline, daily);
  }


  /**
   * Once recovery has replayed the command log: raises every stream's next sequence past what the
   * buffer holds (rows of transactions the log lost must not lend their numbers to new rows,
   * which the buffer would drop as replayed), then backpressure, `@ExportRun`, statistics and the
   * daily timers.
   */
  attach(router: Router): void {
    const floors = this.pipeline.sequenceFloors();
    router.broadcastOp((partition) => Object.entries(floors).flatMap(([stream, next]) => [Op.STREAM_FLOOR, stream, next[partition]]));
    const toHold = (hold: PartitionHold | undefined): ExportHold | undefined => (hold === undefined ? undefined : { onFull: hold.onFull, payload: errorPayload(hold.error) });
    this.pipeline.onHold = (partition, hold) => router.setExportHold(partition, toHold(hold));
    for (let p = 0; p < router.partitionCount; p++) router.setExportHold(p, toHold(this.pipeline.holdOf(p)));
    router.statisticsSections.set('exports', (): TargetStatistics[] => this.pipeline.statistics());
    router.setSystemHandler('@ExportRun', (params) => this.runByHand(params));
    this.daily.start((query, params) => router.call('@AdHoc', query, params), (procedure, params) => router.call(procedure, ...params));
  }

  private runByHand(params: readonly unknown[]): Promise<DailyRunResult> {
    const [job, day] = params;
    if (typeof job !== 'string' || typeof day !== 'string' || params.length !== 2) {
      return Promise.reject(new SluiceError(ErrorCode.PARAM_TYPE, '@ExportRun takes (job: string, day: "YYYY-MM-DD")', { object: '@ExportRun' }));
    }
    return this.daily.run(job, day);
  }

  async close(): Promise<void> {
    this.daily.stop();
    await this.pipeline.close();
  }
}
