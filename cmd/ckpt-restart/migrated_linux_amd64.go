package main

import (
	"fmt"
	"io"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/restorer"
)

// ConfirmPrefix starts the line ckpt-restart prints on standard output once
// the program restored from a chain stream runs: "restored ID PID", ID the
// top image's id and PID the restored root's pid as this host sees it.
// `ckptimg migrate` reads it back through its transport and only then ends
// the source (docs/migrate.md).
const ConfirmPrefix = "restored "

// migrationConfirmation returns what prints the confirmation for chain.
func migrationConfirmation(chain *format.Chain) func(io.Writer, *restorer.Restored) {
	id := chain.Top().ID()
	return func(w io.Writer, res *restorer.Restored) {
		fmt.Fprintf(w, "%s%s %d\n", ConfirmPrefix, id, res.PID)
	}
}
