/**
 * The importer pipeline's flow control and failure handling, against a stand-in router whose
 * answers the test releases by hand: the source is paused at inFlightMax and when partition queues
 * fill, resumed when they drain; a SERVER_BUSY refusal keeps that message and every later one in
 * order and retries them; failures go to the dead-letter sink and count as done; shutdown answers
 * leave a message unacknowledged.
 */
import { describe, expect, it } from 'vitest';
import type { ResultSink, Router } from '../engine/execution/router.ts';
import { ProtocolCode, Status } from '../engine/server/protocol.ts';
import type { DeadLetter, DeadLetterSink } from '../importers/dead-letter.ts';
import type { ImportMessage } from '../importers/mapping.ts';
import { ImportPipeline } from '../importers/pipeline.ts';
import { ImporterCounters } from '../importers/statistics.ts';
import { waitUntil } from './importers-helpers.ts';

interface Submitted {
  name: string;
  params: readonly unknown[];
  sink: ResultSink;
  token: number;
}

/** Holds every call until the test answers it; refuses with SERVER_BUSY while `busy` is set. */
class FakeRouter {
  readonly submitted: Submitted[] = [];
  busy = false;
  queueDepths: number[] = [0, 0];
  readonly queueDepthLimit = 100;

  submit(name: string, params: readonly unknown[], sink: ResultSink, token: number): void {
    if (this.busy) {
      sink.deliver(token, Status.SERVER_BUSY, [ProtocolCode.SERVER_BUSY, 'queue full', null], 0);
      return;
    }
    this.submitted.push({ name, params, sink, token });
  }

  answer(index: number, status: Status = Status.SUCCESS, payload: unknown = 0): void {
    const call = this.submitted[index];
    call.sink.deliver(call.token, status, payload, 1);
  }
}

class MemorySink implements DeadLetterSink {
  readonly letters: DeadLetter[] = [];
  async write(entry: DeadLetter): Promise<void> {
    this.letters.push(entry);
  }
  async close(): Promise<void> {}
}

function message(seq: number): ImportMessage {
  return { topic: 't', partition: 0, offset: seq, key: null, value: Buffer.from(String(seq)), timestamp: 0, headers: {}, topicValues: {} };
}

function setup(inFlightMax: number, delivery: 'at-least-once' | 'exactly-once' = 'at-least-once') {
  const router = new FakeRouter();
  const sink = new MemorySink();
  const counters = new ImporterCounters('test', 'kafka');
  let resumes = 0;
  const pipeline = new ImportPipeline({
    importer: 'test',
    procedure: 'P',
    delivery,
    mapping: (m) => {
      const text = m.value.toString();
      if (text === 'poison') throw new Error('cannot read poison');
      return [Number(text)];
    },
    deadLetter: sink,
    router: router as unknown as Router,
    logger: undefined,
    counters,
    inFlightMax,
    resume: () => resumes++,
  });
  const done: number[] = [];
  const offer = (seq: number, value?: string) => pipeline.offer(value === undefined ? message(seq) : { ...message(seq), value: Buffer.from(value) }, () => done.push(seq));
  return { router, sink, counters, pipeline, done, offer, resumes: () => resumes };
}

describe('importer pipeline', () => {
  it('pauses the source at inFlightMax and resumes it once half has drained', () => {
    const { router, offer, resumes, pipeline, done } = setup(4);
    expect([offer(0), offer(1), offer(2)]).toEqual([true, true, true]);
    expect(offer(3)).toBe(false);
    expect(pipeline.paused).toBe(true);
    router.answer(0);
    expect(resumes()).toBe(0);
    router.answer(1);
    expect(resumes()).toBe(1);
    expect(pipeline.paused).toBe(false);
    expect(done).toEqual([0, 1]);
  });

  it('pauses while a partition queue is past half the SERVER_BUSY depth', async () => {
    const { router, offer, resumes } = setup(1000);
    router.queueDepths = [10, 60];
    expect(offer(0)).toBe(false);
    router.queueDepths = [10, 20];
    router.answer(0);
    expect(resumes()).toBe(1);
  });

  it('keeps a refused message and every later one in order, and retries them', async () => {
    const { router, offer, resumes, done, counters } = setup(1000, 'exactly-once');
    offer(0);
    router.busy = true;
    expect(offer(1)).toBe(false);
    // The source was told to pause; a message it had already fetched still queues behind 1.
    expect(offer(2)).toBe(false);
    expect(router.submitted.map((call) => call.params[3])).toEqual([0]);
    router.busy = false;
    await waitUntil('the refused messages to be sent again', () => router.submitted.length === 3);
    expect(router.submitted.map((call) => call.params[3])).toEqual([0, 1, 2]);
    expect(router.submitted[1].name).toBe('@ImportOnce:P');
    expect(router.submitted[1].params).toEqual(['test', 't', 0, 1, 1]);
    await waitUntil('the source to be resumed', () => resumes() === 1);
    router.answer(0, Status.SUCCESS, [1, 0]);
    router.answer(1, Status.SUCCESS, [0, null]);
    router.answer(2, Status.SUCCESS, [1, 2]);
    expect(done).toEqual([0, 1, 2]);
    expect(counters.snapshot(0, false)).toMatchObject({ applied: 2, skipped: 1 });
  });

  it('dead-letters unmappable messages and failed transactions with the reason, and counts them done', async () => {
    const { router, offer, sink, done, counters } = setup(1000);
    offer(0, 'poison');
    offer(1);
    router.answer(0, Status.USER_ABORT, ['USER_ABORT', 'not today', null]);
    await waitUntil('two dead letters', () => sink.letters.length === 2 && done.length === 2);
    expect(sink.letters.map((letter) => letter.reason)).toEqual([
      'cannot map the message to P: cannot read poison',
      'P failed with USER_ABORT USER_ABORT: not today',
    ]);
    expect(counters.snapshot(0, false)).toMatchObject({ deadLettered: 2, errors: 2, received: 2 });
  });

  it('leaves a message unacknowledged when the server answers that it is shutting down', async () => {
    const { router, offer, sink, done, pipeline } = setup(1000);
    offer(0);
    router.answer(0, Status.UNEXPECTED_FAILURE, [ProtocolCode.SHUTTING_DOWN, 'the server shut down before the call ran', null]);
    await pipeline.close();
    expect(done).toEqual([]);
    expect(sink.letters).toEqual([]);
    expect(offer(1)).toBe(false);
  });
});
