"""`perkamo`: the operator's command line (serve, spaces, keys, operators, webhooks, adjust,
reverse, simulate, backtest, verify, doctor, cluster)."""
