"""The shared bottom layer that worker, governance and ledger may all import; it imports none of them."""
