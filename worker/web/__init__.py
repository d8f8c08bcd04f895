"""The read-only live view (`plangate web`): what is queued, running and recently finished."""
