"""Gossip encryption in one place: keys and keyring, the keyring file, sealing, key rotation."""
