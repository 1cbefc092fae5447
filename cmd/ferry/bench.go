package main

import (
	"context"
	"errors"
	"io"
)

// runBench implements 'ferry bench'.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("bench: not built yet")
}
