package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder: replaced by the command's implementation.
func newInfoCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "info",
		Short:  "(not built yet)",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("info: not built yet") },
	}
}
