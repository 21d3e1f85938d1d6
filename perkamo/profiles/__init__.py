"""The profile domain: the commands a profile's actor handles (commands/), the actor and
the rounds that make its writes durable, usage meters, history replay and ledger
verification."""
