package main

// BucketConfig is the config's bucket section: where change sets are
// shipped and restored from.
type BucketConfig struct{}
