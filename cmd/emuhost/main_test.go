package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		status int
		stderr string
	}{
		{name: "no command", args: nil, status: statusFailed, stderr: "emuhost: no command (try emuhost --help)\n"},
		{name: "bad mode", args: []string{"--mode", "sometimes", "--", "true"}, status: statusFailed,
			stderr: "emuhost: GVMM_EMULATED_HOST=\"sometimes\": want always, never or auto\n"},
		{name: "bad flag", args: []string{"--frobnicate"}, status: statusFailed, stderr: "unknown flag: --frobnicate"},
		{name: "never: the command's status", args: []string{"--mode", "never", "sh", "-c", "exit 3"}, status: 3},
		{name: "never: not found", args: []string{"--mode", "never", "/no/such/command"}, status: 127, stderr: "emuhost: "},
		{name: "help", args: []string{"--help"}, status: 0, stderr: "Usage: emuhost [flags] [--] COMMAND [ARG...]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, tt.status, run(tt.args, os.Stdin, &stdout, &stderr))
			assert.Contains(t, stderr.String(), tt.stderr)
		})
	}
}
