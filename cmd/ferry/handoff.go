package main

import (
	"context"
	"errors"
	"io"
)

// runHandoff implements 'ferry handoff'.
func runHandoff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("handoff: not built yet")
}
