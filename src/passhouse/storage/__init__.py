"""Tables, engine and queries. Nothing here commits: the caller owns the transaction."""
