"""Signed webhooks: the tenant's endpoints and allow list (store), the Standard Webhooks signature
(signing), one HTTP attempt behind the SSRF guard (sender) and the durable delivery loop (deliverer)."""
