package boot

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// fixtureELF is the plain vmlinux-like ELF behind the compressed fixtures in
// testdata/ (see testdata/README.md for how they were made with the
// reference command-line compressors).
func fixtureELF() []byte {
	return buildELF(0x1000000, []testSeg{
		{paddr: 0x1000000, data: pseudoCode(12*kib, 7)},
		{paddr: 0x1100000, data: pseudoCode(2*kib, 8), memsz: 64 * kib},
	}, pvhNote(0x1000010, 4))
}

// TestWriteFixtures regenerates testdata/x86.elf and the fuzz seed corpus
// when GVMM_BOOT_WRITE_FIXTURES=1; otherwise it checks x86.elf is current.
func TestWriteFixtures(t *testing.T) {
	elfPath := filepath.Join("testdata", "x86.elf")
	if os.Getenv("GVMM_BOOT_WRITE_FIXTURES") != "1" {
		b, err := os.ReadFile(elfPath)
		require.NoError(t, err)
		require.Equal(t, fixtureELF(), b, "testdata/x86.elf is stale: rerun with GVMM_BOOT_WRITE_FIXTURES=1 and recompress (testdata/README.md)")
		return
	}
	require.NoError(t, os.MkdirAll("testdata", 0o755))
	require.NoError(t, os.WriteFile(elfPath, fixtureELF(), 0o644))
	writeFuzzSeeds(t)
}
