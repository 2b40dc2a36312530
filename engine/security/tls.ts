/**
 * TLS from the deployment file's `tls: { cert, key, ca? }` (PEM file paths): the client endpoint
 * becomes wss://, and anything else that serves HTTP (the web console) gets https from the same
 * section through `createHttpServer`. Files are read and checked (key matches certificate) at
 * start, so a bad file stops the server with a message naming it instead of failing the first
 * handshake.
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { createSecureContext } from 'node:tls';
import { ErrorCode, SluiceError } from '../errors.ts';

/** The section as the deployment file holds it: paths of PEM files. */
export interface TlsConfig {
  cert: string;
  key: string;
  /** Certificates to trust beyond the system's (chain to send, or a private CA). */
  ca?: string;
}

/** The section with its files read. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

async function readPem(file: unknown, where: string): Promise<Buffer> {
  if (typeof file !== 'string' || file.length === 0) throw new SluiceError(ErrorCode.INVALID_CONFIG, `${where} must be the path of a PEM file`);
  let text: Buffer;
  try {
    text = await readFile(file);
  } catch (error) {
    throw new SluiceError(ErrorCode.INVALID_CONFIG, `${where}: cannot read ${file}: ${(error as Error).message}`);
  }
  if (!text.includes('-----BEGIN ')) throw new SluiceError(ErrorCode.INVALID_CONFIG, `${where}: ${file} is not a PEM file (no -----BEGIN line)`);
  return text;
}

/** Reads and checks the `tls` section; `where` names it in errors. */
export async function loadTls(config: TlsConfig, where = 'tls'): Promise<TlsMaterial> {
  if (typeof config !== 'object' || config === null) throw new SluiceError(ErrorCode.INVALID_CONFIG, `${where} must be an object { cert, key, ca? }`);
  const material: TlsMaterial = { cert: await readPem(config.cert, `${where}.cert`), key: await readPem(config.key, `${where}.key`) };
  if (config.ca !== undefined) material.ca = await readPem(config.ca, `${where}.ca`);
  try {
    createSecureContext(material);
  } catch (error) {
    throw new SluiceError(ErrorCode.INVALID_CONFIG, `${where}: the certificate and key do not form a usable TLS identity (${(error as Error).message})`);
  }
  return material;
}

/**
 * An HTTP server, or an HTTPS one when `tls` is given: for the client endpoint and the console.
 * `handler` answers plain HTTP requests (WebSocket upgrades are handled by ws on the same server).
 */
export function createHttpServer(tls: TlsMaterial | undefined, handler?: http.RequestListener): http.Server {
  return tls === undefined ? http.createServer(handler) : https.createServer({ cert: tls.cert, key: tls.key, ca: tls.ca }, handler);
}
