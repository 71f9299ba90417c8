package vmtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/vmtest/internal/wire"
)

// TestReporterSubtests replays test2json events as the guest sends them
// and checks that each guest test becomes a subtest here: nested ones
// inside their parent, skipped ones skipped. (That a failing guest test
// fails its subtest and the parent is checked end to end by
// tests.TestVMTestGuestFailure.)
func TestReporterSubtests(t *testing.T) {
	var ran []string
	t.Run("guest", func(t *testing.T) {
		r := newReporter(t, "")
		for _, ev := range []testEvent{
			{Action: "start"},
			{Action: "run", Test: "TestA"},
			{Action: "output", Test: "TestA", Output: "=== RUN   TestA\n"},
			{Action: "run", Test: "TestA/sub"},
			{Action: "output", Test: "TestA/sub", Output: "    a_test.go:9: in sub\n"},
			{Action: "pass", Test: "TestA/sub"},
			{Action: "pass", Test: "TestA", Elapsed: 0.5},
			{Action: "run", Test: "TestB"},
			{Action: "skip", Test: "TestB"},
			{Action: "output", Output: "PASS\n"},
			{Action: "pass"},
		} {
			data, err := json.Marshal(ev)
			require.NoError(t, err)
			r.frame(wire.Frame{Kind: wire.KindJSON, Payload: string(data)})
			r.reportFinished()
		}
		r.frame(wire.Frame{Kind: wire.KindExit, Payload: "0"})
		r.finish(nil, 0)
		ran = append(ran, t.Name())
	})
	assert.Equal(t, []string{"TestReporterSubtests/guest"}, ran)
	assert.False(t, t.Failed())
}

func TestReporterCoverageFiles(t *testing.T) {
	dir := t.TempDir()
	r := newReporter(t, dir)
	for _, c := range []wire.FileChunk{
		{Name: "covmeta.1", Data: []byte("meta"), Last: true},
		{Name: "covcounters.1", Data: []byte("count")},
		{Name: "covcounters.1", Data: []byte("ers"), Last: true},
	} {
		r.frame(wire.Frame{Kind: wire.KindFile, Payload: wire.EncodeChunk(c)})
	}
	assert.Empty(t, r.bad)
	for name, want := range map[string]string{"covmeta.1": "meta", "covcounters.1": "counters"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, want, string(got))
	}
	// A name that leaves the folder is refused.
	r.frame(wire.Frame{Kind: wire.KindFile, Payload: wire.EncodeChunk(wire.FileChunk{Name: "../evil", Data: []byte("x"), Last: true})})
	require.Len(t, r.bad, 1)
	assert.ErrorContains(t, r.bad[0], "not a relative path")
}
