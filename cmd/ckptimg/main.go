// Command ckptimg captures, inspects and rewrites checkpoint images.
// Commands, flags and exit codes are documented in docs/cli.md.
package main

import (
	"context"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

func main() {
	cli.Main("ckptimg", func(ctx context.Context) error {
		return newRootCommand().ExecuteContext(ctx)
	})
}
