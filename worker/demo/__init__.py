"""`plangate demo`: one governed job end to end, embedded (in-process Redis stand-in, scripted LLM
endpoint, a worker and the ledger writer), no server needed."""
