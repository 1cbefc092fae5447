package main

// Config is the whole ferry.yml.
type Config struct {
	Bucket BucketConfig `yaml:"bucket"`
	Lease  LeaseConfig  `yaml:"lease"`
}
