package emuhost

import (
	"os"

	"golang.org/x/term"
)

// sizeOf returns f's size when f is a terminal, or nil.
func sizeOf(f *os.File) *terminalSize {
	fd := int(f.Fd())
	if !term.IsTerminal(fd) {
		return nil
	}
	cols, rows, err := term.GetSize(fd)
	if err != nil || rows <= 0 || cols <= 0 {
		return &terminalSize{rows: 24, cols: 80}
	}
	return &terminalSize{rows: rows, cols: cols}
}
