package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// GenerateDocs writes what `make install` installs beside a program whose
// command tree is root, under dir laid out as PREFIX/share: man pages
// (man/man1/NAME.1, NAME-SUBCOMMAND.1, ...) generated from the commands'
// own help, and completion scripts for bash, zsh and fish. The binaries'
// tests run it (see the Makefile's docs target), since the command trees
// are built in package main.
func GenerateDocs(root *cobra.Command, dir string) error {
	name := root.Name()
	man := filepath.Join(dir, "man", "man1")
	bash := filepath.Join(dir, "bash-completion", "completions")
	zsh := filepath.Join(dir, "zsh", "site-functions")
	fish := filepath.Join(dir, "fish", "vendor_completions.d")
	for _, d := range []string{man, bash, zsh, fish} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// No footer with the build date; the header's date follows
	// SOURCE_DATE_EPOCH. Each page takes its title from its command.
	root.DisableAutoGenTag = true
	hdr := &doc.GenManHeader{Section: "1", Source: "ckptimg", Manual: "ckptimg manual"}
	if err := doc.GenManTree(root, hdr, man); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	for _, c := range []struct {
		path string
		gen  func(string) error
	}{
		{filepath.Join(bash, name), func(p string) error { return root.GenBashCompletionFileV2(p, true) }},
		{filepath.Join(zsh, "_"+name), root.GenZshCompletionFile},
		{filepath.Join(fish, name+".fish"), func(p string) error { return root.GenFishCompletionFile(p, true) }},
	} {
		if err := c.gen(c.path); err != nil {
			return fmt.Errorf("completion %s: %w", c.path, err)
		}
	}
	return nil
}

// MissingDocs lists what GenerateDocs should have written under dir for
// root and did not: a man page for every available command, each a roff
// page, and the completion scripts.
func MissingDocs(root *cobra.Command, dir string) []string {
	var missing []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root {
			return
		}
		page := filepath.Join(dir, "man", "man1", strings.ReplaceAll(c.CommandPath(), " ", "-")+".1")
		if b, err := os.ReadFile(page); err != nil || !strings.HasPrefix(string(b), ".nh\n.TH ") {
			missing = append(missing, page)
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	name := root.Name()
	for _, p := range []string{
		filepath.Join(dir, "bash-completion", "completions", name),
		filepath.Join(dir, "zsh", "site-functions", "_"+name),
		filepath.Join(dir, "fish", "vendor_completions.d", name+".fish"),
	} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			missing = append(missing, p)
		}
	}
	return missing
}
