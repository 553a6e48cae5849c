package tcprepair

import (
	"fmt"

	"github.com/google/nftables"
)

// ListTables lists the host's nftables tables, as the network lock needs
// to talk to nftables: it reports how many there are.
func ListTables() (int, error) {
	c, err := nftables.New()
	if err != nil {
		return 0, fmt.Errorf("nftables: %w", err)
	}
	ts, err := c.ListTables()
	if err != nil {
		return 0, fmt.Errorf("nftables: %w", err)
	}
	return len(ts), nil
}
