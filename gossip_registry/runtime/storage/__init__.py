"""What a node keeps on disk: the journal of acknowledged writes and snapshots, written safely."""
