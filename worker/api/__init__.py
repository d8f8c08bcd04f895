"""The HTTP API (`plangate serve`): the front door where identity and tenancy are enforced, so agents
get a URL and a token and never the Redis URL. Stateless: run as many as you like against one Redis."""
