package main

// LeaseConfig is the config's lease section: who may write which database.
type LeaseConfig struct{}
