package acpi

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// This file is a minimal encoder for ACPI Machine Language (ACPI 6.5 §20,
// "ACPI Machine Language (AML) Specification"): just the terms the DSDT needs.
// Every function returns the complete encoding of one term, so terms nest by
// passing one function's result to another, as the ASL they stand for does.
//
// The functions panic on arguments that cannot be encoded (a malformed name,
// a package over 255 elements, a term over 256 MiB). Those are programming
// errors: the DSDT builder passes constants and validated configuration only.

// AML opcodes and prefixes (ACPI 6.5 §20.2, "AML Grammar Definition").
const (
	amlZeroOp          = 0x00 // §20.2.3 ZeroOp
	amlOneOp           = 0x01 // §20.2.3 OneOp
	amlNameOp          = 0x08 // §20.2.5.1 DefName
	amlBytePrefix      = 0x0A // §20.2.3 ByteConst
	amlWordPrefix      = 0x0B // §20.2.3 WordConst
	amlDWordPrefix     = 0x0C // §20.2.3 DWordConst
	amlStringPrefix    = 0x0D // §20.2.3 String
	amlQWordPrefix     = 0x0E // §20.2.3 QWordConst
	amlScopeOp         = 0x10 // §20.2.5.1 DefScope
	amlBufferOp        = 0x11 // §20.2.5.4 DefBuffer
	amlPackageOp       = 0x12 // §20.2.5.4 DefPackage
	amlDualNamePrefix  = 0x2E // §20.2.2 DualNamePath
	amlMultiNamePrefix = 0x2F // §20.2.2 MultiNamePath
	amlExtOpPrefix     = 0x5B // §20.2.5.2 ExtOpPrefix, first byte of DeviceOp
	amlDeviceOp        = 0x82 // §20.2.5.2 DeviceOp, after ExtOpPrefix
	amlRootChar        = '\\' // §20.2.2 RootChar
	amlParentPrefix    = '^'  // §20.2.2 ParentPrefixChar
)

// amlPkgLengthMax is the largest PkgLength the four-byte encoding can hold
// (ACPI 6.5 §20.2.4: 4 + 8 + 8 + 8 bits).
const amlPkgLengthMax = 1<<28 - 1

// amlPkgLength encodes the PkgLength of a term whose body (the bytes after the
// PkgLength) is bodyLen bytes long (ACPI 6.5 §20.2.4, "Package Length
// Encoding"). The encoded length counts the PkgLength bytes themselves, so
// the encoding picks the shortest form whose range holds bodyLen plus its own
// size:
//
//	1 byte:  bits 7-6 = 0, bits 5-0 the length (up to 63)
//	2-4 bytes: bits 7-6 = number of following bytes, bits 3-0 the low
//	nibble of the length, each following byte the next 8 bits
func amlPkgLength(bodyLen int) []byte {
	if bodyLen < 0 {
		panic(fmt.Sprintf("acpi: negative AML body length %d", bodyLen))
	}
	if bodyLen+1 <= 0x3F {
		return []byte{byte(bodyLen + 1)}
	}
	for n := 2; n <= 4; n++ {
		total := bodyLen + n
		if total < 1<<(4+8*(n-1)) {
			out := make([]byte, n)
			out[0] = byte(n-1)<<6 | byte(total&0x0F)
			for i := 1; i < n; i++ {
				out[i] = byte(total >> (4 + 8*(i-1)))
			}
			return out
		}
	}
	panic(fmt.Sprintf("acpi: AML body of %d bytes exceeds the PkgLength limit %d", bodyLen, amlPkgLengthMax))
}

