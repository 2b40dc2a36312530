/**
 * `sluice load` on the command line: connects, runs the loader (load.ts) with a progress bar on a
 * terminal (cli-progress), prints a one-line summary and the first rejected lines, and leaves the
 * full list to --rejects. The exit code (set by cli.ts) says whether anything was rejected.
 */
import cliProgress from 'cli-progress';
import { connect, type ConnectOptions } from './index.ts';
import { loadCsv as load, type LoadReport } from './load.ts';

/** Rejected lines printed to the terminal; --rejects gets them all. */
export const rejectionsShownMax = 20;

export async function loadCsv(url: string, connectOptions: ConnectOptions, target: string, file: string, options: { header: boolean; delimiter: string; inFlight?: number; rejects?: string }): Promise<LoadReport> {
  const client = await connect(url, connectOptions);
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar({ format: 'loading {bar} {percentage}% | {loaded} loaded, {rejected} rejected | {eta_formatted} left', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
    : undefined;
  let started = false;
  let report: LoadReport;
  try {
    report = await load(client, target, file, {
      header: options.header,
      delimiter: options.delimiter,
      inFlightMax: options.inFlight,
      rejectsFile: options.rejects,
      onProgress: (bytesRead, bytesTotal, loaded, rejected) => {
        if (bar === undefined) return;
        if (!started) {
          bar.start(bytesTotal, 0, { loaded: 0, rejected: 0 });
          started = true;
        }
        bar.update(bytesRead, { loaded, rejected });
      },
    });
  } finally {
    bar?.stop();
    await client.close();
  }
  const rate = report.seconds > 0 ? Math.round(report.loaded / report.seconds) : report.loaded;
  console.log(`loaded ${report.loaded} row(s) into ${report.kind} ${report.target} in ${report.seconds.toFixed(2)} s (${rate}/s); rejected ${report.rejected}`);
  for (const rejection of report.rejections.slice(0, rejectionsShownMax)) console.error(`line ${rejection.line}: ${rejection.reason}`);
  if (report.rejected > rejectionsShownMax) console.error(`… and ${report.rejected - rejectionsShownMax} more${options.rejects ? ` (all in ${options.rejects})` : ' (use --rejects <file> for all of them)'}`);
  return report;
}
