package boot

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExtract(t *testing.T) {
	elf := testKernelELF(true)
	tests := []struct {
		name   string
		kernel []byte
		want   []byte
		err    string
	}{
		{name: "vmlinux as is", kernel: elf, want: elf},
		{name: "bzImage gzip", kernel: buildBzImage(defaultBz(compress(t, CompressionGzip, elf))), want: elf},
		{name: "bzImage lz4", kernel: buildBzImage(defaultBz(compress(t, CompressionLZ4, elf))), want: elf},
		{name: "payload not ELF", kernel: buildBzImage(defaultBz(compress(t, CompressionGzip, []byte("not an elf at all")))), err: "not an ELF"},
		{name: "not a kernel", kernel: []byte("hello"), err: "not a Linux kernel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Extract(tt.kernel)
			if tt.err != "" {
				assert.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
