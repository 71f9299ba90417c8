package main

import (
	"errors"
	"fmt"
	stdnet "net"
	"strings"

	"github.com/gvmm/gvmm/machine"
	vnet "github.com/gvmm/gvmm/virtio/net"
	"github.com/gvmm/gvmm/virtio/net/tap"
)

// netUsage is the --net flag's help.
const netUsage = "attach a virtio network interface to the host tap device in `tap=NAME[,mac=MAC]` (repeatable); an existing tap is used, a missing one created (CAP_NET_ADMIN); without mac=, a locally administered MAC is derived from NAME"

// parseNet parses one --net value: comma-separated tap=NAME and mac=MAC.
func parseNet(s string) (machine.Net, error) {
	var n machine.Net
	for _, o := range strings.Split(s, ",") {
		k, v, hasValue := strings.Cut(o, "=")
		switch {
		case k == "tap" && hasValue:
			if v == "" || len(v) > 15 || strings.ContainsAny(v, "/ \t") {
				return n, fmt.Errorf("--net %s: tap name %q is not an interface name (1 to 15 bytes, no / or space)", s, v)
			}
			n.Tap = v
		case k == "mac" && hasValue:
			mac, err := stdnet.ParseMAC(v)
			if err != nil || len(mac) != 6 {
				return n, fmt.Errorf("--net %s: bad MAC address %q (want six hex bytes, 52:54:00:12:34:56)", s, v)
			}
			if err := vnet.CheckMAC(mac); err != nil {
				return n, fmt.Errorf("--net %s: %v", s, err)
			}
			n.MAC = mac
		default:
			return n, fmt.Errorf("--net %s: unknown option %q (want tap=NAME and mac=MAC)", s, o)
		}
	}
	if n.Tap == "" {
		return n, fmt.Errorf("--net %s: no tap=NAME", s)
	}
	return n, nil
}

// parseNets parses every --net value; the same tap twice is refused.
func parseNets(values []string) ([]machine.Net, error) {
	var out []machine.Net
	seen := map[string]bool{}
	for _, s := range values {
		n, err := parseNet(s)
		if err != nil {
			return nil, err
		}
		if seen[n.Tap] {
			return nil, fmt.Errorf("--net tap=%s: given twice", n.Tap)
		}
		seen[n.Tap] = true
		out = append(out, n)
	}
	return out, nil
}

// netHint adds what to do about an error opening a tap.
func netHint(err error) string {
	switch {
	case errors.Is(err, tap.ErrBusy):
		return " (another VM or program has it: give this one its own tap)"
	case errors.Is(err, tap.ErrNotTap):
		return " (--net needs a tap: ip tuntap add NAME mode tap)"
	}
	return ""
}
