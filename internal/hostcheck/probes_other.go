//go:build !(linux && amd64)

package hostcheck

import "errors"

var probes = []probe{
	{"linux", true, "capture and restore", func() (string, error) { return "", errors.New("capture and restore need Linux") }},
}
