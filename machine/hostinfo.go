package machine

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// hostMemory returns the host's RAM plus swap in bytes from /proc/meminfo,
// or 0 if unknown. Guest RAM is mapped without reserving it, so a size
// beyond this would only fail later, inside the guest.
func hostMemory() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	var total uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || (fields[0] != "MemTotal:" && fields[0] != "SwapTotal:") {
			continue
		}
		kb, err := strconv.ParseUint(fields[1], 10, 64)
		if err == nil {
			total += kb << 10
		}
	}
	return total
}

// humanBytes formats a size with a binary unit: "512 MiB", "1.5 GiB".
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	suffix := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[exp]
	if v == float64(uint64(v)) {
		return fmt.Sprintf("%d %s", uint64(v), suffix)
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

// unwrapPathError turns "open x: no such file or directory" into
// "x: no such file or directory": the operation adds nothing for a user.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
