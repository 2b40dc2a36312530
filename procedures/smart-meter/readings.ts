/**
 * The smart-meter reading simulator: N meters reporting cumulative kWh every 15 simulated
 * minutes, with the workload's injected faults — missing readings (0.5 %), duplicates (0.1 %),
 * rollbacks to a lower cumulative value (0.01 %), spikes above the meter's maximum (0.05 %) and
 * one concentrator going dark for a few intervals. Seeded: the same seed gives the same readings.
 *
 * It also predicts what the database must answer and hold, reading by reading, so a run can be
 * reconciled: each reading carries the return code IngestReading must give, and `expected`
 * totals the accepted kWh, the enriched and estimated rows and the alerts by kind.
 *
 * Faults are placed so that each one has exactly one predictable effect: a meter never misses two
 * intervals in a row (that would be a silent meter, which only the dark concentrator should
 * produce), spikes come only right after an accepted reading, and the dark concentrator's meters
 * get no other faults.
 */
import { seededRandom } from '../../engine/random.ts';
import { ingestAccepted, ingestAcceptedWithAlert, ingestDuplicate, ingestRejected, type IngestCode } from './codes.ts';
import type { MeterRow } from './dimensions.ts';
import { intervalMs } from './local-time.ts';

export interface FaultRates {
  missing: number;
  duplicate: number;
  rollback: number;
  spike: number;
}

export const workloadFaultRates: FaultRates = { missing: 0.005, duplicate: 0.001, rollback: 0.0001, spike: 0.0005 };
/** 23:00 in Amsterdam on the eve of the spring DST change: a run soon crosses midnight (and bills) and 02:00. */
export const simulationStart = Date.parse('2026-03-28T22:00:00Z');

export const noFaults: FaultRates = { missing: 0, duplicate: 0, rollback: 0, spike: 0 };

export interface DarkConcentrator {
  concentratorId: number;
  /** Index of the first interval it misses. */
  fromInterval: number;
  intervals: number;
}

export interface SimulatorOptions {
  seed: number;
  /** Timestamp of interval 0's readings (ms); aligned down to 15 minutes. */
  startTs: number;
  faults?: FaultRates;
  /** Default: the middle concentrator, dark from interval 3 for 4 intervals. `null`: none. */
  dark?: DarkConcentrator | null;
}

/** One reading to send: IngestReading's parameters and the answer it must get. */
export interface Reading {
  meterId: number;
  /** Position of the meter in the simulator's list (connections are chosen by it). */
  meterIndex: number;
  ts: number;
  cumulativeKwh: number;
  expect: IngestCode;
}

export interface Expected {
  readings: number;
  codes: Record<IngestCode, number>;
  /** Sum of kwh_delta over every accepted reading: what readings_enriched must total. */
  acceptedKwh: number;
  /** readings_enriched rows: one per interval covered by an accepted reading. */
  enrichedRows: number;
  estimatedRows: number;
  injected: { missing: number; duplicates: number; rollbacks: number; spikes: number; darkSkipped: number };
  alerts: { spike: number; tamper_or_rollover: number; concentrator_outage: number; meter_silent: number; unknown_meter: number };
}

interface MeterSim {
  meterId: number;
  concentratorId: number;
  maxKwh: number;
  /** Typical consumption per interval, in Wh. */
  baseWh: number;
  /** The meter's true register, in Wh (integers keep the sums exact). */
  registerWh: number;
  /** The last register value the database accepted, or -1 before the first reading. */
  acceptedWh: number;
  /** Intervals since the last accepted reading. */
  intervalsSinceAccepted: number;
  faultLast: boolean;
}

const whPerKwh = 1000;

export class ReadingSimulator {
  readonly meters: readonly MeterRow[];
  readonly dark: DarkConcentrator | null;
  readonly startTs: number;
  /** Index of the next interval to generate. */
  interval = 0;
  readonly expected: Expected = {
    readings: 0,
    codes: { ACCEPTED: 0, ACCEPTED_WITH_ALERT: 0, DUPLICATE: 0, REJECTED: 0, UNKNOWN_METER: 0 },
    acceptedKwh: 0,
    enrichedRows: 0,
    estimatedRows: 0,
    injected: { missing: 0, duplicates: 0, rollbacks: 0, spikes: 0, darkSkipped: 0 },
    alerts: { spike: 0, tamper_or_rollover: 0, concentrator_outage: 0, meter_silent: 0, unknown_meter: 0 },
  };
  private readonly random: () => number;
  private readonly faults: FaultRates;
  private readonly sims: MeterSim[];
  private acceptedWhTotal = 0;

  constructor(meters: readonly MeterRow[], options: SimulatorOptions) {
    this.meters = meters;
    this.random = seededRandom(options.seed >>> 0 || 1);
    this.faults = options.faults ?? workloadFaultRates;
    this.startTs = Math.floor(options.startTs / intervalMs) * intervalMs;
    const concentrators = meters.length === 0 ? 0 : meters[meters.length - 1].concentrator_id;
    this.dark = options.dark === undefined ? (concentrators > 0 ? { concentratorId: Math.ceil(concentrators / 2), fromInterval: 3, intervals: 4 } : null) : options.dark;
    this.sims = meters.map((meter) => {
      const baseWh = Math.round(meter.max_kwh_per_interval * whPerKwh * (0.05 + this.random() * 0.25));
      const registerWh = Math.floor(this.random() * 40_000_000);
      return { meterId: meter.meter_id, concentratorId: meter.concentrator_id, maxKwh: meter.max_kwh_per_interval, baseWh, registerWh, acceptedWh: -1, intervalsSinceAccepted: 0, faultLast: false };
    });
  }

