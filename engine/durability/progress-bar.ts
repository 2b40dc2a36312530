/**
 * The recovery progress bar for the CLI (`sluice start`): one bar for loading the snapshot's rows,
 * then one for replaying the log, then the summary line. Feeds on recover()'s onProgress; the
 * embedded Database reports through its own callback instead and does not draw.
 */
import cliProgress from 'cli-progress';
import { formatRecoverySummary, type RecoveryProgress, type RecoverySummary } from './recovery.ts';

export interface RecoveryProgressBar {
  onProgress: (progress: RecoveryProgress) => void;
  /** Stops the bar and prints the summary line. */
  finish: (summary: RecoverySummary) => void;
}

/** Draws on `stream` (default stderr, so stdout stays for output); redraws at most every 100 ms. */
export function createRecoveryProgressBar(stream: NodeJS.WriteStream = process.stderr): RecoveryProgressBar {
  let bar: cliProgress.SingleBar | undefined;
  let phase: RecoveryProgress['phase'] | undefined;
  const start = (label: string, total: number): cliProgress.SingleBar => {
    const next = new cliProgress.SingleBar(
      {
        format: `${label} [{bar}] {percentage}% | {value}/{total} | {duration}s`,
        stream,
        fps: 10,
        hideCursor: false,
        clearOnComplete: false,
        // Not a terminal (a log file, CI): draw nothing rather than one line per update.
        noTTYOutput: false,
      },
      cliProgress.Presets.shades_classic,
    );
    next.start(Math.max(total, 1), 0);
    return next;
  };
  return {
    onProgress(progress) {
      if (progress.phase !== phase) {
        // Draw the finished phase's final count before its bar stops.
        if (phase === 'snapshot') bar?.update(progress.rowsLoaded);
        if (phase === 'log') bar?.update(progress.transactionsReplayed);
        bar?.stop();
        bar = undefined;
        phase = progress.phase;
        if (phase === 'snapshot') bar = start('loading snapshot rows  ', progress.rowCount);
        if (phase === 'log') bar = start('replaying transactions', progress.transactionCount);
      }
      if (phase === 'snapshot') bar?.update(progress.rowsLoaded);
      if (phase === 'log') bar?.update(progress.transactionsReplayed);
    },
    finish(summary) {
      bar?.stop();
      bar = undefined;
      stream.write(`${formatRecoverySummary(summary)}\n`);
    },
  };
}
