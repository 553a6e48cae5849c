//go:build !linux

package main

import "github.com/ckptimg/ckptimg/format"

// hostVDSO: only Linux has a vDSO to offer.
func hostVDSO(*format.Machine) []byte { return nil }
