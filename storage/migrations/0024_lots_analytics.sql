-- Program analytics with lots: points that went into pending lots are issued when awarded
-- (the liability starts then), points taken back from pending lots by a return are spent,
-- and expired points leave the liability in a column of their own. A statement trigger runs
-- for every group commit whether its table got rows or not (each flush inserts into every
-- log table): it returns at once when there are none.
ALTER TABLE ledger_daily ADD COLUMN expired numeric NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION perkamo_ledger_daily() RETURNS trigger AS $$
BEGIN
    PERFORM 1 FROM new_rows LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO ledger_daily (space_id, day, wallet, issued, spent, expired)
    SELECT space_id, day, wallet, sum(greatest(amount, 0)), sum(greatest(-amount, 0)),
           sum(gone)
    FROM (
        SELECT n.space_id, (n.received_at AT TIME ZONE 'UTC')::date AS day,
               d ->> 'wallet' AS wallet, (d ->> 'amount')::numeric AS amount, 0 AS gone
        FROM new_rows n, json_array_elements(n.outcome -> 'delta') AS d
        UNION ALL
        SELECT n.space_id, (n.received_at AT TIME ZONE 'UTC')::date, p ->> 'wallet',
               (p ->> 'amount')::numeric, 0
        FROM new_rows n, json_array_elements(n.outcome -> 'pending') AS p
        UNION ALL
        SELECT n.space_id, (n.received_at AT TIME ZONE 'UTC')::date, x ->> 'wallet', 0,
               (x ->> 'amount')::numeric
        FROM new_rows n, json_array_elements(n.outcome -> 'settled' -> 'expired') AS x
    ) changes
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (space_id, day, wallet) DO UPDATE
        SET issued = ledger_daily.issued + EXCLUDED.issued,
            spent = ledger_daily.spent + EXCLUDED.spent,
            expired = ledger_daily.expired + EXCLUDED.expired;
    IF TG_TABLE_NAME = 'events' THEN
        INSERT INTO rule_daily (space_id, day, rule, wallet, awarded, firings)
        SELECT n.space_id, (n.received_at AT TIME ZONE 'UTC')::date, b ->> 'key',
               b ->> 'wallet', sum((b ->> 'amount')::numeric), count(*)
        FROM new_rows n, json_array_elements(n.outcome -> 'breakdown') AS b
        WHERE b ->> 'source' = 'rule'
        GROUP BY 1, 2, 3, 4
        ORDER BY 1, 2, 3, 4
        ON CONFLICT (space_id, day, rule, wallet) DO UPDATE
            SET awarded = rule_daily.awarded + EXCLUDED.awarded,
                firings = rule_daily.firings + EXCLUDED.firings;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER event_reversals_ledger_daily AFTER INSERT ON event_reversals
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION perkamo_ledger_daily();
CREATE TRIGGER ticks_ledger_daily AFTER INSERT ON ticks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION perkamo_ledger_daily();
CREATE TRIGGER identifies_ledger_daily AFTER INSERT ON identifies
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION perkamo_ledger_daily();
