/**
 * The Voter application's procedures as one type, for typed clients (no code generation):
 *
 * ```ts
 * import { connect } from '../../client/index.ts';
 * import type { App } from './app.ts';
 * const client = await connect<App>('ws://127.0.0.1:21212');
 * const outcome: number = await client.call('Vote', 2015550123, 3, 2);
 * ```
 */
import type initialize from './initialize.ts';
import type results from './results.ts';
import type stateHeatmap from './state-heatmap.ts';
import type vote from './vote.ts';

export type App = {
  Vote: typeof vote;
  Initialize: typeof initialize;
  Results: typeof results;
  GetStateHeatmap: typeof stateHeatmap;
};
