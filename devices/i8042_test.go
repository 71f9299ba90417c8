package devices

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestI8042() (*I8042, *int) {
	resets := new(int)
	return NewI8042(func() { *resets++ }), resets
}

// errTimeout is what Linux's i8042_wait_read/i8042_wait_write would return
// after polling for 500 ms.
var errTimeout = errors.New("i8042 timeout")

// linuxI8042Command replays Linux's __i8042_command
// (drivers/input/serio/i8042.c): the command's parameter counts are in bits
// 15:12 (out) and 11:8 (in). Where Linux would poll the status register for
// up to 500 ms, this fails at once if the controller is not ready: the
// device must never make the driver wait.
func linuxI8042Command(k *I8042, param []byte, command int) error {
	waitWrite := func() error {
		if inb(k, i8042Command)&i8042StrIBF != 0 {
			return errTimeout
		}
		return nil
	}
	if err := waitWrite(); err != nil {
		return err
	}
	outb(k, i8042Command, byte(command))
	for i := 0; i < (command>>12)&0xF; i++ {
		if err := waitWrite(); err != nil {
			return err
		}
		outb(k, i8042Data, param[i])
	}
	for i := 0; i < (command>>8)&0xF; i++ {
		str := inb(k, i8042Command)
		if str&i8042StrOBF == 0 {
			return errTimeout
		}
		if command == 0x11D3 && str&i8042StrAuxData == 0 {
			return errors.New("auxerr")
		}
		param[i] = inb(k, i8042Data)
	}
	return nil
}

// Linux's I8042_CMD_* (include/linux/i8042.h).
const (
	linuxCmdCtlRCTR    = 0x0120
	linuxCmdCtlWCTR    = 0x1060
	linuxCmdCtlTest    = 0x01AA
	linuxCmdAuxDisable = 0x00A7
	linuxCmdAuxEnable  = 0x00A8
	linuxCmdAuxTest    = 0x01A9
	linuxCmdAuxLoop    = 0x11D3
	linuxCmdKbdTest    = 0x01AB
)

func TestI8042LinuxProbe(t *testing.T) {
	k, resets := newTestI8042()

	// i8042_controller_check: flush finds an empty output buffer.
	require.Zero(t, inb(k, i8042Command)&i8042StrOBF)

	// i8042_controller_selftest.
	param := make([]byte, 1)
	require.NoError(t, linuxI8042Command(k, param, linuxCmdCtlTest))
	require.Equal(t, byte(0x55), param[0])

	// i8042_controller_init: two identical CTR reads, keylock check,
	// CTR write.
	ctr := make([]byte, 2)
	require.NoError(t, linuxI8042Command(k, ctr[0:1], linuxCmdCtlRCTR))
	require.NoError(t, linuxI8042Command(k, ctr[1:2], linuxCmdCtlRCTR))
	require.Equal(t, ctr[0], ctr[1])
	assert.NotZero(t, inb(k, i8042Command)&i8042StrKeylock, "keylock must not be active")
	newCTR := (ctr[0] | i8042CtrKbdDis) &^ i8042CtrKbdInt
	require.NoError(t, linuxI8042Command(k, []byte{newCTR}, linuxCmdCtlWCTR))
	require.NoError(t, linuxI8042Command(k, param, linuxCmdCtlRCTR))
	require.Equal(t, newCTR, param[0])

	// i8042_check_aux: the loop test fails without a timeout, and the
	// interface test that follows reports a fault, so the driver gives up
	// on AUX at once instead of waiting 250 ms for IRQ 12.
	param[0] = 0x5A
	err := linuxI8042Command(k, param, linuxCmdAuxLoop)
	require.Error(t, err)
	require.NotErrorIs(t, err, errTimeout)
	require.NoError(t, linuxI8042Command(k, param, linuxCmdAuxTest))
	require.True(t, param[0] != 0 && param[0] != 0xFA && param[0] != 0xFF,
		"AUX test result %#x would make Linux go on probing", param[0])

	// i8042_enable_kbd_port.
	newCTR = (newCTR &^ i8042CtrKbdDis) | i8042CtrKbdInt
	require.NoError(t, linuxI8042Command(k, []byte{newCTR}, linuxCmdCtlWCTR))
	assert.Zero(t, inb(k, i8042Command)&i8042StrOBF)
	assert.Zero(t, *resets)
}

func TestI8042Commands(t *testing.T) {
	tests := []struct {
		name    string
		command int
		in      []byte
		want    []byte
	}{
		{"self test", linuxCmdCtlTest, nil, []byte{0x55}},
		{"keyboard interface test", linuxCmdKbdTest, nil, []byte{0x00}},
		{"read CTR", linuxCmdCtlRCTR, nil, []byte{i8042InitialCTR}},
		{"AUX interface test", linuxCmdAuxTest, nil, []byte{i8042AuxClockHigh}},
		{"read output port", 0x01D0, nil, []byte{0x03}},
		{"read RAM byte 5", 0x0125, nil, []byte{0x00}},
		{"write keyboard output buffer", 0x11D2, []byte{0xAB}, []byte{0xAB}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, resets := newTestI8042()
			param := make([]byte, 1)
			copy(param, tt.in)
			require.NoError(t, linuxI8042Command(k, param, tt.command))
			assert.Equal(t, tt.want, param)
			assert.Zero(t, inb(k, i8042Command)&i8042StrOBF, "reading data empties the buffer")
			assert.Zero(t, *resets)
		})
	}
}

