import { describe, expect, it } from 'vitest';
import { Database } from '../engine/database.ts';
import { runVoterCheck, voterLoad } from '../bench/voter-load.ts';

describe('Voter embedded', () => {
  for (const partitions of [1, 4]) {
    it(`runs the workload and passes the consistency check on ${partitions} partition(s)`, async () => {
      const db = await Database.open({ schema: 'procedures/voter/ddl.sql', partitions, ttlIntervalMs: 0 });
      expect(await db.call('Initialize', 6, 'Edwina Burnam,Tabatha Gehling,Kelly Clauss,Jessie Alloway,Alana Bregman,Jessie Eichman')).toBe(6);
      expect(await db.call('Initialize', 6, 'x')).toBe(6);
      const load = voterLoad(42);
      const counts = { accepted: 0, invalid: 0, overLimit: 0 };
      for (let i = 0; i < 20_000; i++) {
        const [phone, contestant] = load.next();
        const outcome = (await db.call('Vote', phone, contestant, 2)) as number;
        if (outcome === 0) counts.accepted++;
        else if (outcome === 1) counts.invalid++;
        else counts.overLimit++;
      }
      expect(counts.invalid).toBeGreaterThan(0);
      expect(counts.accepted).toBeGreaterThan(0);
      const check = await runVoterCheck(db, counts.accepted, 2);
      expect(check.problems).toEqual([]);
      db.verify();
      await db.close();
    });
  }
});
