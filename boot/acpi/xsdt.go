package acpi

import "encoding/binary"

// Extended System Description Table (ACPI 6.5 §5.2.8): the header followed
// by the 64-bit addresses of the other tables. It lists the FADT and the
// MADT; the DSDT is reached through the FADT (§5.2.9 X_DSDT), never listed.
const (
	xsdtRevision = 1 // §5.2.8: Revision 1
	xsdtEntryLen = 8 // each entry is a 64-bit physical address
)

// xsdtLen returns the length of an XSDT with n entries.
func xsdtLen(n int) int { return headerLen + n*xsdtEntryLen }

// buildXSDT returns the XSDT listing the tables at addrs, in order.
func buildXSDT(addrs ...uint64) []byte {
	t := newTable("XSDT", xsdtRevision, xsdtLen(len(addrs)))
	for i, a := range addrs {
		binary.LittleEndian.PutUint64(t[headerLen+i*xsdtEntryLen:], a)
	}
	return finishTable(t)
}