  /** Timestamp of interval `index`'s readings. */
  tsOf(index: number): number {
    return this.startTs + index * intervalMs;
  }

  /** Whether the dark concentrator misses interval `index`. */
  isDark(index: number): boolean {
    return this.dark !== null && index >= this.dark.fromInterval && index < this.dark.fromInterval + this.dark.intervals;
  }

  /** The readings of the next interval, in send order (a duplicate follows its original). */
  nextInterval(): Reading[] {
    const index = this.interval++;
    const ts = this.tsOf(index);
    const dark = this.isDark(index);
    const readings: Reading[] = [];
    const faults = this.faults;
    for (let i = 0; i < this.sims.length; i++) {
      const sim = this.sims[i];
      // Consumption happens whether or not the reading gets through.
      const consumedWh = index === 0 ? 0 : this.consumption(sim);
      sim.registerWh += consumedWh;
      if (sim.acceptedWh >= 0) sim.intervalsSinceAccepted++;
      const onDark = this.dark !== null && sim.concentratorId === this.dark.concentratorId;
      if (dark && onDark) {
        this.expected.injected.darkSkipped++;
        continue;
      }
      if (sim.acceptedWh < 0) {
        this.accept(sim, readings, i, ts, ingestAccepted);
        continue;
      }
      const roll = this.random();
      const faultable = !onDark && !sim.faultLast;
      if (faultable && roll < faults.missing) {
        sim.faultLast = true;
        this.expected.injected.missing++;
        continue;
      }
      if (faultable && sim.acceptedWh >= 1 && roll < faults.missing + faults.rollback) {
        sim.faultLast = true;
        this.expected.injected.rollbacks++;
        this.expected.alerts.tamper_or_rollover++;
        const lowerWh = Math.max(0, sim.acceptedWh - 1 - Math.floor(this.random() * 5000));
        this.push(readings, sim, i, ts, lowerWh, ingestRejected);
        continue;
      }
      let code: IngestCode = ingestAccepted;
      if (sim.intervalsSinceAccepted === 1 && roll < faults.missing + faults.rollback + faults.spike) {
        // A real surge (not a misread): the register keeps it.
        sim.registerWh += Math.round(sim.maxKwh * whPerKwh * (2 + this.random()));
        code = ingestAcceptedWithAlert;
        this.expected.injected.spikes++;
        this.expected.alerts.spike++;
      }
      this.accept(sim, readings, i, ts, code);
      if (this.random() < faults.duplicate) {
        this.expected.injected.duplicates++;
        this.push(readings, sim, i, ts, sim.acceptedWh, ingestDuplicate);
      }
    }
    return readings;
  }

  /**
   * Records that FindSilentMeters ran for interval `index` after all its readings were answered:
   * the run for the interval after the dark concentrator's first miss must report the outage. A
   * driver may have sent the next interval's readings before the check runs, so the concentrator
   * must still be dark then too: outages shorter than three intervals are not predicted.
   */
  silenceChecked(index: number): void {
    if (this.dark !== null && this.dark.intervals >= 3 && index === this.dark.fromInterval + 1) this.expected.alerts.concentrator_outage++;
  }

  /** Sum of kwh_delta the database must have accepted so far, in kWh (exact sum of integer Wh). */
  get acceptedKwh(): number {
    return this.acceptedWhTotal / whPerKwh;
  }

  private consumption(sim: MeterSim): number {
    // Below 80 % of the meter's maximum, so only injected spikes cross it.
    const wh = Math.round(sim.baseWh * (0.5 + this.random()));
    return Math.min(wh, Math.floor(sim.maxKwh * whPerKwh * 0.8));
  }

  private accept(sim: MeterSim, readings: Reading[], meterIndex: number, ts: number, code: IngestCode): void {
    if (sim.acceptedWh >= 0) {
      this.acceptedWhTotal += sim.registerWh - sim.acceptedWh;
      this.expected.enrichedRows += sim.intervalsSinceAccepted;
      this.expected.estimatedRows += sim.intervalsSinceAccepted - 1;
    }
    this.expected.acceptedKwh = this.acceptedWhTotal / whPerKwh;
    sim.acceptedWh = sim.registerWh;
    sim.intervalsSinceAccepted = 0;
    sim.faultLast = false;
    this.push(readings, sim, meterIndex, ts, sim.registerWh, code);
  }

  private push(readings: Reading[], sim: MeterSim, meterIndex: number, ts: number, registerWh: number, expect: IngestCode): void {
    this.expected.readings++;
    this.expected.codes[expect]++;
    readings.push({ meterId: sim.meterId, meterIndex, ts, cumulativeKwh: registerWh / whPerKwh, expect });
  }
}
