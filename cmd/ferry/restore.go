package main

import (
	"context"
	"errors"
	"io"
)

// runRestore implements 'ferry restore'.
func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("restore: not built yet")
}
