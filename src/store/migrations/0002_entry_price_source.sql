-- Where each position's entry price comes from: `fills` (our entry order's fills, an adopted
-- position's own orders' fills, or a price given by an operator) or `broker_average` (a position
-- found at the broker that no order of ours explains, priced at the broker's day average).
CREATE VIEW position_entry_prices AS
SELECT id,
       entry_price,
       CASE source WHEN 'adopted_broker_average' THEN 'broker_average' ELSE 'fills' END
           AS entry_price_source
FROM positions;
