package main

import (
	"context"
	"errors"
	"io"
)

// runMount implements 'ferry mount'.
func runMount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("mount: not built yet")
}
