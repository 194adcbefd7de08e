-- Exact values of executions (paise): a position's entry value (Σ price × quantity of its
-- entry order's trades) beside its display entry price, and each fill's Σ price × quantity
-- beside its average price. An order that trades at several prices has an average that is not
-- a whole paisa; PnL and charges use these values. Rows written before this migration have
-- NULL, read as price × quantity.
ALTER TABLE positions ADD COLUMN entry_value BIGINT;
ALTER TABLE fills ADD COLUMN value BIGINT;
