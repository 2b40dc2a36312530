/**
 * Logins: the server's handshake (HELLO carries user and password) asks the authenticator, which
 * answers with the user's Grant or a refusal. A refusal never says whether the user exists: an
 * unknown user costs the same scrypt work (against a dummy hash with the configured users'
 * parameters) and gets the same error as a wrong password. Attempts from an address with recent
 * failures wait before they are checked (LoginThrottle), and attempts from one address are
 * spaced out, so guessing in parallel connections is as slow as guessing in one.
 */
import { randomBytes } from 'node:crypto';
import type { CheckedSecurity } from './config.ts';
import { Grant } from './grants.ts';
import { derivedKeyBytes, passwordLengthMax, saltBytes, scryptBlockSizeDefault, scryptCostDefault, scryptParallelismDefault, verifyPassword, type ScryptHash } from './passwords.ts';

/** Delay before checking an address's attempt after its first recent failure; it doubles per further failure. */
export const loginFailureDelayBaseMs = 200;
/** The delay stops growing here. */
export const loginFailureDelayMaxMs = 10_000;
/** Failures older than this are forgotten. */
export const loginFailureMemoryMs = 15 * 60_000;
/** An address whose queued attempts would wait longer than this is refused at once, unchecked. */
export const loginQueueWaitMaxMs = 60_000;
/** Addresses remembered at once; the oldest is forgotten first, so a flood of addresses cannot exhaust memory. */
export const loginAddressesTrackedMax = 10_000;

export interface ThrottleOptions {
  baseMs?: number;
  maxMs?: number;
  memoryMs?: number;
  queueWaitMaxMs?: number;
  addressesMax?: number;
  /** The clock, for tests. */
  now?: () => number;
}

interface AddressState {
  failures: number;
  lastFailureAt: number;
  /** No attempt from this address is checked before this time: attempts queue behind each other. */
  nextCheckAt: number;
}

/** Increasing delays for addresses that keep failing to log in. */
export class LoginThrottle {
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly memoryMs: number;
  private readonly queueWaitMaxMs: number;
  private readonly addressesMax: number;
  private readonly now: () => number;
  private readonly addresses = new Map<string, AddressState>();

  constructor(options: ThrottleOptions = {}) {
    this.baseMs = options.baseMs ?? loginFailureDelayBaseMs;
    this.maxMs = options.maxMs ?? loginFailureDelayMaxMs;
    this.memoryMs = options.memoryMs ?? loginFailureMemoryMs;
    this.queueWaitMaxMs = options.queueWaitMaxMs ?? loginQueueWaitMaxMs;
    this.addressesMax = options.addressesMax ?? loginAddressesTrackedMax;
    this.now = options.now ?? Date.now;
  }

  /** Recent failures from `address`. */
  failures(address: string): number {
    return this.state(address)?.failures ?? 0;
  }

  /** The delay a new attempt from `address` gets on top of any queue: 0, then base, 2·base, … up to max. */
  delayFor(address: string): number {
    const failures = this.failures(address);
    if (failures === 0) return 0;
    return Math.min(this.baseMs * 2 ** (failures - 1), this.maxMs);
  }

  /**
   * Books the next check for an attempt from `address`: milliseconds to wait before checking it,
   * or -1 when the address has so many attempts queued that this one is refused unchecked.
   */
  reserve(address: string): number {
    const now = this.now();
    const state = this.state(address);
    if (state === undefined) return 0;
    const wait = Math.max(0, state.nextCheckAt - now) + this.delayFor(address);
    if (wait > this.queueWaitMaxMs) return -1;
    state.nextCheckAt = now + wait;
    return wait;
  }

  failed(address: string): void {
    const now = this.now();
    let state = this.state(address);
    if (state === undefined) {
      if (this.addresses.size >= this.addressesMax) this.addresses.delete(this.addresses.keys().next().value!);
      state = { failures: 0, lastFailureAt: now, nextCheckAt: 0 };
    } else {
      this.addresses.delete(address);
    }
    state.failures++;
    state.lastFailureAt = now;
    // Re-inserted, so the Map's order is least recently failed first: eviction drops the stalest.
    this.addresses.set(address, state);
  }

  succeeded(address: string): void {
    this.addresses.delete(address);
  }

  get trackedAddresses(): number {
    return this.addresses.size;
  }

  private state(address: string): AddressState | undefined {
    const state = this.addresses.get(address);
    if (state !== undefined && this.now() - state.lastFailureAt > this.memoryMs && state.nextCheckAt <= this.now()) {
      this.addresses.delete(address);
      return undefined;
    }
    return state;
  }
}

export type LoginOutcome =
  | { ok: true; grant: Grant }
  | { ok: false; reason: 'missing' | 'refused' | 'throttled' };

export class Authenticator {
  private readonly security: CheckedSecurity;
  readonly throttle: LoginThrottle;
  /** Checked against when the user is unknown, so that an unknown name costs what a wrong password does. */
  private readonly dummy: ScryptHash;
  /** scrypt runs so far: lets tests see that an unknown user costs the same work. */
  verifications = 0;

  constructor(security: CheckedSecurity, throttle: ThrottleOptions = {}) {
    this.security = security;
    this.throttle = new LoginThrottle(throttle);
    const model = security.users.values().next().value?.hash;
    this.dummy = {
      cost: model?.cost ?? scryptCostDefault,
      blockSize: model?.blockSize ?? scryptBlockSizeDefault,
      parallelism: model?.parallelism ?? scryptParallelismDefault,
      salt: randomBytes(model?.salt.length ?? saltBytes),
      hash: randomBytes(model?.hash.length ?? derivedKeyBytes),
    };
  }

  /** Checks one login from `address`; waits first when the address has failed recently. */
  async login(user: unknown, password: unknown, address: string): Promise<LoginOutcome> {
    if (typeof user !== 'string' || typeof password !== 'string') return { ok: false, reason: 'missing' };
    const wait = this.throttle.reserve(address);
    if (wait < 0) return { ok: false, reason: 'throttled' };
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const known = this.security.users.get(user);
    let ok = false;
    this.verifications++;
    if (password.length <= passwordLengthMax) {
      const matches = await verifyPassword(password, known?.hash ?? this.dummy);
      ok = matches && known !== undefined;
    } else {
      // Refused without hashing a huge input; the dummy keeps the time the same.
      await verifyPassword('', this.dummy);
    }
    if (!ok || known === undefined) {
      this.throttle.failed(address);
      return { ok: false, reason: 'refused' };
    }
    this.throttle.succeeded(address);
    return { ok: true, grant: new Grant(known) };
  }
}
