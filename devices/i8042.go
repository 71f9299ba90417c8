package devices

import "sync"

// Offsets of the i8042's two ports from its base, when inserted once at 0x60
// with size 5: the data port 0x60 and the status/command port 0x64. Offsets
// 1-3 (ports 0x61-0x63) decode to nothing: they read 0xFF and writes are
// dropped, as for an unclaimed port. Port 0x61 (NMI status and PC speaker)
// is emulated by KVM's in-kernel PIT and never reaches this device.
const (
	i8042Data    = 0 // port 0x60: output buffer (read), input buffer (write)
	i8042Command = 4 // port 0x64: status register (read), command (write)

	// I8042Size is the size to insert an I8042 with, at 0x60.
	I8042Size = 5
)

// Status register bits (Intel 8042/PS/2 keyboard controller, "Status
// Register"; Linux names them I8042_STR_*).
const (
	i8042StrOBF     = 0x01 // output buffer full: a byte is waiting at 0x60
	i8042StrIBF     = 0x02 // input buffer full: the controller is busy (never, here)
	i8042StrSYS     = 0x04 // system flag, mirrors CTR bit 2
	i8042StrCMD     = 0x08 // last write was to 0x64 (command), not 0x60 (data)
	i8042StrKeylock = 0x10 // keyboard not inhibited by the keylock switch
	i8042StrAuxData = 0x20 // the byte in the output buffer came from the AUX port
)

// Controller configuration byte (CTR, internal RAM byte 0) bits.
const (
	i8042CtrKbdInt = 0x01 // raise IRQ 1 on keyboard data
	i8042CtrAuxInt = 0x02 // raise IRQ 12 on AUX data
	i8042CtrSYS    = 0x04 // system flag: POST passed
	i8042CtrKbdDis = 0x10 // keyboard interface disabled
	i8042CtrAuxDis = 0x20 // AUX interface disabled
	i8042CtrXlate  = 0x40 // translate scancode set 2 to set 1

	// i8042InitialCTR is what a BIOS leaves behind with a keyboard and no
	// mouse: keyboard interrupt enabled, POST passed, AUX disabled,
	// translation on.
	i8042InitialCTR = i8042CtrKbdInt | i8042CtrSYS | i8042CtrAuxDis | i8042CtrXlate
)

// Output port bits (command 0xD0/0xD1).
const (
	i8042OutReset = 0x01 // system reset line; active low
	i8042OutA20   = 0x02 // A20 gate
)

// Controller commands (written to 0x64). Linux's I8042_CMD_* encode the
// same command in their low byte.
const (
	i8042CmdReadRAM     = 0x20 // 0x20-0x3F: read internal RAM byte (0x20: CTR)
	i8042CmdWriteRAM    = 0x60 // 0x60-0x7F: write internal RAM byte (0x60: CTR)
	i8042CmdAuxDisable  = 0xA7
	i8042CmdAuxEnable   = 0xA8
	i8042CmdAuxTest     = 0xA9 // test the AUX interface lines
	i8042CmdSelfTest    = 0xAA
	i8042CmdKbdTest     = 0xAB // test the keyboard interface lines
	i8042CmdKbdDisable  = 0xAD
	i8042CmdKbdEnable   = 0xAE
	i8042CmdReadOutPort = 0xD0
	i8042CmdWriteOut    = 0xD1 // next data byte is the output port
	i8042CmdWriteKbdBuf = 0xD2 // next data byte appears as keyboard input
	i8042CmdWriteAuxBuf = 0xD3 // next data byte appears as AUX input ("AUX loop")
	i8042CmdWriteAux    = 0xD4 // next data byte goes to the AUX device
	i8042CmdPulse       = 0xF0 // 0xF0-0xFF: pulse output port bits 3:0 that are 0 in the command

	// Responses.
	i8042SelfTestOK = 0x55
	i8042IfaceOK    = 0x00
	// i8042AuxClockHigh is the AUX interface test's "clock line stuck
	// high" result.
	i8042AuxClockHigh = 0x02
)

// I8042 is the part of an Intel 8042 keyboard controller that a Linux guest
// touches: the controller commands its i8042 driver issues while probing,
// and the reset line that reboot=k pulses through command 0xFE.
//
// No keyboard or mouse is attached and no interrupt line is wired (see
// docs/design.md), so bytes for the keyboard are dropped and the output
// buffer only ever holds responses to controller commands, which the driver
// polls for. Every command that produces a response produces it at once,
// so the driver never sits out its 500 ms i8042_wait_read timeout.
//
// The AUX (mouse) port is absent, and reported so in a way Linux's
// i8042_check_aux recognises at once. Its first step writes 0x5A with the
// AUX loop command (0xD3) and expects it back flagged as AUX data: the
// byte comes back flagged as keyboard data (status bit 5 clear), so the loop
// test fails, and the AUX interface test that follows (0xA9) reports the
// clock line stuck high, which makes the driver give up on the port.
// Answering both faithfully would send Linux on to its AUX IRQ delivery test,
// which waits 250 ms for an IRQ 12 that cannot come. (Booting with
// i8042.noaux skips all of this.)
//
// I8042 is inserted once at 0x60 with size I8042Size; the data port is
// offset 0 and the status/command port offset 4. It is safe for concurrent
// use.
type I8042 struct {
	reset func()

	mu sync.Mutex
	// ram is the controller's internal RAM; byte 0 is the CTR.
	ram     [32]byte
	outPort byte
	// out is the output buffer; obf says it is full, aux that it holds
	// AUX data.
	out byte
	obf bool
	aux bool
	// lastCmd is status bit 3: whether the last write was a command.
	lastCmd bool
	// pending is the command waiting for its data byte, or 0.
	pending byte
}

