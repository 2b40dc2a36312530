-- Smart meter: the flagship application (../../../shared/workloads/smart-meter.md, docs/smart-meter.md).
-- Meters report a cumulative kWh reading every 15 minutes; IngestReading validates, estimates
-- gaps, prices, rolls the day over and emits enriched rows and alerts in one transaction.

-- Replicated dimension data (a copy in every partition: enrichment is a local lookup).
CREATE TABLE settings (
  name VARCHAR(32) NOT NULL PRIMARY KEY,
  value VARCHAR(64) NOT NULL
);

CREATE TABLE tariffs (
  tariff_id INTEGER NOT NULL PRIMARY KEY,
  name VARCHAR(32) NOT NULL,
  peak_price_per_kwh DECIMAL(12,6) NOT NULL,
  offpeak_price_per_kwh DECIMAL(12,6) NOT NULL,
  peak_start_hour TINYINT NOT NULL,
  peak_end_hour TINYINT NOT NULL
);

CREATE TABLE meters (
  meter_id BIGINT NOT NULL PRIMARY KEY,
  customer_id BIGINT NOT NULL,
  concentrator_id INTEGER NOT NULL,
  tariff_id INTEGER NOT NULL,
  region VARCHAR(16) NOT NULL,
  max_kwh_per_interval FLOAT NOT NULL
);
CREATE INDEX meters_by_concentrator ON meters (concentrator_id);

-- Running state per meter. day is the UTC instant of the local midnight that starts the day
-- being accumulated; day_estimated (not in the workload sketch) counts that day's estimated
-- intervals, which billing reports.
CREATE TABLE meter_state (
  meter_id BIGINT NOT NULL PRIMARY KEY,
  last_ts TIMESTAMP NOT NULL,
  last_kwh FLOAT NOT NULL,
  day TIMESTAMP NOT NULL,
  day_kwh FLOAT NOT NULL,
  day_cost DECIMAL(15,6) NOT NULL,
  status VARCHAR(12) NOT NULL,
  gaps INTEGER NOT NULL,
  day_estimated INTEGER NOT NULL
);
PARTITION TABLE meter_state ON COLUMN meter_id;
-- No index on last_ts: every reading moves it, and keeping an ordered index current cost ~8 %
-- of IngestReading, while FindSilentMeters' scan of meter_state runs once per interval.

-- Closed days per meter, written by IngestReading when a meter's day rolls over; end-of-day
-- billing sums them per customer. Partitioned like meter_state so the rollover stays local.
CREATE TABLE daily_usage (
  meter_id BIGINT NOT NULL,
  day TIMESTAMP NOT NULL,
  customer_id BIGINT NOT NULL,
  kwh FLOAT NOT NULL,
  cost DECIMAL(15,6) NOT NULL,
  estimated_intervals INTEGER NOT NULL,
  PRIMARY KEY (meter_id, day)
);
PARTITION TABLE daily_usage ON COLUMN meter_id;
CREATE INDEX daily_usage_by_day ON daily_usage (day);

-- ts is the start of the 15-minute interval the row measures (the reading that closed it came
-- at ts + 15 minutes); estimated rows fill intervals whose readings never arrived.
CREATE STREAM readings_enriched PARTITION ON COLUMN meter_id EXPORT TO TARGET analytics (
  meter_id BIGINT NOT NULL,
  customer_id BIGINT NOT NULL,
  region VARCHAR(16) NOT NULL,
  ts TIMESTAMP NOT NULL,
  kwh_delta FLOAT NOT NULL,
  estimated BOOLEAN NOT NULL,
  price DECIMAL(12,6) NOT NULL,
  cost DECIMAL(15,6) NOT NULL
);

-- region (not in the workload sketch) lets an MQTT target publish to alerts/{region}/{meter_id}.
CREATE STREAM meter_alerts PARTITION ON COLUMN meter_id EXPORT TO TARGET alerts (
  meter_id BIGINT NOT NULL,
  concentrator_id INTEGER,
  region VARCHAR(16),
  ts TIMESTAMP NOT NULL,
  kind VARCHAR(24) NOT NULL,
  detail VARCHAR(200)
);

CREATE VIEW region_load (region, interval_start, kwh, readings) AS
  SELECT region, ts, SUM(kwh_delta), COUNT(*) FROM readings_enriched GROUP BY region, ts;

-- Alerts by kind, kept without keeping the alerts: the end-of-run reconciliation reads it.
CREATE VIEW alert_counts (kind, alerts) AS
  SELECT kind, COUNT(*) FROM meter_alerts GROUP BY kind;

CREATE PROCEDURE IngestReading PARTITION ON TABLE meter_state COLUMN meter_id PARAMETER 0 FROM 'ingest-reading.ts';
CREATE PROCEDURE FindSilentMeters FROM 'find-silent-meters.ts';
CREATE PROCEDURE LoadTariffs FROM 'load-tariffs.ts';
CREATE PROCEDURE LoadMeters FROM 'load-meters.ts';
CREATE PROCEDURE Configure FROM 'configure.ts';
CREATE PROCEDURE BillingForDay FROM 'billing-for-day.ts';