// isAMLNameSeg reports whether s is a valid 4-character NameSeg (ACPI 6.5
// §20.2.2: a LeadNameChar A-Z or '_', then three of A-Z, 0-9 or '_').
func isAMLNameSeg(s string) bool {
	if len(s) != 4 {
		return false
	}
	for i := 0; i < 4; i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// amlNameString encodes an ASL-style path such as `\_S5`, `_SB.V000` or
// `^PCI0` as an AML NameString (ACPI 6.5 §20.2.2, "Name Objects Encoding").
// As in ASL, segments shorter than four characters are padded with '_'; a
// single segment is a bare NameSeg, two use DualNamePrefix, more use
// MultiNamePrefix with a segment count.
func amlNameString(path string) []byte {
	var out []byte
	rest := path
	if strings.HasPrefix(rest, string(amlRootChar)) {
		out = append(out, amlRootChar)
		rest = rest[1:]
	} else {
		for strings.HasPrefix(rest, string(amlParentPrefix)) {
			out = append(out, amlParentPrefix)
			rest = rest[1:]
		}
	}
	if rest == "" {
		panic(fmt.Sprintf("acpi: AML name %q has no name segment", path))
	}
	segs := strings.Split(rest, ".")
	if len(segs) > 255 {
		panic(fmt.Sprintf("acpi: AML name %q has more than 255 segments", path))
	}
	switch len(segs) {
	case 1:
	case 2:
		out = append(out, amlDualNamePrefix)
	default:
		out = append(out, amlMultiNamePrefix, byte(len(segs)))
	}
	for _, seg := range segs {
		if seg != "" && len(seg) < 4 {
			seg += strings.Repeat("_", 4-len(seg))
		}
		if !isAMLNameSeg(seg) {
			panic(fmt.Sprintf("acpi: invalid AML name segment %q in %q", seg, path))
		}
		out = append(out, seg...)
	}
	return out
}

// amlInteger encodes v as a ComputationalData integer in the shortest form
// (ACPI 6.5 §20.2.3, "Data Objects Encoding"): ZeroOp, OneOp, or a
// Byte/Word/DWord/QWord prefix followed by the little-endian value. As iasl
// does, it never emits OnesOp: its value depends on the DSDT revision
// (§5.2.11.1), a QWordConst does not.
func amlInteger(v uint64) []byte {
	switch {
	case v == 0:
		return []byte{amlZeroOp}
	case v == 1:
		return []byte{amlOneOp}
	case v <= 0xFF:
		return []byte{amlBytePrefix, byte(v)}
	case v <= 0xFFFF:
		return binary.LittleEndian.AppendUint16([]byte{amlWordPrefix}, uint16(v))
	case v <= 0xFFFF_FFFF:
		return binary.LittleEndian.AppendUint32([]byte{amlDWordPrefix}, uint32(v))
	default:
		return binary.LittleEndian.AppendUint64([]byte{amlQWordPrefix}, v)
	}
}

// amlString encodes an ASCII string (ACPI 6.5 §20.2.3: StringPrefix,
// AsciiCharList of 0x01-0x7F, NullChar).
func amlString(s string) []byte {
	out := make([]byte, 0, len(s)+2)
	out = append(out, amlStringPrefix)
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] > 0x7F {
			panic(fmt.Sprintf("acpi: AML string %q has a byte outside 0x01-0x7F", s))
		}
	}
	out = append(out, s...)
	return append(out, 0)
}

// amlPkg returns op, a PkgLength covering body, then body: the shape of every
// term with a PkgLength (ACPI 6.5 §20.2.4).
func amlPkg(op []byte, body []byte) []byte {
	out := append([]byte{}, op...)
	out = append(out, amlPkgLength(len(body))...)
	return append(out, body...)
}

// amlPackage encodes a Package of the given element encodings (ACPI 6.5
// §20.2.5.4: PackageOp PkgLength NumElements PackageElementList). Elements
// must be data objects or names, e.g. from amlInteger or amlString.
func amlPackage(elems ...[]byte) []byte {
	if len(elems) > 255 {
		panic(fmt.Sprintf("acpi: AML package of %d elements exceeds 255", len(elems)))
	}
	body := []byte{byte(len(elems))}
	for _, e := range elems {
		body = append(body, e...)
	}
	return amlPkg([]byte{amlPackageOp}, body)
}

// amlBuffer encodes a Buffer initialised with data (ACPI 6.5 §20.2.5.4:
// BufferOp PkgLength BufferSize ByteList, BufferSize an integer term).
func amlBuffer(data []byte) []byte {
	body := amlInteger(uint64(len(data)))
	body = append(body, data...)
	return amlPkg([]byte{amlBufferOp}, body)
}

// amlName encodes Name(path, value) (ACPI 6.5 §20.2.5.1: NameOp NameString
// DataRefObject).
func amlName(path string, value []byte) []byte {
	out := []byte{amlNameOp}
	out = append(out, amlNameString(path)...)
	return append(out, value...)
}

// amlScope encodes Scope(path) { terms } (ACPI 6.5 §20.2.5.1: ScopeOp
// PkgLength NameString TermList).
func amlScope(path string, terms ...[]byte) []byte {
	body := amlNameString(path)
	for _, t := range terms {
		body = append(body, t...)
	}
	return amlPkg([]byte{amlScopeOp}, body)
}

// amlDevice encodes Device(name) { terms } (ACPI 6.5 §20.2.5.2: ExtOpPrefix
// DeviceOp PkgLength NameString TermList).
func amlDevice(name string, terms ...[]byte) []byte {
	body := amlNameString(name)
	for _, t := range terms {
		body = append(body, t...)
	}
	return amlPkg([]byte{amlExtOpPrefix, amlDeviceOp}, body)
}
