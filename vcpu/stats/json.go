package stats

import (
	"encoding/json"
	"fmt"
	"io"
)

// WriteJSON writes the report as one indented JSON object for programs. The
// field names are part of gvmm's interface and change only by addition;
// durations are integer nanoseconds (fields ending in _ns), shares are
// fractions from 0 to 1.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON parses a report written by WriteJSON, such as the answer of the
// socket ServeUnix listens on.
func ReadJSON(r io.Reader) (*Report, error) {
	var rep Report
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return nil, fmt.Errorf("stats: reading JSON report: %w", err)
	}
	return &rep, nil
}
