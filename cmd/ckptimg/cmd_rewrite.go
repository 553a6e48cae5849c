package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder: replaced by the command's implementation.
func newRewriteCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "rewrite",
		Short:  "(not built yet)",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("rewrite: not built yet") },
	}
}