func TestI8042CTRBits(t *testing.T) {
	tests := []struct {
		command byte
		set     byte
		clear   byte
	}{
		{i8042CmdAuxDisable, i8042CtrAuxDis, 0},
		{i8042CmdAuxEnable, 0, i8042CtrAuxDis},
		{i8042CmdKbdDisable, i8042CtrKbdDis, 0},
		{i8042CmdKbdEnable, 0, i8042CtrKbdDis},
	}
	for _, tt := range tests {
		k, _ := newTestI8042()
		outb(k, i8042Command, i8042CmdWriteRAM)
		outb(k, i8042Data, tt.clear) // bits to set start clear, bits to clear start set
		outb(k, i8042Command, tt.command)
		assert.Zero(t, inb(k, i8042Command)&i8042StrOBF, "command %#x has no response", tt.command)
		outb(k, i8042Command, i8042CmdReadRAM)
		ctr := inb(k, i8042Data)
		assert.Equal(t, tt.set, ctr&tt.set, "command %#x", tt.command)
		assert.Zero(t, ctr&tt.clear, "command %#x", tt.command)
	}
}

func TestI8042Reset(t *testing.T) {
	tests := []struct {
		name   string
		writes [][2]byte // {offset, value}
		resets int
	}{
		{"pulse reset line (reboot=k)", [][2]byte{{i8042Command, 0xFE}}, 1},
		{"pulse all lines", [][2]byte{{i8042Command, 0xF0}}, 1},
		{"pulse nothing", [][2]byte{{i8042Command, 0xFF}}, 0},
		{"pulse A20 only", [][2]byte{{i8042Command, 0xFD}}, 0},
		{"write output port, reset low", [][2]byte{{i8042Command, 0xD1}, {i8042Data, 0xFE}}, 1},
		{"write output port, reset high", [][2]byte{{i8042Command, 0xD1}, {i8042Data, 0xDF}}, 0},
		{"data without command", [][2]byte{{i8042Data, 0x00}}, 0},
		{"command replaced before data", [][2]byte{{i8042Command, 0xD1}, {i8042Command, 0x20}, {i8042Data, 0x00}}, 0},
		{"reboot=k loop", [][2]byte{{i8042Command, 0xFE}, {i8042Command, 0xFE}, {i8042Command, 0xFE}}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, resets := newTestI8042()
			for _, w := range tt.writes {
				// Linux's kb_wait polls IBF before each write.
				require.Zero(t, inb(k, i8042Command)&i8042StrIBF)
				outb(k, uint64(w[0]), w[1])
			}
			assert.Equal(t, tt.resets, *resets)
		})
	}
}

func TestI8042Status(t *testing.T) {
	k, _ := newTestI8042()
	assert.Equal(t, byte(i8042StrKeylock|i8042StrSYS), inb(k, i8042Command))
	outb(k, i8042Command, i8042CmdSelfTest)
	assert.Equal(t, byte(i8042StrKeylock|i8042StrSYS|i8042StrCMD|i8042StrOBF), inb(k, i8042Command))
	assert.Equal(t, byte(0x55), inb(k, i8042Data))
	assert.Equal(t, byte(0x55), inb(k, i8042Data), "an empty output buffer reads its last byte")
	outb(k, i8042Data, 0xF4) // to the (absent) keyboard
	assert.Equal(t, byte(i8042StrKeylock|i8042StrSYS), inb(k, i8042Command), "nothing answers for the keyboard")
}

func TestI8042UnclaimedOffsets(t *testing.T) {
	k, resets := newTestI8042()
	for _, off := range []uint64{1, 2, 3, 5, 1 << 40, ^uint64(0)} {
		assert.Equal(t, byte(0xFF), inb(k, off))
		outb(k, off, 0xFE)
	}
	assert.Zero(t, *resets)
	assert.Equal(t, "DATA", k.RegisterName(0, false))
	assert.Equal(t, "STATUS", k.RegisterName(4, false))
	assert.Equal(t, "CMD", k.RegisterName(4, true))
	assert.Empty(t, k.RegisterName(2, true))
	// A wide write reaching offset 4 is split into bytes.
	k.Write(0, []byte{0, 0, 0, 0, 0xFE})
	assert.Equal(t, 1, *resets)
}

func FuzzI8042(f *testing.F) {
	f.Add([]byte{0x44, 0xAA, 0x04, 0x00, 0x44, 0xFE})
	f.Fuzz(func(t *testing.T, in []byte) {
		resets, writes := 0, 0
		k := NewI8042(func() { resets++ })
		decodeFuzzOps(in, func(op fuzzOp) {
			switch op.kind {
			case fuzzRead:
				k.Read(op.offset, op.data)
			case fuzzWrite:
				writes++
				k.Write(op.offset, op.data)
			case fuzzHost:
				return
			}
			if st := inb(k, i8042Command); st&i8042StrIBF != 0 {
				t.Fatalf("status %#x: IBF set", st)
			}
			if resets > writes {
				t.Fatalf("%d resets for %d writes", resets, writes)
			}
		})
	})
}
