package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder: replaced by the command's implementation.
func newVerifyCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "verify",
		Short:  "(not built yet)",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("verify: not built yet") },
	}
}
