"""Who may plan what: the vocabulary, the request/output models, the agent registry and pure policy."""
