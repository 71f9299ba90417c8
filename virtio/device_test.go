package virtio

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestReadConfig(t *testing.T) {
	config := []byte{1, 2, 3, 4}
	for _, tc := range []struct {
		name string
		off  uint64
		n    int
		want []byte
	}{
		{"whole", 0, 4, []byte{1, 2, 3, 4}},
		{"inside", 1, 2, []byte{2, 3}},
		{"across the end", 2, 4, []byte{3, 4, 0, 0}},
		{"past the end", 8, 2, []byte{0, 0}},
		{"offset wraps", math.MaxUint64, 3, []byte{0, 0, 0}},
		{"nothing", 0, 0, []byte{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, tc.n)
			for i := range data {
				data[i] = 0xee // stale bytes are overwritten
			}
			ReadConfig(config, tc.off, data)
			assert.Equal(t, tc.want, data)
		})
	}
}