// NewI8042 returns a controller that calls reset when the guest pulses the
// reset line (command 0xFE, or 0xD1 with bit 0 clear). reset is called on
// the vCPU thread, without the controller's lock held, and may be called
// more than once: Linux's keyboard reboot writes 0xFE up to ten times. A nil
// reset ignores resets.
func NewI8042(reset func()) *I8042 {
	if reset == nil {
		reset = func() {}
	}
	k := &I8042{
		reset:   reset,
		outPort: i8042OutReset | i8042OutA20,
	}
	k.ram[0] = i8042InitialCTR
	return k
}

// Read implements Device.Read.
func (k *I8042) Read(offset uint64, data []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range data {
		off := offset + uint64(i)
		switch {
		case offset >= I8042Size || off >= I8042Size:
			data[i] = 0xFF
		case off == i8042Data:
			// Reading the data port empties the output buffer. With
			// nothing in it, the last byte is read again.
			data[i] = k.out
			k.obf, k.aux = false, false
		case off == i8042Command:
			data[i] = k.status()
		default:
			data[i] = 0xFF
		}
	}
}

// Write implements Device.Write.
func (k *I8042) Write(offset uint64, data []byte) {
	resets := 0
	k.mu.Lock()
	for i, v := range data {
		off := offset + uint64(i)
		switch {
		case offset >= I8042Size || off >= I8042Size:
		case off == i8042Data:
			k.lastCmd = false
			if k.writeData(v) {
				resets++
			}
		case off == i8042Command:
			k.lastCmd = true
			if k.command(v) {
				resets++
			}
		}
	}
	k.mu.Unlock()
	// One reset per access, however many pulses it made (a long write
	// can complete a pending 0xD1 at offset 0 and send 0xFE at offset 4).
	if resets > 0 {
		k.reset()
	}
}

// RegisterName implements RegisterNamer.
func (k *I8042) RegisterName(offset uint64, write bool) string {
	switch offset {
	case i8042Data:
		return "DATA"
	case i8042Command:
		if write {
			return "CMD"
		}
		return "STATUS"
	}
	return ""
}

// status returns the status register, with k.mu held. IBF is never set: the
// controller consumes every byte the moment it is written.
func (k *I8042) status() byte {
	v := byte(i8042StrKeylock)
	if k.ram[0]&i8042CtrSYS != 0 {
		v |= i8042StrSYS
	}
	if k.lastCmd {
		v |= i8042StrCMD
	}
	if k.obf {
		v |= i8042StrOBF
		if k.aux {
			v |= i8042StrAuxData
		}
	}
	return v
}

// respond puts a controller response into the output buffer, with k.mu held.
// The buffer holds one byte; a response replaces whatever the guest left
// unread, as only the latest command's answer matters to a polling driver.
func (k *I8042) respond(v byte, aux bool) {
	k.out, k.obf, k.aux = v, true, aux
}

// command executes controller command c, with k.mu held. It reports whether
// the reset line was pulsed.
func (k *I8042) command(c byte) (reset bool) {
	k.pending = 0
	switch {
	case c >= i8042CmdReadRAM && c < i8042CmdReadRAM+32:
		k.respond(k.ram[c-i8042CmdReadRAM], false)
	case c >= i8042CmdWriteRAM && c < i8042CmdWriteRAM+32:
		k.pending = c
	case c == i8042CmdAuxDisable:
		k.ram[0] |= i8042CtrAuxDis
	case c == i8042CmdAuxEnable:
		k.ram[0] &^= i8042CtrAuxDis
	case c == i8042CmdAuxTest:
		// No AUX port: see the type's comment.
		k.respond(i8042AuxClockHigh, false)
	case c == i8042CmdSelfTest:
		k.respond(i8042SelfTestOK, false)
	case c == i8042CmdKbdTest:
		k.respond(i8042IfaceOK, false)
	case c == i8042CmdKbdDisable:
		k.ram[0] |= i8042CtrKbdDis
	case c == i8042CmdKbdEnable:
		k.ram[0] &^= i8042CtrKbdDis
	case c == i8042CmdReadOutPort:
		k.respond(k.outPort, false)
	case c == i8042CmdWriteOut, c == i8042CmdWriteKbdBuf, c == i8042CmdWriteAuxBuf, c == i8042CmdWriteAux:
		k.pending = c
	case c >= i8042CmdPulse:
		// Bits 3:0 select output port lines to pulse low for about
		// 6 us; 0xFE pulses bit 0, the CPU reset line.
		return c&i8042OutReset == 0
	}
	// Other commands (password, input port, test inputs, ...) are
	// ignored; Linux does not issue them.
	return false
}

// writeData handles a byte written to the data port, with k.mu held. It
// reports whether the reset line was driven low.
func (k *I8042) writeData(v byte) (reset bool) {
	c := k.pending
	k.pending = 0
	switch {
	case c >= i8042CmdWriteRAM && c < i8042CmdWriteRAM+32:
		k.ram[c-i8042CmdWriteRAM] = v
	case c == i8042CmdWriteOut:
		k.outPort = v
		// Bit 0 is the active-low reset line.
		return v&i8042OutReset == 0
	case c == i8042CmdWriteKbdBuf:
		k.respond(v, false)
	case c == i8042CmdWriteAuxBuf:
		// No AUX port: the loop byte does not come back as AUX data.
		// See the type's comment.
		k.respond(v, false)
	case c == i8042CmdWriteAux:
		// For the AUX device, which is absent.
	default:
		// For the keyboard, which is absent.
	}
	return false
}
