package main

import (
	"io"

	"github.com/gvmm/gvmm/machine"
)

// observers holds the statistics and trace outputs of a run.
type observers struct{}

func newObservers(m *machine.Machine, f runFlags, stderr io.Writer) (*observers, error) {
	return &observers{}, nil
}

func (o *observers) finish(res *machine.Result, stderr io.Writer) error { return nil }

func traceCommand(args []string, stdout, stderr io.Writer) int { return statusUsage }
