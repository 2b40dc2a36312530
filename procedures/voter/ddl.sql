-- Voter: the classic in-memory OLTP benchmark (../../docs/workloads: VoltDB's Voter, ported).

CREATE TABLE contestants (
  contestant_number INTEGER NOT NULL PRIMARY KEY,
  contestant_name VARCHAR(50) NOT NULL
);

CREATE TABLE area_code_state (
  area_code SMALLINT NOT NULL PRIMARY KEY,
  state VARCHAR(2) NOT NULL
);

CREATE TABLE votes (
  phone_number BIGINT NOT NULL,
  state VARCHAR(2) NOT NULL,
  contestant_number INTEGER NOT NULL
);
PARTITION TABLE votes ON COLUMN phone_number;

CREATE VIEW v_votes_by_phone_number (phone_number, num_votes) AS
  SELECT phone_number, COUNT(*) FROM votes GROUP BY phone_number;

CREATE VIEW v_votes_by_contestant_number_state (contestant_number, state, num_votes) AS
  SELECT contestant_number, state, COUNT(*) FROM votes GROUP BY contestant_number, state;

CREATE PROCEDURE Vote PARTITION ON TABLE votes COLUMN phone_number PARAMETER 0 FROM 'vote.ts';
CREATE PROCEDURE Initialize FROM 'initialize.ts';
CREATE PROCEDURE Results FROM 'results.ts';
CREATE PROCEDURE GetStateHeatmap FROM 'state-heatmap.ts';
