/**
 * Password hashes for the deployment file's users: scrypt from node:crypto, stored as one string
 * `scrypt$N$r$p$salt$hash` (salt and hash in base64) so that the cost travels with each hash and
 * can be raised later without invalidating old ones. Used by the server's authenticator
 * (authenticator.ts) and by `sluice hash-password` (client/cli.ts).
 *
 * Verification runs scrypt asynchronously (libuv's thread pool), so a login never blocks the
 * event loop that serves everyone else's calls, and compares with timingSafeEqual.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { ErrorCode, SluiceError } from '../errors.ts';

/** scrypt cost N for new hashes: 2^15 uses 32 MiB and ~0.1 s per check on a server core. */
export const scryptCostDefault = 2 ** 15;
export const scryptBlockSizeDefault = 8;
export const scryptParallelismDefault = 1;
/** Bounds on the parameters a stored hash may carry, so a bad deployment file cannot ask scrypt for gigabytes. */
export const scryptCostMax = 2 ** 20;
export const scryptBlockSizeMax = 32;
export const scryptParallelismMax = 16;
export const saltBytes = 16;
export const derivedKeyBytes = 32;
/** Longest password accepted: longer input is refused before any hashing work. */
export const passwordLengthMax = 1024;

export interface ScryptHash {
  cost: number;
  blockSize: number;
  parallelism: number;
  salt: Buffer;
  hash: Buffer;
}

export interface HashOptions {
  cost?: number;
  blockSize?: number;
  parallelism?: number;
}

function derive(password: string, salt: Buffer, cost: number, blockSize: number, parallelism: number, length: number): Promise<Buffer> {
  // scrypt needs 128·N·r bytes; leave headroom over Node's 32 MiB default for N = 2^15.
  const options: ScryptOptions = { N: cost, r: blockSize, p: parallelism, maxmem: 256 * cost * blockSize + 1024 * 1024 };
  return new Promise((resolve, reject) => scrypt(password.normalize('NFC'), salt, length, options, (error, key) => (error ? reject(error) : resolve(key))));
}

/** Hashes a password for a deployment file's `passwordHash`. */
export async function hashPassword(password: string, options: HashOptions = {}): Promise<string> {
  if (password.length === 0) throw new SluiceError(ErrorCode.INVALID_CONFIG, 'the password is empty');
  if (password.length > passwordLengthMax) throw new SluiceError(ErrorCode.INVALID_CONFIG, `the password is longer than ${passwordLengthMax} characters`);
  const cost = options.cost ?? scryptCostDefault;
  const blockSize = options.blockSize ?? scryptBlockSizeDefault;
  const parallelism = options.parallelism ?? scryptParallelismDefault;
  checkParameters(cost, blockSize, parallelism, 'hashPassword');
  const salt = randomBytes(saltBytes);
  const hash = await derive(password, salt, cost, blockSize, parallelism, derivedKeyBytes);
  return formatHash({ cost, blockSize, parallelism, salt, hash });
}

export function formatHash(parsed: ScryptHash): string {
  return `scrypt$${parsed.cost}$${parsed.blockSize}$${parsed.parallelism}$${parsed.salt.toString('base64')}$${parsed.hash.toString('base64')}`;
}

/** Parses a stored hash; `where` names it in the error (e.g. `security.users[2].passwordHash`). */
export function parseHash(text: string, where: string): ScryptHash {
  const parts = text.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') {
    throw new SluiceError(ErrorCode.INVALID_CONFIG, `${where} is not a scrypt hash: expected scrypt$N$r$p$salt$hash (make one with \`sluice hash-password\`)`);
  }
  const [cost, blockSize, parallelism] = parts.slice(1, 4).map(Number);
  checkParameters(cost, blockSize, parallelism, where);
  const salt = Buffer.from(parts[4], 'base64');
  const hash = Buffer.from(parts[5], 'base64');
  if (salt.length < 8 || hash.length < 16) throw new SluiceError(ErrorCode.INVALID_CONFIG, `${where}: salt or hash is too short (salt ${salt.length} bytes, hash ${hash.length} bytes)`);
  return { cost, blockSize, parallelism, salt, hash };
}

function checkParameters(cost: number, blockSize: number, parallelism: number, where: string): void {
  const powerOfTwo = Number.isInteger(cost) && cost >= 2 && (cost & (cost - 1)) === 0;
  if (!powerOfTwo || cost > scryptCostMax) throw new SluiceError(ErrorCode.INVALID_CONFIG, `${where}: scrypt N must be a power of two from 2 to ${scryptCostMax}, got ${cost}`);
  if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > scryptBlockSizeMax) throw new SluiceError(ErrorCode.INVALID_CONFIG, `${where}: scrypt r must be 1 to ${scryptBlockSizeMax}, got ${blockSize}`);
  if (!Number.isInteger(parallelism) || parallelism < 1 || parallelism > scryptParallelismMax) throw new SluiceError(ErrorCode.INVALID_CONFIG, `${where}: scrypt p must be 1 to ${scryptParallelismMax}, got ${parallelism}`);
}

/** True when `password` matches; the comparison takes the same time wherever the bytes differ. */
export async function verifyPassword(password: string, stored: ScryptHash): Promise<boolean> {
  const candidate = await derive(password, stored.salt, stored.cost, stored.blockSize, stored.parallelism, stored.hash.length);
  return timingSafeEqual(candidate, stored.hash);
}
