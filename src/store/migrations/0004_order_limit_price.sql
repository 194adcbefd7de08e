-- An order's LIMIT price (paise), NULL for a MARKET order. A limit entry recovered pending
-- after a restart keeps it, so that the children of a sliced limit entry still to send go at
-- that price, never as MARKET orders. Rows written before this migration have NULL.
ALTER TABLE orders ADD COLUMN limit_price BIGINT;
