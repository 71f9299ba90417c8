package vmtestguest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/vmtest/guest"
)

// TestInGuest checks that the test runs as root in a Linux guest whose
// /init is vmtest's.
func TestInGuest(t *testing.T) {
	guest.SkipIfNotInVM(t)
	assert.Equal(t, 0, os.Getuid(), "root in the guest")
	cmdline, err := os.ReadFile("/proc/cmdline")
	require.NoError(t, err)
	assert.Contains(t, string(cmdline), "console=ttyS0")
	_, err = os.Stat("/vmtest/config.json")
	assert.NoError(t, err, "the image's vmtest config")
}

// TestTestdata reads the package's testdata, copied into the guest.
func TestTestdata(t *testing.T) {
	guest.SkipIfNotInVM(t)
	data, err := os.ReadFile("testdata/greeting.txt")
	require.NoError(t, err)
	assert.Equal(t, "hello from testdata\n", string(data))
}

// TestCommands runs programs the image was built with: a u-root command
// and a Go program of this package, both compiled for the guest.
func TestCommands(t *testing.T) {
	guest.SkipIfNotInVM(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"u-root ls", []string{"/bin/ls", "/vmtest/pkg/testdata"}, "greeting.txt"},
		{"own program", []string{"/bin/hello", "gvmm"}, "hello, gvmm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(tt.args[0], tt.args[1:]...).CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.Contains(t, strings.TrimSpace(string(out)), tt.want)
		})
	}
}

// TestSkipped is skipped in the guest: the host reports it as skipped.
func TestSkipped(t *testing.T) {
	guest.SkipIfNotInVM(t)
	t.Skip("skipped on purpose, in the guest")
}

// TestFailsOnPurpose fails in the guest. The host's example runs it in a
// child test process and checks that it is reported as a failure.
func TestFailsOnPurpose(t *testing.T) {
	guest.SkipIfNotInVM(t)
	t.Log("about to fail on purpose")
	t.Errorf("failing on purpose: %d != %d", 1, 2)
}
