package stats

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestJSONRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *Report
	}{
		{"sample", sampleReport()},
		{"empty", New(3, nil, nil).Report()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, tc.r.WriteJSON(&buf))
			got, err := ReadJSON(&buf)
			require.NoError(t, err)
			assert.Equal(t, tc.r, got)
		})
	}
}

// TestJSONFieldNames pins the field names programs rely on.
func TestJSONFieldNames(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, sampleReport().WriteJSON(&buf))
	var m map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &m))
	for _, f := range []string{"start_unix_ns", "taken_unix_ns", "elapsed_ns", "vcpus", "exits", "handle_ns",
		"run", "kinds", "registers", "per_vcpu", "eintr", "kicks", "irqs", "eventfds"} {
		assert.Contains(t, m, f)
	}
	reg := m["registers"].([]any)[0].(map[string]any)
	assert.Equal(t, map[string]any{
		"kind": "io-out", "device": "serial0", "register": "THR", "share": reg["share"],
		"count": 3000.0, "total_ns": reg["total_ns"], "mean_ns": reg["mean_ns"], "min_ns": 1200.0,
		"p50_ns": reg["p50_ns"], "p90_ns": reg["p90_ns"], "p99_ns": reg["p99_ns"], "max_ns": 1690.0,
	}, reg)
	v := m["per_vcpu"].([]any)[1].(map[string]any)
	for _, f := range []string{"vcpu", "exits", "exits_per_sec", "by_kind", "handle_ns", "run", "kicks", "registers"} {
		assert.Contains(t, v, f)
	}
	assert.Equal(t, map[string]any{"gsi": 4.0, "count": 1500.0}, m["irqs"].([]any)[0])
	assert.Equal(t, map[string]any{"name": "virtio-blk0 notify", "count": 1.0}, m["eventfds"].([]any)[0])
}

func TestReadJSONError(t *testing.T) {
	_, err := ReadJSON(strings.NewReader(`{"exits": "many"}`))
	assert.ErrorContains(t, err, "stats: reading JSON report")
}
