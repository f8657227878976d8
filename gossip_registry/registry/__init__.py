"""Pure replicated state: entries, versions, the merge rule, tombstones, digests."""
