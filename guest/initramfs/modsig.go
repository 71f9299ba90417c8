package initramfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// A signed module is the ELF object followed by its signature, a struct
// module_signature and a marker (include/linux/module_signature.h;
// scripts/sign-file.c appends them):
//
//	struct module_signature {
//		u8     algo, hash, id_type; // 0, 0, PKEY_ID_PKCS7 (2) for PKCS#7
//		u8     signer_len;          // 0 for PKCS#7
//		u8     key_id_len;          // 0 for PKCS#7
//		u8     __pad[3];
//		__be32 sig_len;             // bytes of signature before the struct
//	};
const (
	modSigMarker  = "~Module signature appended~\n"
	modSigInfoLen = 12
)

// StripSignature returns the module without its appended signature, and
// whether it had one. The kernel loads an unsigned module unless module
// signatures are enforced (CONFIG_MODULE_SIG_FORCE, module.sig_enforce=1,
// or lockdown), marking itself tainted once; what it saves is hashing the
// whole module and checking an RSA signature in kernel code, which took
// minutes per Debian module on a host that emulates guest kernel code.
func StripSignature(module []byte) ([]byte, bool, error) {
	if !bytes.HasSuffix(module, []byte(modSigMarker)) {
		return module, false, nil
	}
	end := len(module) - len(modSigMarker)
	if end < modSigInfoLen {
		return nil, false, fmt.Errorf("module signature: %d bytes before the marker, want at least %d", end, modSigInfoLen)
	}
	info := module[end-modSigInfoLen : end]
	sigLen := uint64(binary.BigEndian.Uint32(info[8:])) + uint64(info[3]) + uint64(info[4])
	body := uint64(end - modSigInfoLen)
	if sigLen > body {
		return nil, false, fmt.Errorf("module signature: %d bytes of signature, only %d bytes before them", sigLen, body)
	}
	obj := module[:body-sigLen]
	if !bytes.HasPrefix(obj, []byte(elfMagic)) {
		return nil, false, fmt.Errorf("module signature: what precedes it is not an ELF object")
	}
	return obj, true, nil
}
