package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder: replaced by the command's implementation.
func newCaptureCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "capture",
		Short:  "(not built yet)",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("capture: not built yet") },
	}
}
